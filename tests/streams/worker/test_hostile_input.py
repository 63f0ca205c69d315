"""Hostile input on the real broker: oversized, future-dated and misplaced messages are dead-lettered
with a code, never forwarded whole, and never stop the worker or stall a hospital (issue 11).

Each test has its own topic prefix and consumer group and reads the output topics with deadlines.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.devtools.kafka_io import read_until
from streams.pipeline.processor import partition_for
from tests import events as ev
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

HID = "test-hosp"  # partition 1 of 2
OTHER = "north-hosp"  # partition 0 of 2
BIG = 4 * 1024 * 1024  # our test producer may send what the broker accepts


async def _produce(bootstrap: str, messages: list[tuple]) -> None:
    """(topic, key, value[, partition]) in order, each acknowledged; large requests allowed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=BIG)
    await producer.start()
    try:
        for topic, key, value, *partition in messages:
            await (await producer.send(topic, value=value, key=key, partition=partition[0] if partition else None))
    finally:
        await producer.stop()


def _send(broker, messages) -> None:
    asyncio.run(_produce(broker.bootstrap, messages))


def _read(broker, prefix: str, done, timeout_s: float = 60.0, settle_s: float = 3.0):
    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters"],
                                     lambda rs: done(*_split(rs)), timeout_s=timeout_s, settle_s=settle_s))
    return _split(records)


def _split(records):
    decisions = [orjson.loads(r.value) for r in records if r.topic.endswith("decisions")]
    dead = [orjson.loads(r.value) for r in records if r.topic.endswith("dead-letters")]
    return decisions, dead


def two_hospitals(tmp_path: Path) -> Path:
    """The stream tests' hospital and a copy under another id that lives on the other partition."""
    text = (FIXTURES / "stream_hospital.yaml").read_text()
    body = text.split("hospitals:\n", 1)[1]
    path = tmp_path / "two_hospitals.yaml"
    path.write_text("hospitals:\n" + body + body.replace(f"hospital_id: {HID}", f"hospital_id: {OTHER}"))
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_partitions_of_the_test_hospitals():
    assert partition_for(HID.encode(), 2) == 1 and partition_for(OTHER.encode(), 2) == 0


def test_oversized_text_key_and_binary_are_dead_lettered_and_the_hospital_goes_on(broker, run_id, start_worker):
    """Issue 11's three crashes: a 1 MiB admission text, a 1 MiB key, 800 kB of binary on vitals."""
    prefix = f"{run_id}."
    worker = start_worker()
    big_text = ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="big-text",
                            text="Fall at home. " * (1024 * 1024 // 14 + 1))
    big_text_value = orjson.dumps(big_text[1])
    big_key = b"k" * (1024 * 1024)
    small = orjson.dumps(ev.admission(HID, "P2", "E2", 1, requested_unit="MEDICINE", event_id="big-key")[1])
    binary = random.Random(11).randbytes(800_000)
    good = ev.encode(prefix, ev.admission(HID, "P3", "E3", 2, sex="M", requested_unit="MEDICINE", event_id="good"))
    _send(broker, [(f"{prefix}admissions", HID.encode(), big_text_value),
                   (f"{prefix}admissions", big_key, small),
                   (f"{prefix}vitals", HID.encode(), binary),
                   good])

    decisions, dead = _read(broker, prefix, lambda d, x: len(d) >= 1 and len(x) >= 3)

    assert [d["caused_by"] for d in decisions] == ["good"]
    assert sorted(d["code"] for d in dead) == ["too_large"] * 3, dead
    by_topic = {(d["topic"], d.get("key_size", 0) > 1024): d for d in dead}
    text_letter = by_topic[(f"{prefix}admissions", False)]
    assert text_letter["truncated"] is True and text_letter["value_size"] == len(big_text_value)
    assert text_letter["value_sha256"] == _sha(big_text_value)
    assert big_text_value.decode().startswith(text_letter["value"]) and len(text_letter["value"]) > 1000
    key_letter = by_topic[(f"{prefix}admissions", True)]
    assert key_letter["key_size"] == len(big_key) and key_letter["key_sha256"] == _sha(big_key)
    assert "key of 1048576 bytes" in key_letter["message"]
    binary_letter = by_topic[(f"{prefix}vitals", False)]
    assert binary_letter["value_sha256"] == _sha(binary) and binary_letter["value_size"] == 800_000
    assert binary_letter["value_encoding"] == "base64"
    assert worker.running, worker.log_text()[-3000:]
    assert "MessageSizeTooLarge" not in worker.log_text()
    assert worker.errors() == []


def test_future_dated_events_are_refused_and_stall_nothing(broker, run_id, start_worker, tmp_path):
    """A vitals set 30 days ahead and an admission in year 9999: dead-lettered `future_event`; the
    hospital's clock does not move, its next events are not stale, and another hospital is not held up."""
    prefix = f"{run_id}."
    worker = start_worker(hospital_config=two_hospitals(tmp_path))
    ahead = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    vitals = ev.vitals(HID, "P1", "E1", 1, event_id="v-future", resp_rate=30, spo2=85, on_oxygen=True,
                       systolic_bp=85, heart_rate=140, consciousness="V", temperature_c=39.5)
    vitals[1]["occurred_at"] = ahead
    y9999 = ev.admission(HID, "P2", "E2", 2, requested_unit="MEDICINE", event_id="a-9999")
    y9999[1]["occurred_at"] = "9999-12-31T23:59:59+00:00"
    _send(broker, [ev.encode(prefix, ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1")),
                   ev.encode(prefix, vitals), ev.encode(prefix, y9999)])
    started = time.monotonic()
    _send(broker, [ev.encode(prefix, ev.admission(HID, "P3", "E3", 10, sex="M", requested_unit="MEDICINE",
                                                  event_id="a-3")),
                   ev.encode(prefix, ev.admission(OTHER, "P4", "E4", 5, requested_unit="MEDICINE", event_id="o-4"))])

    decisions, dead = _read(broker, prefix, lambda d, x: len(d) >= 3 and len(x) >= 2, timeout_s=45)
    took = time.monotonic() - started

    assert sorted(d["caused_by"] for d in decisions) == ["a-1", "a-3", "o-4"], decisions
    assert all(d["kind"] == "assignment" for d in decisions)
    assert sorted((d["code"], d["field"]) for d in dead) == [("future_event", "occurred_at")] * 2
    assert "30 days ahead" in next(d["message"] for d in dead if '"v-future"' in d["value"])
    assert took < 30, f"the current events took {took:.0f} s"
    print(f"\nfuture-dated: current events of both hospitals decided {took:.1f} s after sending (incl. 3 s settle)")
    assert worker.running and worker.errors() == []


def test_events_off_their_hospitals_partition_are_refused(broker, run_id, start_worker):
    """A null, a wrong or a 10 kB key, or the right key on the wrong partition: not applied."""
    prefix = f"{run_id}."
    worker = start_worker()
    topic = f"{prefix}admissions"

    def adm(n: int) -> bytes:
        return orjson.dumps(ev.admission(HID, f"P{n}", f"E{n}", n, requested_unit="MEDICINE", event_id=f"k-{n}")[1])

    _send(broker, [(topic, None, adm(1)), (topic, b"st-elsewhere", adm(2)), (topic, b"h" * 10_000, adm(3)),
                   (topic, HID.encode(), adm(4), 0), (topic, HID.encode(), adm(5), 1)])

    decisions, dead = _read(broker, prefix, lambda d, x: len(d) >= 1 and len(x) >= 4)

    assert [d["caused_by"] for d in decisions] == ["k-5"]
    codes = {orjson.loads(d["value"])["event_id"] if not d.get("truncated") else "k-3": d["code"] for d in dead}
    assert codes == {"k-1": "wrong_partition", "k-2": "wrong_partition", "k-3": "too_large",
                     "k-4": "wrong_partition"}, dead
    on_zero = next(d for d in dead if d["code"] == "wrong_partition" and d.get("key") == HID)
    assert on_zero["partition"] == 0 and "belongs on partition 1" in on_zero["message"]
    assert worker.running and worker.errors() == []


def test_an_event_whose_outputs_would_not_fit_one_record_is_dead_lettered_not_applied():
    """The journal record (this event's writes and outputs, and the previous event's) must fit the
    producer's limit, or a restart would fail on it again and again: such an event is refused whole."""
    from allocator.hospital import load_hospitals
    from streams.contract.limits import Limits
    from streams.devtools.memory import InMemoryWorker
    from streams.pipeline.processor import RawMessage

    worker = InMemoryWorker(load_hospitals(FIXTURES / "stream_hospital.yaml"))
    # the 19,000-character text weighs about 34.5 kB in a journal record: more than a whole record here
    worker.processor.limits = Limits(producer_max_request_bytes=30_000, max_message_bytes=25_000)
    long_text = "Détresse respiratoire — " * 800  # ~20 kB of UTF-8, ~3x when JSON-escaped by Faust
    items = [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1", text=long_text[:19_000]),
             ev.admission(HID, "P2", "E2", 1, requested_unit="MEDICINE", event_id="a-2", text="Short note.")]
    msgs = [RawMessage(topic=t, partition=0, offset=i, key=k, value=v)
            for i, (t, k, v) in enumerate(ev.encode("wardflow.", item) for item in items)]
    outcomes = asyncio.run(worker.feed(msgs))
    assert [o.status for o in outcomes] == ["dead_letter", "applied"]
    assert outcomes[0].code == "too_large" and "nothing was applied" in worker.sink.dead_letters[0].message
    assert worker.tables["encounters"].get(f"{HID}|E1") is None
    assert [d.caused_by for d in worker.sink.decisions] == ["a-2"]


def test_events_that_fit_a_record_alone_but_not_with_the_previous_ones_writes_are_applied():
    """The journal record carries the previous event's writes only when both fit; otherwise those writes
    are made durable first and left out, so an event is refused only when it alone would not fit."""
    from allocator.hospital import load_hospitals
    from streams.contract.limits import Limits
    from streams.devtools.memory import InMemoryWorker
    from streams.pipeline.processor import RawMessage
    from streams.state.tables import JOURNAL

    worker = InMemoryWorker(load_hospitals(FIXTURES / "stream_hospital.yaml"))
    worker.processor.limits = Limits(producer_max_request_bytes=40_000, max_message_bytes=25_000)
    long_text = "Détresse respiratoire — " * 800
    journals = []
    items = [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1", text=long_text[:19_000]),
             ev.admission(HID, "P2", "E2", 1, requested_unit="MEDICINE", event_id="a-2", text=long_text[:9_000]),
             ev.admission(HID, "P3", "E3", 2, requested_unit="MEDICINE", event_id="a-3", text="Short note.")]
    for i, item in enumerate(items):  # about 34.5 kB, 17.6 kB and 2.3 kB of writes: a record holds 39.5 kB
        t, k, v = ev.encode("wardflow.", item)
        outcome = asyncio.run(worker.processor.process(RawMessage(topic=t, partition=0, offset=i, key=k, value=v)))
        assert outcome.status == "applied"
        journals.append(worker.tables[JOURNAL][HID])
    assert [bool(j["previous_writes"]) for j in journals] == [False, False, True]
    assert [d.caused_by for d in worker.sink.decisions] == ["a-1", "a-2", "a-3"]


def test_the_last_resort_guard_dead_letters_and_moves_on(monkeypatch):
    """A failure outside the handlers (here: the dedupe bookkeeping) on one message dead-letters it as
    internal_error; the next message is processed as usual."""
    from allocator.hospital import load_hospitals
    from streams.devtools.memory import InMemoryWorker
    from streams.pipeline.processor import RawMessage
    from streams.state import dedupe

    worker = InMemoryWorker(load_hospitals(FIXTURES / "stream_hospital.yaml"))
    real = dedupe.remember
    calls = []

    def flaky(staged, hospital_id, event_id, *args):
        calls.append(event_id)
        if event_id == "a-1":
            raise RuntimeError("bookkeeping bug")
        return real(staged, hospital_id, event_id, *args)

    monkeypatch.setattr("streams.pipeline.processor.dedupe.remember", flaky)
    items = [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1"),
             ev.admission(HID, "P2", "E2", 1, requested_unit="MEDICINE", event_id="a-2")]
    msgs = [RawMessage(topic=t, partition=0, offset=i, key=k, value=v)
            for i, (t, k, v) in enumerate(ev.encode("wardflow.", item) for item in items)]
    outcomes = asyncio.run(worker.feed(msgs))
    assert [(o.status, o.code) for o in outcomes] == [("dead_letter", "internal_error"), ("applied", None)]
    assert worker.sink.dead_letters[0].value is not None  # the original is kept for replay
    assert [d.caused_by for d in worker.sink.decisions] == ["a-2"]
    assert worker.tables["encounters"].get(f"{HID}|E1") is None  # nothing of it was applied


def test_a_record_time_from_a_wrong_clock_does_not_let_a_future_event_in():
    """The reference is the broker's record time, or our own clock when that is earlier: a producer that
    stamps its records from a clock a month ahead cannot move a hospital's clock a month ahead."""
    from allocator.hospital import load_hospitals
    from streams.devtools.memory import InMemoryWorker
    from streams.pipeline.processor import RawMessage

    worker = InMemoryWorker(load_hospitals(FIXTURES / "stream_hospital.yaml"))
    ahead = datetime.now(UTC) + timedelta(days=30)
    body = ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a-1")[1]
    body["occurred_at"] = ahead.isoformat()
    late = RawMessage(topic="wardflow.admissions", partition=0, offset=0, key=HID.encode(),
                      value=orjson.dumps(body), timestamp=ahead.timestamp())
    skewed = dict(body, event_id="a-2", occurred_at=(datetime.now(UTC) + timedelta(minutes=10)).isoformat())
    ok = RawMessage(topic="wardflow.admissions", partition=0, offset=1, key=HID.encode(),
                    value=orjson.dumps(dict(skewed, patient_id="P2", encounter_id="E2")), timestamp=time.time())
    outcomes = asyncio.run(worker.feed([late, ok]))
    assert [(o.status, o.code) for o in outcomes] == [("dead_letter", "future_event"), ("applied", None)]
