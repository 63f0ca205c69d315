"""kill -9 the worker in the middle of a replay, start it again: nothing lost, nothing doubled.

The expected state is recomputed by running the same input through the processor in memory;
the worker's state is read back from its changelog topics (what a restarted worker recovers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals
from streams.contract.models import encode_output
from streams.devtools.broker import create_topics
from streams.devtools.kafka_io import produce_all, read_until
from streams.devtools.memory import InMemoryWorker
from streams.devtools.simulator import HospitalSimulator, SimEvent
from streams.pipeline.processor import RawMessage
from streams.pipeline.sequencer import EventTimeMerger, event_time
from streams.settings import WardflowSettings
from streams.state.tables import BEDS, CENSUS, ENCOUNTERS, PATIENTS, WAITING
from streams.worker.app import input_topic_names, output_topic_names
from tests import events as ev

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(400)]

COMPARED_TABLES = (BEDS, ENCOUNTERS, PATIENTS, CENSUS, WAITING)


def _jsonable(value):
    if hasattr(value, "asdict"):
        value = value.asdict()
    return orjson.loads(orjson.dumps(value, default=lambda o: o.asdict()))


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "__faust"}
    return value


def _fold_changelog(records) -> dict[str, dict[str, object]]:
    """Latest value per key of each changelog topic; a None value is a deletion."""
    tables: dict[str, dict[str, object]] = defaultdict(dict)
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        name = r.topic.rsplit(".", 1)[-1].removesuffix("-changelog")
        k = orjson.loads(r.key)
        if r.value is None or r.value == b"null":
            tables[name].pop(k, None)
        else:
            tables[name][k] = _strip(orjson.loads(r.value))
    return tables


def test_kill_9_mid_replay_then_restart_recovers_exact_state(broker, run_id, start_worker):
    prefix = f"{run_id}."
    hospitals = load_hospitals(DEMO_HOSPITAL_PATH)
    hospital = next(iter(hospitals.values()))
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    events = list(HospitalSimulator(hospital, seed=11, start=start, malformed_rate=0.02).events(
        until=datetime(2026, 11, 23, 18, 0, tzinfo=UTC)))
    assert len(events) > 400
    # A last admission after everything else: in event-time order, its decision means all is done.
    sentinel = ev.admission(hospital.hospital_id, "P-SENTINEL", "E-SENTINEL", 24 * 60 * 2, sex="F",
                            requested_unit="MEDICINE", event_id="sentinel")
    topic, key, value = ev.encode("", sentinel)
    events.append(SimEvent(at=start, topic=topic, key=key, value=value))

    # Expected: the same stream through the processor in memory, in the sequencer's order.
    expected = InMemoryWorker(hospitals, topic_prefix=prefix)
    asyncio.run(expected.feed(canonical_order(prefix, events)))
    expected_ids = {d.decision_id for d in expected.sink.decisions}
    assert len(expected_ids) > 50

    settings = WardflowSettings(broker_url=broker.url, topic_prefix=prefix, topic_partitions=2)
    asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings), 2))
    asyncio.run(produce_all(broker.bootstrap, [(prefix + e.topic, e.key, e.value) for e in events]))
    worker = start_worker(wait=False, hospital_config=DEMO_HOSPITAL_PATH)
    first_ready_s = worker.wait_ready(90)

    def decisions_seen(n):
        return lambda recs: len({orjson.loads(r.value)["decision_id"] for r in recs}) >= n

    asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], decisions_seen(len(expected_ids) // 3), 120))
    worker.kill()  # mid-replay: offsets, changelogs and decisions in flight are cut off
    killed_at = time.monotonic()

    restarted = start_worker(wait=False, hospital_config=DEMO_HOSPITAL_PATH)
    recovery_s = restarted.wait_ready(120)
    def sentinel_decided(recs) -> bool:
        return any(orjson.loads(r.value)["caused_by"] == "sentinel" for r in recs)

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], sentinel_decided, 180, settle_s=2.0))
    assert restarted.stop() == 0  # clean shutdown flushes the changelogs and commits
    print(f"\nfirst start ready {first_ready_s:.1f}s; restart ready {recovery_s:.1f}s; "
          f"kill->all decisions {time.monotonic() - killed_at:.1f}s; {len(events)} events")

    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        by_id[orjson.loads(r.value)["decision_id"]].add(r.value)
    expected_bytes = {d.decision_id: encode_output(d) for d in expected.sink.decisions}
    for d in expected.sink.decisions:
        got_bytes = by_id.get(d.decision_id)
        if got_bytes and expected_bytes[d.decision_id] not in got_bytes:
            want_reasons = [r.text for r in d.reasons]
            got_reasons = [r["text"] for r in orjson.loads(sorted(got_bytes)[0]).get("reasons", [])]
            diff = [(w, g) for w, g in zip(want_reasons, got_reasons, strict=False) if w != g]
            pytest.fail(f"decision {d.kind} caused by {d.caused_by} differs after the crash: {diff or got_bytes}; "
                        f"expected {expected_bytes[d.decision_id]!r}; "
                        f"{_order_divergence(broker.bootstrap, prefix, canonical_order(prefix, events))}")
    if set(by_id) != expected_ids:
        want = {d.decision_id: (d.kind, d.caused_by, d.encounter_id, d.bed_id) for d in expected.sink.decisions}
        got = {}
        for r in records:
            d = orjson.loads(r.value)
            got[d["decision_id"]] = (d["kind"], d["caused_by"], d.get("encounter_id"), d.get("bed_id"))
        missing = sorted(want[i] for i in expected_ids - set(by_id))
        extra = sorted(got[i] for i in set(by_id) - expected_ids)
        first_cause = missing[0][1] if missing else extra[0][1]
        same_cause = [v for v in got.values() if v[1] == first_cause]
        pytest.fail(f"lost decisions {missing[:3]}; invented decisions {extra[:3]}; "
                    f"the worker's decisions for {first_cause}: {same_cause}")
    assert all(len(v) == 1 for v in by_id.values()), "a repeated decision differs from the first"

    per_admission: dict[str, set[str]] = defaultdict(set)
    admissions = {orjson.loads(e.value)["event_id"] for e in events if e.topic == "admissions" and _valid(e.value)}
    for r in records:
        d = orjson.loads(r.value)
        if d["caused_by"] in admissions and d.get("encounter_id"):  # not hospital-wide ones (surge level)
            per_admission[d["caused_by"]].add(d["decision_id"])
    applied = {d.caused_by for d in expected.sink.decisions} & admissions
    assert len(applied) > 100
    assert all(len(per_admission[a]) == 1 for a in applied), "an admission without exactly one decision"

    changelog_topics = [f"wardflow-{run_id}-{prefix}{name}-changelog" for name in COMPARED_TABLES]
    changelog = _fold_changelog(asyncio.run(read_until(broker.bootstrap, changelog_topics, lambda r: False, 8)))
    for name in COMPARED_TABLES:
        want = {k: _jsonable(v) for k, v in expected.tables[name].items()}
        assert changelog.get(f"{name}", {}) == want, f"table {name} differs from the recomputation"


def canonical_order(prefix: str, events) -> list[RawMessage]:
    """The order the worker's sequencer gives a fully available backlog: merge by event time."""
    topics = input_topic_names(WardflowSettings(topic_prefix=prefix))
    merger = EventTimeMerger(topics, max_wait_s=0.0)
    offsets: dict[str, int] = defaultdict(int)
    for e in events:
        topic = prefix + e.topic
        msg = RawMessage(topic=topic, partition=0, offset=offsets[topic], key=e.key, value=e.value)
        offsets[topic] += 1
        merger.add(topic, 0, msg.offset, event_time(e.value), msg, now=0.0)
    return [p.item for p in merger.release(0, now=0.0, lag=lambda t, p: 0)]


def _order_divergence(bootstrap: str, prefix: str, canonical: list[RawMessage]) -> str:
    """Where the worker's processing order (its `ordered` topic, first copies) leaves the canonical one."""
    records = asyncio.run(read_until(bootstrap, [f"{prefix}ordered"], lambda r: False, 5))
    main = max({r.partition for r in records}, key=lambda p: sum(r.partition == p for r in records))
    seen, actual = set(), []
    for r in sorted((r for r in records if r.partition == main), key=lambda r: r.offset):
        if r.value in seen:
            continue
        seen.add(r.value)
        actual.append(r.value)
    want = [m.value for m in canonical if m.value in seen]
    for i, (a, w) in enumerate(zip(actual, want, strict=False)):
        if a != w:
            def brief(v):
                try:
                    b = orjson.loads(v)
                    return {k: b.get(k) for k in ("event_id", "occurred_at", "bed_id", "encounter_id", "status")}
                except orjson.JSONDecodeError:
                    return v[:40]
            return f"order diverges at {i}: worker had {brief(a)}, canonical {brief(w)}"
    return "same order"


def _valid(value: bytes) -> bool:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and "event_id" in body


def _decision_ids(records) -> set[str]:
    return {orjson.loads(r.value)["decision_id"] for r in records}


def multi_kill_replay(broker, run_id, start_worker, *, kills: int, hours: float, seed: int,
                      model_path=None, live_rate: float | None = None, partitions: int = 2) -> dict:
    """Replay a simulated stretch (vitals included), kill -9 the worker `kills` times, let it finish.

    Returns the figures and the records for the caller's assertions (with and without the model)."""
    prefix = f"{run_id}."
    hospitals = load_hospitals(DEMO_HOSPITAL_PATH)
    hospital = next(iter(hospitals.values()))
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    events = list(HospitalSimulator(hospital, seed=seed, start=start, malformed_rate=0.01, vitals=True).events(
        until=start + timedelta(hours=hours)))
    topic, body = ev.admission(hospital.hospital_id, "P-SENTINEL", "E-SENTINEL", sex="F",
                               requested_unit="MEDICINE", event_id="sentinel")
    body["occurred_at"] = (start + timedelta(hours=hours, minutes=1)).isoformat()  # right after the last event
    topic, key, value = ev.encode("", (topic, body))
    events.append(SimEvent(at=start, topic=topic, key=key, value=value))

    settings = WardflowSettings(broker_url=broker.url, topic_prefix=prefix, topic_partitions=partitions)
    asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings),
                              partitions))
    messages = [(prefix + e.topic, e.key, e.value) for e in events]
    producer = None
    if live_rate is None:
        asyncio.run(produce_all(broker.bootstrap, messages))
    else:  # published while the worker runs and dies, like a hospital that does not wait
        producer = threading.Thread(target=lambda: asyncio.run(produce_paced(broker.bootstrap, messages, live_rate)),
                                    daemon=True)
        producer.start()
    extra = {} if model_path is None else dict(model_path=model_path, allow_no_model=False)
    extra["topic_partitions"] = partitions
    worker = start_worker(wait=False, hospital_config=DEMO_HOSPITAL_PATH, **extra)
    worker.wait_ready(90)
    restarts: list[float] = []
    rng = random.Random(seed)

    def sentinel_decided(recs) -> bool:
        return any(orjson.loads(r.value)["caused_by"] == "sentinel" for r in recs)

    seen = 0
    for i in range(kills):
        if i % 2:  # cut it off while it starts: joining, recovering tables or catching up
            time.sleep(rng.uniform(0.5, 6.0))
        else:  # or once it has made some progress
            want = seen + rng.randint(20, 200)
            recs = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"],
                                          lambda rs, w=want: len(_decision_ids(rs)) >= w, 120))
            seen = len(_decision_ids(recs))
        worker.kill()
        killed = time.monotonic()
        so_far = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], lambda rs: True, 10, settle_s=0.3))
        seen = len(_decision_ids(so_far))
        worker = start_worker(wait=False, hospital_config=DEMO_HOSPITAL_PATH, **extra)
        if i % 2 == 0 and not sentinel_decided(so_far):  # timed only while something is left to decide
            first_new = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"],
                                               lambda rs, s=seen: len(_decision_ids(rs)) > s, 120))
            restarts.append(time.monotonic() - killed)
            seen = len(_decision_ids(first_new))

    if producer is not None:
        producer.join(timeout=120)
    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], sentinel_decided, 240, settle_s=2.0))
    assert worker.stop() == 0
    return {"events": events, "records": records, "restarts": restarts, "hospitals": hospitals, "prefix": prefix,
            "broker": broker.bootstrap}


def _assert_nothing_lost_nothing_changed(run: dict) -> dict[str, set[str]]:
    """Every valid admission exactly one placement-kind decision; every repeated id with the same bytes."""
    records, events = run["records"], run["events"]
    by_id: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        by_id[orjson.loads(r.value)["decision_id"]].add(r.value)
    changed = {i: v for i, v in by_id.items() if len(v) > 1}
    assert not changed, f"{len(changed)} decision ids re-emitted with other bytes, e.g. {next(iter(changed.values()))}"
    admissions = {orjson.loads(e.value)["event_id"] for e in events if e.topic == "admissions" and _valid(e.value)}
    per_admission: dict[str, set[str]] = defaultdict(set)
    for r in records:
        d = orjson.loads(r.value)
        if d["caused_by"] in admissions and d.get("encounter_id"):
            per_admission[d["caused_by"]].add(d["decision_id"])
    return per_admission


@pytest.mark.timeout(900)
@pytest.mark.skipif(not os.environ.get("WARDFLOW_SOAK"), reason="soak run (about 3 minutes): WARDFLOW_SOAK=1; the "
                    "live-publishing and model variants below run in every suite")
def test_eight_kills_during_a_6000_event_replay_lose_nothing(broker, run_id, start_worker):
    run = multi_kill_replay(broker, run_id, start_worker, kills=8, hours=22, seed=11)
    assert len(run["events"]) >= 6000
    expected = InMemoryWorker(run["hospitals"], topic_prefix=run["prefix"])
    asyncio.run(expected.feed(canonical_order(run["prefix"], run["events"])))
    expected_bytes = {d.decision_id: encode_output(d) for d in expected.sink.decisions}
    per_admission = _assert_nothing_lost_nothing_changed(run)
    got = {orjson.loads(r.value)["decision_id"]: r.value for r in run["records"]}
    missing = sorted(set(expected_bytes) - set(got))
    extra = sorted(set(got) - set(expected_bytes))
    print(f"\n{len(run['events'])} events, {len(expected_bytes)} decisions expected, {len(got)} seen; "
          f"kill -> first new decision {[round(s, 1) for s in run['restarts']]} s")
    assert not missing, f"{len(missing)} decisions lost, e.g. {[expected_bytes[m][:200] for m in missing[:3]]}"
    assert not extra, f"{len(extra)} decisions invented, e.g. {[got[x][:200] for x in extra[:3]]}"
    differ = [i for i, b in got.items() if expected_bytes[i] != b]
    assert not differ, f"{len(differ)} decisions differ from the recomputation, e.g. {got[differ[0]][:300]!r}"
    lost = [a for a in {d.caused_by for d in expected.sink.decisions if d.encounter_id} & set(admission_ids(run))
            if not per_admission.get(a)]
    assert not lost, f"{len(lost)} admissions without a decision, e.g. {lost[:5]}; {_where_lost(run, lost)}"


def admission_ids(run: dict) -> set[str]:
    return {orjson.loads(e.value)["event_id"] for e in run["events"] if e.topic == "admissions" and _valid(e.value)}


async def produce_paced(bootstrap: str, messages, rate: float) -> None:
    """Send in order at about `rate` messages a second, each acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        began = time.monotonic()
        futures = []
        for i, (topic, key, value) in enumerate(messages):
            futures.append(await producer.send(topic, value=value, key=key))
            ahead = i / rate - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@pytest.mark.timeout(900)
def test_eight_kills_while_a_hospital_keeps_publishing(broker, run_id, start_worker):
    run = multi_kill_replay(broker, run_id, start_worker, kills=8, hours=22, seed=7, live_rate=60.0, partitions=4)
    expected = InMemoryWorker(run["hospitals"], topic_prefix=run["prefix"])
    asyncio.run(expected.feed(canonical_order(run["prefix"], run["events"])))
    per_admission = _assert_nothing_lost_nothing_changed(run)
    lost = [a for a in {d.caused_by for d in expected.sink.decisions if d.encounter_id} & admission_ids(run)
            if not per_admission.get(a)]
    print(f"\n{len(run['events'])} events live; kill -> first new decision {[round(s, 1) for s in run['restarts']]} s")
    assert not lost, f"{len(lost)} admissions without a decision, e.g. {lost[:5]}; {_where_lost(run, lost)}"


def _where_lost(run: dict, lost: list[str]) -> str:
    """Which stage lost them: never forwarded to `ordered`, or forwarded and not applied (or dead-lettered)."""
    prefix = run["prefix"]
    ordered = asyncio.run(read_until(run["broker"], [f"{prefix}ordered"], lambda r: False, 5))
    letters = asyncio.run(read_until(run["broker"], [f"{prefix}dead-letters"], lambda r: False, 3))
    in_ordered = {}
    for r in ordered:
        with contextlib.suppress(Exception):  # malformed copies are expected too
            in_ordered[orjson.loads(r.value)["event_id"]] = (r.partition, r.offset)
    lettered = {}
    for r in letters:
        with contextlib.suppress(Exception):  # so are malformed dead letters
            letter = orjson.loads(r.value)
            body = orjson.loads(base64.b64decode(letter["value"]) if letter.get("value_encoding") == "base64"
                                else letter["value"])
            lettered[body["event_id"]] = letter["code"]
    forwarded = sorted((in_ordered[i], i) for i in lost if i in in_ordered)
    return (f"{len(forwarded)} of them are on `ordered` (first {forwarded[:3]}, last {forwarded[-3:]}), "
            f"{sum(i in lettered for i in lost)} dead-lettered ({sorted(set(lettered[i] for i in lost if i in lettered))})")


@pytest.mark.timeout(900)
def test_eight_kills_with_the_model_repeat_every_decision_byte_for_byte(broker, run_id, start_worker):
    """Predictions are made in batches whose make-up differs after every restart; a repeated decision
    must still carry the bytes of the first one (the state agent applies the first copy on `ordered`)."""
    from tests.inference_support import tiny_exported

    run = multi_kill_replay(broker, run_id, start_worker, kills=8, hours=22, seed=5,
                            model_path=tiny_exported() / "int8")
    expected = InMemoryWorker(run["hospitals"], topic_prefix=run["prefix"])
    asyncio.run(expected.feed(canonical_order(run["prefix"], run["events"])))
    per_admission = _assert_nothing_lost_nothing_changed(run)
    lost = [a for a in {d.caused_by for d in expected.sink.decisions if d.encounter_id} & admission_ids(run)
            if not per_admission.get(a)]
    predicted = sum(1 for r in run["records"] if b'"model_version"' in r.value)
    print(f"\n{len(run['events'])} events with the model ({predicted} decisions carry a prediction); "
          f"kill -> first new decision {[round(s, 1) for s in run['restarts']]} s")
    assert predicted > 50
    assert not lost, f"{len(lost)} admissions without a decision, e.g. {lost[:5]}; {_where_lost(run, lost)}"
