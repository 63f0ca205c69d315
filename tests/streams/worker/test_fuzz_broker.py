"""A hostile run on the real broker: every input topic gets malformed, oversized, future-dated, mistyped,
misplaced and inapplicable messages between valid events (issue 11).

Asserts: every hostile message is dead-lettered exactly once, with the code expected for it; no hostile
message causes a decision; every valid admission is placed exactly once; repeats change nothing; the
worker is alive with no error in its log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.devtools.kafka_io import read_until
from tests import events as ev
from tests.streams.worker.test_hostile_input import BIG, HID, OTHER, two_hospitals

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

PLACEMENT = {"assignment", "no_bed", "needs_confirmation", "no_bed_needed"}
ADMITTED = 12  # valid admissions per hospital


def valid_events() -> list[tuple[str, dict]]:
    out = []
    for hid in (HID, OTHER):
        for i in range(ADMITTED):
            unit = "MEDICINE" if i % 3 else "SURGERY"
            out.append(ev.admission(hid, f"P{i}", f"E{i}", i * 10, sex="FM"[i % 2], requested_unit=unit,
                                    event_id=f"{hid}-a{i}"))
            out.append(ev.vitals(hid, f"P{i}", f"E{i}", i * 10 + 5, event_id=f"{hid}-v{i}", resp_rate=16, spo2=97,
                                 on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
                                 temperature_c=36.9))
        for i in range(3):
            out.append(ev.discharge(hid, f"P{i}", f"E{i}", 200 + i, event_id=f"{hid}-d{i}", disposition="home"))
    return out


def templates(hid: str, n: int) -> dict[str, dict]:
    """One contract-valid body per topic that the hospital's state cannot apply (or can, before mutation)."""
    return {
        "admissions": ev.admission(hid, f"HP{n}", f"HE{n}", 30, requested_unit="MEDICINE", event_id=f"h-{n}")[1],
        "vitals": ev.vitals(hid, f"HP{n}", f"HE{n}", 30, event_id=f"h-{n}", spo2=95)[1],
        "transfers": ev.transfer(hid, f"HP{n}", f"HE{n}", "MED-SR1", 30, event_id=f"h-{n}")[1],
        "discharges": ev.discharge(hid, f"HP{n}", f"HE{n}", 30, event_id=f"h-{n}")[1],
        "bed-status": ev.bed_status(hid, "MED-SR1", "blocked", 30, event_id=f"h-{n}")[1],
        "overrides": ev.override(hid, f"no-such-decision-{n}", "confirm", "dr-a", 30, event_id=f"h-{n}")[1],
        "page-acks": {"event_id": f"h-{n}", "hospital_id": hid, "occurred_at": ev.at(30), "page_id": f"pg-{n}",
                      "clinician_id": "dr-a"},
    }


# Contract-valid but inapplicable: the code each topic's template gets as is (HE* was never admitted).
INAPPLICABLE = {"admissions": None, "vitals": "unknown_encounter", "transfers": "unknown_encounter",
                "discharges": "unknown_encounter", "bed-status": None, "overrides": "unknown_decision",
                "page-acks": "unknown_page"}


def hostile(prefix: str, rng: random.Random) -> list[tuple[str, bytes | None, bytes | None, int | None, str]]:
    """(topic, key, value, partition, expected code) for every mutation on every topic."""
    out = []
    n = 0
    now = datetime.now(UTC)
    for topic in ("admissions", "vitals", "transfers", "discharges", "bed-status", "overrides", "page-acks"):
        full = f"{prefix}{topic}"
        for _ in range(8):
            n += 1
            hid = rng.choice((HID, OTHER))
            key = hid.encode()
            body = templates(hid, n)[topic]
            raw = orjson.dumps(body)

            def add(value, code, *, t=full, k=key, partition=None):
                out.append((t, k, value, partition, code))

            add(raw[: len(raw) // 2], "malformed_json")
            add(b"\xff\xfe" + raw, "not_utf8")
            add(b"", "empty_message")
            add(None, "empty_message")
            add(rng.choice([b"[1, 2]", b'"text"', b"42", b"null", b"true"]), "not_an_object")
            add(orjson.dumps({k: v for k, v in body.items() if k != "event_id"}), "missing_field")
            add(orjson.dumps({**body, "event_id": 42}), "wrong_type")
            add(orjson.dumps({**body, "hospital_id": ["x"]}), "wrong_type")
            add(orjson.dumps({**body, "event_id": "  "}), "invalid_value")
            add(orjson.dumps({**body, "occurred_at": "2026-11-24T08:00:00"}), "bad_timestamp")
            add(orjson.dumps({**body, "occurred_at": 1764000000}), "bad_timestamp")
            add(orjson.dumps({**body, "occurred_at": (now + timedelta(days=rng.randint(1, 60))).isoformat()}),
                "future_event")
            add(orjson.dumps({**body, "occurred_at": "9999-12-31T23:59:59Z"}), "future_event")
            add(raw, "wrong_partition", k=None)
            add(raw, "wrong_partition", k=b"someone-else")
            add(raw, "wrong_partition", partition=1 - (0 if hid == OTHER else 1))
            add(raw, "too_large", k=hid.encode() * 200)
            add(orjson.dumps({**body, "hospital_id": "nowhere"}), "unknown_hospital", k=b"nowhere")
            if topic == "admissions":
                add(orjson.dumps({**body, "age": 300}), "out_of_range")
                add(orjson.dumps({**body, "sex": "female"}), "invalid_value")
                add(orjson.dumps({**body, "age": "70"}), "wrong_type")
                add(orjson.dumps({**body, "spo2_scale2": "yes"}), "wrong_type")
            if topic == "vitals":
                add(orjson.dumps({**body, "spo2": 140}), "out_of_range")
                add(orjson.dumps({k: v for k, v in body.items() if k != "spo2"}), "no_measurement")
                add(orjson.dumps({**body, "on_oxygen": 1}), "wrong_type")
            if INAPPLICABLE[topic]:
                add(raw, INAPPLICABLE[topic])
    # A few heavy ones: over the size limit on three topics, and binary noise.
    for topic in ("admissions", "vitals", "overrides"):
        body = templates(HID, 999)[topic]
        out.append((f"{prefix}{topic}", HID.encode(), orjson.dumps({**body, "pad": "x" * 600_000}), None, "too_large"))
    out.append((f"{prefix}vitals", HID.encode(), rng.randbytes(700_000), None, "too_large"))
    rng.shuffle(out)
    return out


async def _produce(bootstrap: str, messages) -> dict[tuple[str, int, int], str]:
    """Send in order; returns (topic, partition, offset) -> expected code for the hostile ones."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=BIG, linger_ms=5)
    await producer.start()
    expected = {}
    try:
        pending = []
        for topic, key, value, partition, code in messages:
            pending.append((await producer.send(topic, value=value, key=key, partition=partition), code))
        for fut, code in pending:
            meta = await fut
            if code is not None:
                expected[(meta.topic, meta.partition, meta.offset)] = code
    finally:
        await producer.stop()
    return expected


def test_hostile_fuzz_over_every_input_topic(broker, run_id, start_worker, tmp_path):
    prefix = f"{run_id}."
    rng = random.Random(20261206)
    worker = start_worker(hospital_config=two_hospitals(tmp_path))
    valid = [(*ev.encode(prefix, e), None, None) for e in valid_events()]
    bad = hostile(prefix, rng)
    # Valid events keep their order per topic; hostile ones are spread between them; then valid repeats.
    stream = list(valid)
    for item in bad:
        stream.insert(rng.randrange(len(stream) + 1), item)
    repeats = [(*ev.encode(prefix, e), None, None) for e in valid_events() if e[1]["event_id"].endswith(("a1", "a2"))]
    started = time.monotonic()
    expected = asyncio.run(_produce(broker.bootstrap, stream + repeats))
    assert len(expected) == len(bad) > 500
    admissions = {e[1]["event_id"] for e in valid_events() if e[0] == "admissions"}

    def done(records) -> bool:
        dead = [r for r in records if r.topic.endswith("dead-letters")]
        placed = {orjson.loads(r.value)["caused_by"] for r in records if r.topic.endswith("decisions")
                  and orjson.loads(r.value)["kind"] in PLACEMENT}
        return len(dead) >= len(bad) and admissions <= placed

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters"], done,
                                     timeout_s=150, settle_s=3.0))
    took = time.monotonic() - started
    dead = [orjson.loads(r.value) for r in records if r.topic.endswith("dead-letters")]
    decisions = [orjson.loads(r.value) for r in records if r.topic.endswith("decisions")]

    # 100% of hostile messages dead-lettered, each exactly once, each with the code expected for it.
    got = Counter((d["topic"], d["partition"], d["offset"]) for d in dead)
    assert [k for k, c in got.items() if c > 1] == [], "dead-lettered twice"
    assert set(got) == set(expected), f"missing {len(set(expected) - set(got))}, unexpected {len(set(got) - set(expected))}"
    wrong = [(d["code"], expected[(d["topic"], d["partition"], d["offset"])], d["message"]) for d in dead
             if d["code"] != expected[(d["topic"], d["partition"], d["offset"])]]
    assert wrong == [], wrong[:10]
    # No hostile message caused a decision; every valid admission is placed exactly once; no id twice.
    assert not [d for d in decisions if d["caused_by"].startswith("h-")]
    placements = Counter(d["caused_by"] for d in decisions if d["kind"] in PLACEMENT)
    assert {a: placements[a] for a in admissions} == dict.fromkeys(admissions, 1)
    by_id = Counter(d["decision_id"] for d in decisions)
    assert [i for i, c in by_id.items() if c > 1] == [], "a decision was emitted twice"
    assert worker.running and worker.errors() == [], worker.errors()[:5]
    print(f"\nfuzz: {len(bad)} hostile + {len(valid)} valid + {len(repeats)} repeats in {took:.1f} s; "
          f"codes {dict(Counter(d['code'] for d in dead))}")
