"""The worker on the real embedded broker: scripted scenario, dead letters, idempotency.

Each test has its own topic prefix and consumer group, and waits on the output topics with
deadlines; "exactly" assertions keep reading for a settle period to catch extra decisions.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.devtools.kafka_io import produce_all, read_until
from tests import events as ev

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

HID = "test-hosp"
SETTLE_S = 3.0


def _send(broker, prefix: str, items) -> None:
    asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, i) if isinstance(i[1], dict) else i for i in items]))


def _decisions(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records if r.topic.endswith("decisions")]


def _dead_letters(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records if r.topic.endswith("dead-letters")]


def _read(broker, prefix: str, decisions: int, dead_letters: int = 0, timeout_s: float = 90.0):
    def done(records) -> bool:
        return len(_decisions(records)) >= decisions and len(_dead_letters(records)) >= dead_letters

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters"], done,
                                     timeout_s=timeout_s, settle_s=SETTLE_S))
    return _decisions(records), _dead_letters(records)


def scenario() -> list:
    """Admit, place, transfer, discharge, clean, re-admit (ids fixed so the expected beds are known)."""
    return [
        ev.admission(HID, "P1", "E1", 0, sex="F", requested_unit="MEDICINE", event_id="s-1"),
        ev.transfer(HID, "P1", "E1", "MED-SR1", 30, event_id="s-2"),
        ev.discharge(HID, "P1", "E1", 600, event_id="s-3", disposition="home"),
        ev.bed_status(HID, "MED-SR1", "cleaning", 610, event_id="s-4"),
        ev.bed_status(HID, "MED-SR1", "clean", 650, event_id="s-5"),
        ev.admission(HID, "P1", "E2", 700, sex="F", requested_unit="MEDICINE", event_id="s-6"),
    ]


def test_scripted_scenario_yields_exactly_the_expected_decisions(broker, run_id, start_worker):
    prefix = f"{run_id}."
    start_worker()
    _send(broker, prefix, scenario())
    decisions, dead = _read(broker, prefix, decisions=2)

    assert dead == []
    assert [(d["kind"], d["caused_by"], d["encounter_id"], d.get("bed_id")) for d in decisions] == [
        ("assignment", "s-1", "E1", "MED-B1-A"),  # first bed of the female bay
        ("assignment", "s-6", "E2", "MED-B1-B"),  # MED-B1-A is still dirty after the transfer
    ]
    first = decisions[0]
    assert first["unit"] == "MED" and first["hospital_id"] == HID and first["reasons"]
    assert all("text" not in d and "Productive cough" not in orjson.dumps(d).decode() for d in decisions)


def test_bad_input_is_dead_lettered_while_good_events_flow(broker, run_id, start_worker):
    prefix = f"{run_id}."
    start_worker()
    good_1 = ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="g-1")
    good_2 = ev.admission(HID, "P2", "E2", 5, sex="M", requested_unit="MEDICINE", event_id="g-2")
    good_3 = ev.admission(HID, "P3", "E3", 9, sex="M", requested_unit="SURGERY", event_id="g-3")
    missing_age = ev.admission(HID, "P4", "E4", 1, event_id="b-missing")
    del missing_age[1]["age"]
    wrong_type = ev.admission(HID, "P5", "E5", 1, event_id="b-type")
    wrong_type[1]["age"] = "seventy"
    naive_time = ev.admission(HID, "P6", "E6", 1, event_id="b-time")
    naive_time[1]["occurred_at"] = "2026-11-24T08:00:00"
    bad = [
        ("malformed_json", (f"{prefix}admissions", HID.encode(), b'{"event_id": "x", ')),
        ("not_utf8", (f"{prefix}vitals", HID.encode(), b"\xff\xfe\x00garbage")),
        ("missing_field", ev.encode(prefix, missing_age)),
        ("wrong_type", ev.encode(prefix, wrong_type)),
        ("bad_timestamp", ev.encode(prefix, naive_time)),
        ("unknown_hospital", ev.encode(prefix, ev.admission("nowhere", "P7", "E7", 1, event_id="b-hosp"))),
        ("unknown_bed", ev.encode(prefix, ev.bed_status(HID, "NO-SUCH-BED", "clean", 2, event_id="b-bed"))),
        ("unknown_encounter", ev.encode(prefix, ev.discharge(HID, "P8", "E8", 3, event_id="b-never"))),
        ("impossible_transition", ev.encode(prefix, ev.transfer(HID, "P2", "E2", "MED-B1-A", 7, event_id="b-occ"))),
    ]
    stream = [ev.encode(prefix, good_1), *[m for _, m in bad[:5]], ev.encode(prefix, good_2),
              *[m for _, m in bad[5:]], ev.encode(prefix, good_3)]
    _send(broker, prefix, stream)
    decisions, dead = _read(broker, prefix, decisions=3, dead_letters=len(bad))

    assert [d["caused_by"] for d in decisions] == ["g-1", "g-2", "g-3"]
    assert all(d["kind"] == "assignment" for d in decisions)
    assert sorted(d["code"] for d in dead) == sorted(code for code, _ in bad)
    by_code = {d["code"]: d for d in dead}
    assert by_code["wrong_type"]["field"] == "age" and "age" in by_code["wrong_type"]["message"]
    assert by_code["not_utf8"]["value_encoding"] == "base64"
    assert by_code["malformed_json"]["value"] == '{"event_id": "x", '
    assert by_code["impossible_transition"]["field"] == "to_bed_id"
    for d in dead:
        assert d["topic"].startswith(prefix) and d["offset"] >= 0 and d["partition"] >= 0 and d["message"]


def test_the_same_events_twice_change_nothing(broker, run_id, start_worker):
    prefix = f"{run_id}."
    start_worker()
    _send(broker, prefix, scenario())
    first, _ = _read(broker, prefix, decisions=2)
    _send(broker, prefix, scenario())  # identical event ids: must be no-ops
    # A marker event after the repeats proves they were processed (one partition per hospital).
    _send(broker, prefix, [ev.admission(HID, "P9", "E9", 800, sex="M", requested_unit="MEDICINE", event_id="m-1")])
    decisions, dead = _read(broker, prefix, decisions=3)

    assert dead == []
    assert decisions[:2] == first
    assert [d["caused_by"] for d in decisions] == ["s-1", "s-6", "m-1"]
    assert decisions[2]["bed_id"] == "MED-B2-A"  # state after repeats = state after one pass


def test_overrides_and_feedback_end_to_end(broker, run_id, start_worker):
    """A clinician's word on the real broker: unauthorized -> dead letter, breach refused, deliberate
    reassign applied with a feedback record carrying the corrected label and the text."""
    prefix = f"{run_id}."
    start_worker()
    text = "Contractions every four minutes, 38 weeks pregnant."
    _send(broker, prefix, [ev.admission(HID, "P1", "E1", 0, age=31, sex="F", text=text,
                                        requested_unit="MEDICINE", event_id="f-1")])
    decisions, _ = _read(broker, prefix, decisions=1)
    (assignment,) = decisions
    did = assignment["decision_id"]
    _send(broker, prefix, [
        ev.override(HID, did, "reassign", "intruder", 5, bed="OBS-SR1", event_id="f-2"),
        ev.override(HID, did, "reassign", "dr-a", 6, bed="OBS-SR1", event_id="f-3"),
        ev.override(HID, did, "reassign", "dr-b", 7, bed="OBS-SR1", deliberate=True, event_id="f-4"),
    ])

    def done(records) -> bool:
        return any(r.topic.endswith("feedback") for r in records) and len(_dead_letters(records)) >= 1 \
            and len(_decisions(records)) >= 4

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters",
                                                        f"{prefix}feedback"], done, timeout_s=90, settle_s=SETTLE_S))
    kinds = [(d["kind"], d["caused_by"]) for d in _decisions(records)]
    assert kinds == [("assignment", "f-1"), ("override_refused", "f-3"), ("override_applied", "f-4"),
                     ("assignment", "f-4")]
    assert [(d["code"], orjson.loads(d["value"])["event_id"]) for d in _dead_letters(records)] == [("unauthorized", "f-2")]
    applied = _decisions(records)[2]
    assert applied["details"]["breaches"] and applied["details"]["clinician_id"] == "dr-b"
    assert _decisions(records)[3]["bed_id"] == "OBS-SR1"
    (feedback,) = [orjson.loads(r.value) for r in records if r.topic.endswith("feedback")]
    assert (feedback["target_unit"], feedback["previous_target_unit"], feedback["corrected"]) == \
        ("MATERNITY", "MEDICINE", True)
    assert (feedback["text"], feedback["who"], feedback["caused_by"]) == (text, "dr-b", "f-4")


def _checkpoint_histogram(port: str) -> dict[str, float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    family = next(f for f in text_string_to_metric_families(text) if f.name == "wardflow_checkpoint_events")
    out = {}
    for s in family.samples:
        out[s.labels["le"] if s.name.endswith("_bucket") else s.name.rsplit("_", 1)[-1]] = s.value
    return out


def test_a_backlog_is_applied_in_batched_checkpoints_and_a_lone_event_in_one_of_its_own(
        broker, run_id, start_worker, worker_env):
    """Checkpoints gather what the consumer has to give: a backlog goes in a few round trips, and
    an event arriving at an idle worker is checkpointed at once, not held for company."""
    from streams.devtools.broker import create_topics
    from streams.settings import WardflowSettings
    from streams.worker.app import input_topic_names, output_topic_names

    prefix = f"{run_id}."
    settings = WardflowSettings(topic_prefix=prefix, topic_partitions=2)
    asyncio.run(create_topics(broker.bootstrap, input_topic_names(settings) + output_topic_names(settings), 2))
    backlog = [ev.admission(HID, f"P{i}", f"E{i}", i, sex="F", requested_unit="MEDICINE", event_id=f"b-{i}")
               for i in range(120)]
    _send(broker, prefix, backlog)
    start_worker()
    decisions, _ = _read(broker, prefix, decisions=120)
    assert {d["caused_by"] for d in decisions} >= {f"b-{i}" for i in range(120)}
    port = worker_env["WARDFLOW_METRICS_PORT"]
    before = _checkpoint_histogram(port)
    assert before["sum"] >= 120 and before["count"] <= 120 / 4, before  # batches, not one round trip per event
    _send(broker, prefix, [ev.admission(HID, "Q1", "F1", 500, sex="M", requested_unit="MEDICINE", event_id="lone")])
    decisions, _ = _read(broker, prefix, decisions=121)
    assert "lone" in {d["caused_by"] for d in decisions}
    after = _checkpoint_histogram(port)
    assert after["1.5"] == before["1.5"] + 1 and after["count"] == before["count"] + 1  # a checkpoint of one
