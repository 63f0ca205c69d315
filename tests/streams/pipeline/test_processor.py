"""The worker's processing in memory: the same scenarios as on the broker, plus state checks.

Same bodies as tests/streams/worker/test_stream_integration.py (which runs them on the real broker), so a
failure here points at the logic and a failure only there points at the streaming.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import orjson

from allocator.hospital import load_hospitals
from streams.contract.models import encode_output
from streams.devtools.memory import InMemoryWorker
from streams.pipeline.processor import RawMessage
from streams.state.tables import BEDS, CENSUS, ENCOUNTERS, PATIENTS, WAITING
from tests import events as ev
from tests.streams.worker.test_stream_integration import HID, scenario

FIXTURE = Path(__file__).parents[2] / "fixtures" / "stream_hospital.yaml"
PREFIX = "wardflow."


def _worker(**kw) -> InMemoryWorker:
    return InMemoryWorker(load_hospitals(FIXTURE), topic_prefix=PREFIX, **kw)


def _messages(items) -> list[RawMessage]:
    """Partition-0 messages at offsets 0.. from scenario items ((topic, body) pairs, or already encoded)."""
    msgs = []
    for i, item in enumerate(items):
        topic, key, value = ev.encode(PREFIX, item) if isinstance(item[1], dict) else item
        msgs.append(RawMessage(topic=topic, partition=0, offset=i, key=key, value=value))
    return msgs


def _run(worker: InMemoryWorker, items) -> None:
    asyncio.run(worker.feed(_messages(items)))


def _bed(worker, bed_id):
    return worker.tables[BEDS].get(f"{HID}|{bed_id}")


def test_scenario_decisions_and_final_state():
    w = _worker()
    _run(w, scenario())
    assert [(d.kind, d.caused_by, d.bed_id) for d in w.sink.decisions] == [
        ("assignment", "s-1", "MED-B1-A"), ("assignment", "s-6", "MED-B1-B")]
    assert w.sink.dead_letters == []
    assert _bed(w, "MED-B1-A").status == "dirty"  # left by the transfer, never cleaned
    assert _bed(w, "MED-SR1").status == "available"  # discharged, cleaning, clean
    assert _bed(w, "MED-B1-B").encounter_id == "E2"
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].status == "discharged"
    assert w.tables[PATIENTS][f"{HID}|P1"] == "E2"
    census = w.tables[CENSUS][f"{HID}|MED"]
    assert census.by_status["occupied"] == 1 and census.by_status["dirty"] == 1 and census.total == 6


def test_decisions_are_deterministic_bytes():
    a, b = _worker(), _worker()
    _run(a, scenario())
    _run(b, scenario())
    assert [encode_output(d) for d in a.sink.decisions] == [encode_output(d) for d in b.sink.decisions]


def test_repeated_event_ids_change_nothing():
    once, twice = _worker(), _worker()
    _run(once, scenario())
    _run(twice, scenario() + scenario())
    assert twice.sink.decisions == once.sink.decisions
    assert twice.tables == once.tables


def test_no_requested_unit_needs_confirmation_without_a_model():
    w = _worker()
    _run(w, [ev.admission(HID, "P1", "E1", 0, event_id="a-1")])
    (d,) = w.sink.decisions
    assert d.kind == "needs_confirmation" and "no model is running" in d.reasons[0].text
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].status == "awaiting_confirmation"


def test_no_bed_then_placed_when_a_bed_is_cleaned():
    w = _worker()
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, sex="M", requested_unit="SURGERY", event_id=f"a-{i}")
             for i in range(1, 9)]  # SURG 3 beds, overflow MED: 2 male-bay beds + 2 single rooms
    _run(w, items)
    kinds = [d.kind for d in w.sink.decisions]
    assert kinds == ["assignment"] * 7 + ["no_bed"]
    no_bed = w.sink.decisions[-1]
    assert no_bed.role == "bed_manager" and len(no_bed.reasons) >= 3
    assert w.tables[WAITING][HID] == ["E8"]
    # E1 leaves; its bed is cleaned; the waiting patient gets it, caused by the clean event.
    _run(w, [ev.discharge(HID, "P1", "E1", 100, event_id="d-1"),
             ev.bed_status(HID, w.sink.decisions[0].bed_id, "clean", 130, event_id="c-1")])
    last = w.sink.decisions[-1]
    assert (last.kind, last.caused_by, last.encounter_id) == ("assignment", "c-1", "E8")
    assert w.tables[WAITING][HID] == []


def test_rejected_event_changes_nothing():
    w = _worker()
    _run(w, [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1")])
    before = {k: dict(v) for k, v in w.tables.items()}
    _run(w, [ev.bed_status(HID, "MED-B1-A", "blocked", 5, event_id="b-1")])  # occupied bed
    assert [d.code for d in w.sink.dead_letters] == ["impossible_transition"]
    assert {k: dict(v) for k, v in w.tables.items()} == before


def test_old_event_ids_are_forgotten_and_stale_events_refused():
    w = _worker(retention=timedelta(hours=2))
    _run(w, [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="old-1"),
             ev.vitals(HID, "P1", "E1", 60 * 5, event_id="v-1", heart_rate=80)])
    assert f"{HID}|old-1" not in w.tables["seen"]  # 5 h later: its bucket was dropped
    _run(w, [ev.discharge(HID, "P1", "E1", 30, event_id="late-1")])
    assert [d.code for d in w.sink.dead_letters] == ["stale_event"]


def test_decisions_never_carry_free_text():
    w = _worker()
    secret = "SECRET-CLINICAL-NOTE"
    _run(w, [ev.admission(HID, "P1", "E1", 0, text=secret, requested_unit="MEDICINE", event_id="a-1"),
             ev.admission(HID, "P2", "E2", 1, text=secret, event_id="a-2")])
    assert all(secret not in orjson.dumps(d.model_dump(mode="json")).decode() for d in w.sink.decisions)


def test_metrics_carry_no_patient_identifier_or_text():
    from prometheus_client import generate_latest

    w = _worker()
    _run(w, scenario() + [ev.admission(HID, "PX-123", "EX-456", 900, text="SECRET-NOTE", event_id="a-x")])
    exposition = generate_latest(w.processor.metrics.registry).decode()
    assert 'wardflow_decisions_total{kind="assignment"} 2.0' in exposition
    assert 'wardflow_unit_occupancy_ratio{hospital="test-hosp",unit="MED"}' in exposition
    for secret in ("P1", "E1", "E2", "PX-123", "EX-456", "SECRET-NOTE", "s-1"):
        assert f'"{secret}"' not in exposition


def test_a_half_applied_event_is_finished_from_the_journal_not_recomputed():
    """A crash can keep some of an event's table writes but not its id: the restart must not re-place."""
    w = _worker()
    _run(w, scenario()[:1])  # P1 admitted into MED-B1-A
    seen_key = f"{HID}|s-1"
    del w.tables["seen"][seen_key]  # as if the id's changelog record was lost...
    del w.tables[ENCOUNTERS][f"{HID}|E1"]  # ...and the encounter's too, while the bed's survived
    restarted = _worker(tables=w.tables)  # a new process over the recovered tables
    _run(restarted, scenario()[:1])  # the event comes again
    # the journalled decision is re-sent (same id, same bytes), and nothing new is decided
    assert [encode_output(d) for d in restarted.sink.decisions] == [encode_output(d) for d in w.sink.decisions]
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].bed_id == "MED-B1-A"
    assert seen_key in w.tables["seen"]


def test_the_previous_events_writes_are_finished_too():
    """An event's writes are made durable by the next event's flush: its journal carries them as well."""
    w = _worker()
    _run(w, scenario()[:2])  # admitted, then transferred to MED-SR1
    del w.tables[ENCOUNTERS][f"{HID}|E1"]  # written by both events: lost
    del w.tables[PATIENTS][f"{HID}|P1"]  # written by the admission only: lost
    del w.tables["seen"][f"{HID}|s-1"]  # the admission's id: lost
    restarted = _worker(tables=w.tables)
    _run(restarted, [ev.bed_status(HID, "SURG-SR1", "cleaning", 40, event_id="later")])
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].bed_id == "MED-SR1"
    assert w.tables[PATIENTS][f"{HID}|P1"] == "E1" and f"{HID}|s-1" in w.tables["seen"]


def test_surge_level_rises_with_occupancy_and_says_why():
    w = _worker()
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, sex="M", requested_unit="SURGERY", event_id=f"a-{i}")
             for i in range(1, 17)]  # 16 arrivals in 16 minutes into 11 beds
    _run(w, items)
    surges = [d for d in w.sink.decisions if d.kind == "surge_level"]
    assert surges, "filling the hospital must raise the surge level"
    last = surges[-1]
    assert last.details["level"] >= 3 and last.details["arrivals_last_hour"] >= 15 and last.details["waiting"] >= 5
    assert "OPEL" in " ".join(r.text for r in last.reasons) or "%" in " ".join(r.text for r in last.reasons)
    levels = [d.details["level"] for d in surges]
    assert levels == sorted(levels)  # only rises while patients keep arriving


def test_capacity_view_has_counts_and_no_patient_data():
    from streams.state.views import capacity_snapshot

    w = _worker()
    _run(w, scenario())
    snap = capacity_snapshot(w.tables, load_hospitals(FIXTURE)[HID])
    med = next(u for u in snap["units"] if u["unit"] == "MED")
    assert med["by_status"]["occupied"] == 1 and med["by_status"]["dirty"] == 1 and med["total"] == 6
    assert snap["surge_level"] >= 1 and snap["patients_waiting"] == 0
    text = orjson.dumps(snap).decode()
    for secret in ("P1", "E1", "E2", "Productive"):
        assert f'"{secret}"' not in text and "Productive" not in text


def test_a_slow_broker_acknowledgement_is_logged_while_the_event_waits(caplog):
    """A stalled flush must show in the log (and the error counter), not hang silently; the event still completes."""
    w = _worker()
    w.processor.flush_warn_s = 0.02
    real_flush = w.sink.flush

    async def slow_flush() -> None:
        await asyncio.sleep(0.07)
        await real_flush()

    w.sink.flush = slow_flush
    with caplog.at_level("WARNING", logger="streams.pipeline.processor"):
        _run(w, scenario()[:1])
    assert any("still waiting after" in r.getMessage() for r in caplog.records)
    assert w.sink.decisions  # the admission was still decided


# -- checkpoints: a batch of events made durable at once ---------------------------------------------

def _sim_messages(n: int) -> list[RawMessage]:
    """A vitals-heavy stretch of the demo hospital's simulator (admissions, transfers, discharges, beds)."""
    from datetime import UTC, datetime

    from allocator.hospital import DEMO_HOSPITAL_PATH
    from streams.devtools.simulator import HospitalSimulator

    demo = next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))
    start = datetime(2026, 11, 23, tzinfo=UTC)
    sim = HospitalSimulator(demo, seed=5, start=start, vitals=True, requested_unit_rate=0.8, malformed_rate=0.02)
    msgs = []
    for i, e in enumerate(sim.events(until=start + timedelta(days=3))):
        msgs.append(RawMessage(topic=PREFIX + e.topic, partition=0, offset=i, key=e.key, value=e.value,
                               timestamp=e.at.timestamp()))
        if len(msgs) >= n:
            break
    return msgs


def _demo_worker() -> InMemoryWorker:
    from allocator.hospital import DEMO_HOSPITAL_PATH

    return InMemoryWorker(load_hospitals(DEMO_HOSPITAL_PATH), topic_prefix=PREFIX)


def _in_batches(worker: InMemoryWorker, msgs: list[RawMessage], size: int) -> list[str]:
    async def run() -> list[str]:
        statuses = []
        for i in range(0, len(msgs), size):
            statuses += [o.status for o in await worker.processor.process_batch(msgs[i:i + size])]
        return statuses
    return asyncio.run(run())


def _state(worker: InMemoryWorker) -> dict:
    from streams.state.tables import JOURNAL

    return {name: dict(table) for name, table in worker.tables.items() if name != JOURNAL}


def test_checkpoints_of_any_size_decide_and_store_exactly_what_event_by_event_processing_does():
    msgs = _sim_messages(1500)
    one, many, odd = _demo_worker(), _demo_worker(), _demo_worker()
    statuses = _in_batches(one, msgs, 1)
    assert _in_batches(many, msgs, 500) == statuses == _in_batches(odd, msgs, 7)
    assert {"applied", "dead_letter"} <= set(statuses)  # the stream has malformed events among the good ones
    decided = [encode_output(d) for d in one.sink.decisions]
    assert len(decided) > 100
    assert [encode_output(d) for d in many.sink.decisions] == decided == [encode_output(d) for d in odd.sink.decisions]
    assert [letter.code for letter in many.sink.dead_letters] == [letter.code for letter in one.sink.dead_letters]
    assert _state(many) == _state(one) == _state(odd)


def test_a_repeat_inside_one_batch_is_a_duplicate_and_a_rejected_event_changes_nothing():
    items = scenario()[:2]
    bad = ev.admission(HID, "P9", "E9", 3, requested_unit="NO-SUCH-UNIT", event_id="bad-1")
    w = _worker()
    msgs = _messages([items[0], bad, items[0], items[1]])
    outcomes = asyncio.run(w.processor.process_batch(msgs))
    assert [o.status for o in outcomes] == ["applied", "dead_letter", "duplicate", "applied"]
    assert w.tables[ENCOUNTERS].get(f"{HID}|E9") is None and f"{HID}|bad-1" not in w.tables["seen"]
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].bed_id == "MED-SR1"


def test_one_journal_record_per_checkpoint_carries_every_event_and_finishes_a_lost_batch():
    """The batch's writes reach the tables only after its journal record; a crash that loses any of
    them is finished from the journal by the next process, and its decisions are re-sent byte for byte."""
    from streams.state.tables import JOURNAL

    w = _worker()
    msgs = _messages(scenario()[:3])
    asyncio.run(w.processor.process_batch(msgs))
    journal = w.tables[JOURNAL][HID]
    assert journal["event_ids"] == ["s-1", "s-2", "s-3"] and journal["event_id"] == "s-3"
    keys = [(t, k) for t, k, _ in journal["writes"]]
    assert len(keys) == len(set(keys))  # one write per key per checkpoint
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].status == "discharged"
    del w.tables[ENCOUNTERS][f"{HID}|E1"]  # written by all three events: lost
    w.tables[PATIENTS][f"{HID}|P1"] = "E1"  # the discharge's delete: lost
    del w.tables["seen"][f"{HID}|s-2"]
    restarted = _worker(tables=w.tables)
    outcomes = asyncio.run(restarted.processor.process_batch(msgs))  # the batch comes again
    assert [o.status for o in outcomes] == ["duplicate"] * 3
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].status == "discharged" and f"{HID}|P1" not in w.tables[PATIENTS]
    assert [encode_output(d) for d in restarted.sink.decisions] == [encode_output(d) for d in w.sink.decisions]


def test_a_batch_that_would_outgrow_one_journal_record_is_checkpointed_in_parts():
    from streams.contract.limits import Limits
    from streams.state.tables import JOURNAL

    w = _worker()
    w.processor.limits = Limits(producer_max_request_bytes=40_000, max_message_bytes=25_000)
    journals = []
    real_flush = w.sink.flush

    async def flush() -> None:  # each checkpoint's flush: what the journal holds then
        await real_flush()
        if HID in w.tables[JOURNAL]:
            journals.append(list(w.tables[JOURNAL][HID]["event_ids"]))

    w.sink.flush = flush
    long_text = "Détresse respiratoire — " * 800
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, requested_unit="MEDICINE", event_id=f"a-{i}",
                          text=long_text[:9_000]) for i in range(4)]
    msgs = _messages(items)
    outcomes = asyncio.run(w.processor.process_batch(msgs))
    assert [o.status for o in outcomes] == ["applied"] * 4
    assert len(set(map(tuple, journals))) >= 2  # more than one record: the batch did not fit one
    assert [e for j in dict.fromkeys(map(tuple, journals)) for e in j] == ["a-0", "a-1", "a-2", "a-3"]
    assert [d.caused_by for d in w.sink.decisions if d.kind == "assignment"] == ["a-0", "a-1", "a-2", "a-3"]


def test_table_writes_happen_inside_the_scope_of_their_partition():
    """The worker passes a scope that makes each partition's writes go to that partition's changelog."""
    from contextlib import contextmanager

    w = _worker()
    active: list[int] = []
    writes: list[tuple[str, int | None]] = []

    class Watched(dict):
        def __init__(self, name: str, data: dict) -> None:
            super().__init__(data)
            self.name = name

        def __setitem__(self, k, v) -> None:
            writes.append((self.name, active[-1] if active else None))
            super().__setitem__(k, v)

    for name in list(w.tables):
        w.tables[name] = Watched(name, w.tables[name])

    @contextmanager
    def scope(partition: int):
        active.append(partition)
        try:
            yield
        finally:
            active.pop()

    msgs = []
    for i, item in enumerate(scenario()[:2]):
        topic, key, value = ev.encode(PREFIX, item)
        msgs.append(RawMessage(topic=topic, partition=3, offset=i, key=key, value=value))
    asyncio.run(w.processor.process_batch(msgs, scope))
    assert writes and all(partition == 3 for _, partition in writes)


def test_the_next_batch_is_applied_while_the_last_checkpoint_travels_and_is_acknowledged_after_it():
    """A checkpoint in flight: the next batch reads its writes, sends nothing until it is acknowledged,
    and each batch's `on_durable` runs only once its own checkpoint is acknowledged, in order."""
    from streams.state.tables import JOURNAL

    w = _worker()
    gate = asyncio.Event()
    real_flush = w.sink.flush
    sent_before_ack: list[int] = []

    async def gated_flush() -> None:
        await gate.wait()
        await real_flush()

    w.sink.flush = gated_flush
    msgs = _messages(scenario()[:3])
    durable: list[str] = []

    async def run() -> None:
        await w.processor.apply_batch(msgs[:1], on_durable=lambda: durable.append("first"))
        assert durable == [] and f"{HID}|E1" not in w.tables[ENCOUNTERS]  # nothing issued before the ack
        second = asyncio.ensure_future(w.processor.apply_batch(msgs[1:], on_durable=lambda: durable.append("second")))
        await asyncio.sleep(0.01)
        sent_before_ack.append(len(w.sink.decisions))
        assert not second.done() and durable == []  # applied, waiting for the first checkpoint's ack
        gate.set()
        await second
        assert durable == ["first"]  # the second is in flight now
        await w.processor.settle()
        assert durable == ["first", "second"]

    asyncio.run(run())
    assert sent_before_ack == [1]  # the admission's decision went out; the second batch's waited
    assert w.tables[ENCOUNTERS][f"{HID}|E1"].status == "discharged"
    journal = w.tables[JOURNAL][HID]
    assert journal["event_ids"] == ["s-2", "s-3"] and journal["previous_writes"]  # carries the first's writes


def test_a_batch_applied_over_one_in_flight_decides_as_one_applied_after_it():
    msgs = _sim_messages(600)
    settled, pipelined = _demo_worker(), _demo_worker()
    _in_batches(settled, msgs, 50)

    async def run() -> None:
        for i in range(0, len(msgs), 50):
            await pipelined.processor.apply_batch(msgs[i:i + 50])
        await pipelined.processor.settle()

    asyncio.run(run())
    assert [encode_output(d) for d in pipelined.sink.decisions] == [encode_output(d) for d in settled.sink.decisions]
    assert _state(pipelined) == _state(settled)


def test_a_checkpoint_the_broker_refused_stops_its_batch_and_the_next_attempt_starts_clean():
    """A refused flush: nothing of the batch is acknowledged (on_durable never runs) and the error
    reaches the caller; the same events applied again are decided once, with the same bytes."""
    import pytest

    from streams.exceptions import CheckpointFailed

    w, reference = _worker(), _worker()
    real_flush = w.sink.flush
    failures = [ConnectionError("broker gone")]

    async def flaky_flush() -> None:
        if failures:
            raise failures.pop()
        await real_flush()

    w.sink.flush = flaky_flush
    msgs = _messages(scenario()[:2])
    durable: list[str] = []

    async def run() -> None:
        await w.processor.apply_batch(msgs, on_durable=lambda: durable.append("first try"))
        with pytest.raises(CheckpointFailed):
            await w.processor.settle()
        assert durable == []
        await w.processor.apply_batch(msgs, on_durable=lambda: durable.append("again"))
        await w.processor.settle()

    asyncio.run(run())
    asyncio.run(reference.processor.process_batch(msgs))
    assert durable == ["again"]
    unique = {encode_output(d) for d in w.sink.decisions}
    assert unique == {encode_output(d) for d in reference.sink.decisions}
    assert _state(w) == _state(reference)
