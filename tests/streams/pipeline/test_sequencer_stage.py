"""The sequencer stage's hand-over to the ordered topic: originals acknowledged only once their copy is."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest
from faust.types import TP

from inference.interface import TriagePrediction
from streams.contract.envelope import Envelope, Origin
from streams.exceptions import ForwardingFailed
from streams.pipeline import triage
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.sequencer_stage import SequencerStage
from tests import events as ev

TOPICS = ["p.admissions", "p.vitals"]


class Consumer:
    _committed_offset: dict = {}

    def highwater(self, tp):
        return 0

    async def highwaters(self, *tps):
        return {tp: 0 for tp in tps}


class Ordered:
    """A topic whose sends complete when the test says (the broker's acknowledgement)."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future] = []
        self.sent: list[dict] = []

    async def send(self, **kwargs) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        self.sent.append(kwargs)
        return fut


class Event:
    def __init__(self, topic: str, offset: int) -> None:
        body = {"event_id": f"e{offset}", "occurred_at": f"2026-11-23T00:00:{offset:02d}Z"}
        self.message = SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"h", value=orjson.dumps(body),
                                       timestamp=None)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def _stage(ordered: Ordered) -> SequencerStage:
    app = SimpleNamespace(consumer=Consumer())
    return SequencerStage(app, ordered, input_topics=TOPICS, admissions_topic="p.admissions", model=None,  # type: ignore[arg-type]
                          batch_size=32, max_wait_s=0.0, metrics=WorkerMetrics())


def test_originals_are_acknowledged_when_their_copies_are_not_before_and_the_stage_does_not_wait():
    async def run() -> None:
        ordered = Ordered()
        stage = _stage(ordered)
        events = [Event("p.vitals", i) for i in range(3)]
        for e in events:
            stage.add(e)  # type: ignore[arg-type]
        assert await stage.release_all() == 3  # returns with the copies still travelling
        assert len(ordered.futures) == 3 and not any(e.acked for e in events)
        ordered.futures[0].set_result(None)
        ordered.futures[1].set_result(None)
        await asyncio.sleep(0)
        assert [e.acked for e in events] == [True, True, False]
        ordered.futures[2].set_result(None)
        await asyncio.sleep(0)
        assert all(e.acked for e in events)

    asyncio.run(run())


def test_a_copy_the_broker_refused_leaves_its_original_unacknowledged_and_stops_the_stage():
    async def run() -> None:
        ordered = Ordered()
        stage = _stage(ordered)
        event = Event("p.vitals", 0)
        stage.add(event)  # type: ignore[arg-type]
        await stage.release_all()
        ordered.futures[0].set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0)
        assert not event.acked
        stage.add(Event("p.vitals", 1))  # type: ignore[arg-type]
        with pytest.raises(ForwardingFailed):
            await stage.release_all()

    asyncio.run(run())


class OneUnitModel:
    model_version = "m1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def predict_batch(self, requests):
        self.texts.extend(r.text for r in requests)
        return [TriagePrediction(id=r.id, target_unit="MEDICINE", unit_probs={"MEDICINE": 0.9}, acuity=3,
                                 acuity_probs={"3": 1.0}, needs=(), need_probs={}, uncertain=False,
                                 model_version=self.model_version) for r in requests]


def test_an_admission_is_decoded_once_and_its_copy_carries_a_typed_prediction_without_the_text(monkeypatch):
    decoded: list[str] = []
    real = triage.decode_event

    def counting(name, value):
        decoded.append(name)
        return real(name, value)

    monkeypatch.setattr(triage, "decode_event", counting)

    async def run() -> list[dict]:
        ordered = Ordered()
        model = OneUnitModel()
        stage = SequencerStage(SimpleNamespace(consumer=Consumer()), ordered, input_topics=TOPICS,  # type: ignore[arg-type]
                               admissions_topic="p.admissions", model=model, batch_size=32, max_wait_s=0.0,
                               metrics=WorkerMetrics())
        _, key, value = ev.encode("p.", ev.admission("h", "P1", "E1", 0, text="SECRET chest pain", event_id="a1"))
        admission = SimpleNamespace(message=SimpleNamespace(topic="p.admissions", partition=0, offset=5, key=key,
                                                            value=value, timestamp=None), ack=lambda: None)
        stage.add(admission)  # type: ignore[arg-type]
        stage.add(Event("p.vitals", 1))  # type: ignore[arg-type]
        stage.add(Event("p.admissions", 2))  # not a valid admission: forwarded without a prediction, dead-lettered later
        assert await stage.release_all() == 3
        assert model.texts == ["SECRET chest pain"]
        return ordered.sent

    sent = asyncio.run(run())
    assert decoded == ["admissions", "admissions"]  # once per admission, on arrival; never again on release
    by_offset = {Envelope.from_headers(s["headers"]).origin.offset: s for s in sent}
    first = Envelope.from_headers(by_offset[5]["headers"])
    assert first.origin == Origin("p.admissions", 0, 5) and first.failure is None
    assert first.prediction is not None and first.prediction.target_unit == "MEDICINE"
    assert b"SECRET" not in b"".join(v for _, v in by_offset[5]["headers"])
    assert Envelope.from_headers(by_offset[1]["headers"]) == Envelope(Origin("p.vitals", 0, 1))
    assert Envelope.from_headers(by_offset[2]["headers"]) == Envelope(Origin("p.admissions", 0, 2))


class SilentFetcherConsumer:
    """A consumer whose fetcher has reported no log end yet (as just after a restart) but for the topics in
    `fetched`; the broker lists the logs' ends as `ends`."""

    _committed_offset: dict = {}

    def __init__(self) -> None:
        self.ends: dict[str, int] = {t: 0 for t in TOPICS}
        self.fetched: dict[str, int] = {}
        self.listings = 0

    def highwater(self, tp):
        return self.fetched.get(tp.topic)

    async def highwaters(self, *tps):
        self.listings += 1
        return {tp: self.ends[tp.topic] for tp in tps}


class TimedEvent(Event):
    def __init__(self, topic: str, offset: int, second: int) -> None:
        super().__init__(topic, offset)
        body = {"event_id": f"{topic}-{offset}", "occurred_at": f"2026-11-23T00:00:{second:02d}Z"}
        self.message.value = orjson.dumps(body)


def test_a_listing_taken_before_an_event_was_queued_is_asked_again_so_an_earlier_admission_is_waited_for():
    """List -> the hospital writes an admission, then vitals that refer to it -> only the vitals arrive -> release.

    The first listing saw no admissions; the vitals were queued after it, so they may have been written after
    it, and so may the admission before them: the stage asks again, finds the admission and holds the vitals.
    """
    async def run() -> None:
        ordered = Ordered()
        consumer = SilentFetcherConsumer()
        metrics = WorkerMetrics()
        stage = SequencerStage(SimpleNamespace(consumer=consumer), ordered, input_topics=TOPICS,  # type: ignore[arg-type]
                               admissions_topic="p.admissions", model=None, batch_size=32, max_wait_s=60.0,
                               metrics=metrics)
        consumer.ends["p.vitals"] = 1
        stage.add(TimedEvent("p.vitals", 0, second=10))  # type: ignore[arg-type]
        assert await stage.release_all() == 0  # listed: no admissions; a listing cannot say so, the fetcher can
        assert consumer.listings == 1
        consumer.fetched["p.admissions"] = 0
        assert await stage.release_all() == 1
        del consumer.fetched["p.admissions"]  # a rebalance: the fetcher has not answered the new assignment yet

        consumer.ends["p.admissions"] = 1  # admitted at :11 ...
        consumer.ends["p.vitals"] = 2  # ... and observed at :12, after the listing
        stage.add(TimedEvent("p.vitals", 1, second=12))  # type: ignore[arg-type]
        assert await stage.release_all() == 0  # the admission is on its way: the vitals wait for it
        assert consumer.listings == 2
        assert await stage.release_all() == 0  # nothing queued since: the listing still holds, not asked again
        assert consumer.listings == 2

        stage.add(TimedEvent("p.admissions", 0, second=11))  # type: ignore[arg-type]
        consumer.fetched["p.admissions"] = 1  # with its records, the fetcher says where the log ends
        assert await stage.release_all() == 2
        released = [Envelope.from_headers(s["headers"]).origin for s in ordered.sent]
        assert released == [Origin("p.vitals", 0, 0), Origin("p.admissions", 0, 0), Origin("p.vitals", 0, 1)]
        assert metrics.end_offset_listings._value.get() == consumer.listings

    asyncio.run(run())


def test_a_stale_listing_is_not_trusted_even_when_events_arrive_while_it_is_asked_again():
    """An event queued after a listing was asked makes that listing unknown (wait), never a lag of 0 (go)."""
    consumer = SilentFetcherConsumer()
    stage = SequencerStage(SimpleNamespace(consumer=consumer), Ordered(), input_topics=TOPICS,  # type: ignore[arg-type]
                           admissions_topic="p.admissions", model=None, batch_size=32, max_wait_s=60.0,
                           metrics=WorkerMetrics())
    consumer.ends["p.admissions"] = 1
    stage.add(TimedEvent("p.vitals", 0, second=10))  # type: ignore[arg-type]
    asyncio.run(stage.release_all())
    assert stage.lag("p.admissions", 0) == 1
    stage.add(TimedEvent("p.vitals", 1, second=12))  # type: ignore[arg-type]
    assert stage.lag("p.admissions", 0) is None


def test_a_listing_short_of_the_log_end_never_lets_an_earlier_admission_be_overtaken():
    """Tansu 0.6 lists a log's end as its last batch's base offset + 1: admissions 0-2 written in one batch
    list as 1. After a restart with offset 1 committed, the listing says nothing is left; the vitals wait
    until the fetcher answers, and admission 2 goes first."""
    async def run() -> None:
        ordered = Ordered()
        consumer = SilentFetcherConsumer()
        consumer._committed_offset = {TP("p.admissions", 0): 1}
        consumer.ends.update({"p.admissions": 1, "p.vitals": 1})
        stage = SequencerStage(SimpleNamespace(consumer=consumer), ordered, input_topics=TOPICS,  # type: ignore[arg-type]
                               admissions_topic="p.admissions", model=None, batch_size=32, max_wait_s=60.0,
                               metrics=WorkerMetrics())
        stage.add(TimedEvent("p.vitals", 0, second=12))  # type: ignore[arg-type]
        assert await stage.release_all() == 0
        assert stage.lag("p.admissions", 0) is None
        consumer.fetched["p.admissions"] = 3
        assert stage.lag("p.admissions", 0) == 2  # admissions 1 and 2 are unread
        assert await stage.release_all() == 0
        stage.add(TimedEvent("p.admissions", 1, second=5))  # type: ignore[arg-type]
        stage.add(TimedEvent("p.admissions", 2, second=11))  # type: ignore[arg-type]
        assert await stage.release_all() == 3
        released = [Envelope.from_headers(s["headers"]).origin for s in ordered.sent]
        assert released == [Origin("p.admissions", 0, 1), Origin("p.admissions", 0, 2), Origin("p.vitals", 0, 0)]

    asyncio.run(run())
