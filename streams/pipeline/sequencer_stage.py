"""The worker's first stage: input topics -> (model) -> one event-time-ordered topic per partition.

It keeps no tables. Events are held (unacknowledged) in the `EventTimeMerger` until they may
go; each release runs the admissions it contains through the model in micro-batches, then
sends every event, prediction attached, to the `ordered` topic and acknowledges the original
only once the broker has acknowledged its copy, so a crash re-reads whatever was not safely
forwarded. The stage does not wait for those acknowledgements (the producer keeps the copies
in order): it goes on reading while they travel, and a failed copy stops it at its next release. Releases happen every
`inference_batch_wait_ms`, or at once when a full batch is pending.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from faust.types import TP

from inference.interface import TriageModel
from streams.contract.envelope import Envelope, Origin, PredictionFailure
from streams.contract.limits import Limits, fits, utf8_prefix
from streams.contract.models import Admission, PredictionOut
from streams.exceptions import ForwardingFailed
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.sequencer import EventTimeMerger, Pending, event_time
from streams.pipeline.triage import decoded_admission, envelope_parts, predict, triage_request

log = logging.getLogger(__name__)


class SequencerStage:
    def __init__(self, app: faust.App, ordered: faust.TopicT, *, input_topics: list[str], admissions_topic: str,
                 model: TriageModel | None, batch_size: int, max_wait_s: float, metrics: WorkerMetrics,
                 limits: Limits | None = None) -> None:
        self.app = app
        self.ordered = ordered
        self.admissions_topic = admissions_topic
        self.model = model
        self.batch_size = batch_size
        self.metrics = metrics
        self.limits = limits or Limits()
        self.input_topics = list(input_topics)
        self.merger = EventTimeMerger(input_topics, max_wait_s=max_wait_s)
        self._lock = asyncio.Lock()
        # Log-end offsets asked of the broker when the fetcher had not said, with the monotonic time the
        # question was sent: good only for events queued before then (see `_listing`).
        self._listed_highwater: dict[tuple[str, int], tuple[int, float]] = {}
        self._failure: BaseException | None = None  # a copy the broker refused: the stage stops at its next release

    def lag(self, topic: str, partition: int) -> int | None:
        """Messages of a topic partition not yet handed to this stage (None: not known yet)."""
        tp = TP(topic, partition)
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned or not fetched yet
            highwater = None
        listed = self._listing(topic, partition)
        if highwater is None:
            # A listing can say more is coming, never that nothing is: Tansu 0.6 lists a partition's end as
            # its last record batch's base offset + 1, short of the batch's other records. "Nothing" waits
            # for the fetcher (its first answer, or `max_wait_s`).
            behind = None if listed is None else self._behind(tp, listed)
            return behind if behind else None
        if listed is not None and listed > highwater:
            highwater = listed
        return self._behind(tp, highwater)

    def _behind(self, tp: TP, end: int) -> int:
        last = self.merger.delivered.get((tp.topic, tp.partition))
        if last is not None:
            return max(0, end - (last + 1))
        committed = self.app.consumer._committed_offset.get(tp)  # next offset to read after a restart
        return max(0, end - (committed or 0))

    def _listing(self, topic: str, partition: int) -> int | None:
        """The listed log-end offset of a topic partition, while it still covers every event queued on its partition.

        A listing says nothing of messages written after it was asked. An event of another topic queued since
        may have been written after it too, and so may an earlier event of this topic (an admission written
        before the vitals that refer to it): the listing is stale for that event, and is asked again.
        """
        listed = self._listed_highwater.get((topic, partition))
        if listed is None or listed[1] <= self.merger.last_added.get(partition, -math.inf):
            return None
        return listed[0]

    def add(self, event: faust.EventT) -> bool:
        """Queue one event; True when a full inference batch is waiting (release now).

        Its place in the merge is its `occurred_at`, unless it cannot be trusted: an oversized message is
        not parsed, and an event dated beyond the allowed skew past its broker time is released at once
        (both are dead-lettered by the state agent). A far-future date would otherwise hold every later
        event of its topic back behind it.
        """
        m = event.message
        oversize = self.limits.oversize(m.key, m.value)
        admission = (decoded_admission(m.value) if m.topic == self.admissions_topic and self.model is not None
                     and not oversize else None)
        at = None if oversize else admission.occurred_at.timestamp() if admission is not None else event_time(m.value)
        record_time = m.timestamp if m.timestamp and m.timestamp > 0 else math.inf  # -1: the record has none
        if at is not None and at > min(record_time, time.time()) + self.limits.future_skew_s:
            at = None
        self.merger.add(m.topic, m.partition, m.offset, at, _Queued(event, admission), time.monotonic())
        return self.merger.pending() >= self.batch_size

    async def release_all(self) -> int:
        """Release what may go, on every partition; returns how many events were forwarded."""
        async with self._lock:
            if self._failure is not None:
                raise ForwardingFailed("an event could not be forwarded to the ordered topic") from self._failure
            await self._learn_unknown_highwaters()
            released: list[Pending] = []
            for partition in self.merger.partitions():
                released.extend(self.merger.release(partition, time.monotonic(), self.lag))
            if not released:
                return 0
            log.debug("released %d (forced %d, unknown-lag %d)", len(released), self.merger.forced_releases,
                      self.merger.unknown_lag_releases)
            predicted = await self._predictions(released)
            sent = []
            for p in released:
                m = p.item.event.message
                key, value = m.key, m.value
                envelope = Envelope(Origin(m.topic, m.partition, m.offset), *predicted.get(id(p), (None, None)))
                if self.limits.oversize(key, value):  # never forwarded whole: an excerpt, sizes and hashes
                    envelope = envelope.without_prediction(key, value)
                    key, value = self._excerpt(key, value)
                out_headers = envelope.headers()
                if not fits(self.limits, key, value, out_headers):  # cannot happen by the settings; kept safe
                    out_headers = envelope.without_prediction(m.key, m.value).headers()
                    key, value = self._excerpt(key, value)
                sent.append(await self.ordered.send(key=key, value=value, partition=m.partition,
                                                    timestamp=m.timestamp, headers=out_headers))
            for fut, p in zip(sent, released, strict=True):
                fut.add_done_callback(partial(self._forwarded, p))
            return len(released)

    def _forwarded(self, p: Pending, fut: Any) -> None:
        """The broker answered for one copy: the original is committed only once its copy is safely in `ordered`."""
        if fut.cancelled():
            self._failure = asyncio.CancelledError("the copy's send was cancelled")
        elif fut.exception() is not None:
            self._failure = fut.exception()
        else:
            p.item.event.ack()
            return
        log.error("%s[%d]@%d could not be forwarded to the ordered topic (%s); it stays unacknowledged and the stage "
                  "stops", p.topic, p.partition, p.offset, self._failure)

    def _excerpt(self, key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None]:
        """The start of an oversized message, small enough to forward with room to spare."""
        half = self.limits.max_message_bytes // 2
        return (None if key is None else utf8_prefix(key, min(len(key), self.limits.max_key_bytes)),
                None if value is None else utf8_prefix(value, half))

    async def _learn_unknown_highwaters(self) -> None:
        """Ask the broker for log-end offsets the fetcher has not reported yet (e.g. just after a restart).

        Guessing instead (waiting `max_wait_s`, then going) would release out of order whenever
        the first fetch is slow, which is exactly when a backlog is being caught up.
        """
        unknown = []
        for partition in self.merger.partitions():
            for topic in self.input_topics:
                if self._listing(topic, partition) is not None:
                    continue
                try:
                    known = self.app.consumer.highwater(TP(topic, partition)) is not None
                except Exception:  # noqa: BLE001 - not assigned or not fetched yet: unknown
                    known = False
                if not known:
                    unknown.append(TP(topic, partition))
        if not unknown:
            return
        asked_at = time.monotonic()  # before the question: an event queued while it travels makes it stale
        self.metrics.end_offset_listings.inc()
        try:
            found = await self.app.consumer.highwaters(*unknown)
        except Exception as exc:  # noqa: BLE001 - fall back to the bounded wait
            log.warning("could not list end offsets (%s); waiting at most %.0f ms for silent topics",
                        exc, self.merger.max_wait_s * 1000)
            return
        for tp, offset in found.items():
            self._listed_highwater[(tp.topic, tp.partition)] = (offset, asked_at)

    async def _predictions(self, released: list[Pending]) -> dict[int, tuple[PredictionOut | None,
                                                                            PredictionFailure | None]]:
        """(prediction, failure) per released admission the model reads (keyed by id of its `Pending`)."""
        if self.model is None:
            return {}
        todo = [(p, triage_request(q.admission)) for p in released
                if (q := p.item).admission is not None and len(q.admission.text) <= self.limits.max_text_chars]
        if not todo:
            return {}
        results = await predict(self.model, [r for _, r in todo], self.batch_size, self.metrics)
        return {id(p): envelope_parts(res) for (p, _), res in zip(todo, results, strict=True)}

    def held_messages(self) -> list[Any]:
        """The consumer messages of events held back (never forwarded, so never acknowledged)."""
        return [queued.event.message for queued in self.merger.held()]

    def forget(self, partitions: list[int]) -> None:
        self.merger.forget(partitions)
        for k in [k for k in self._listed_highwater if k[1] in partitions]:
            del self._listed_highwater[k]


@dataclass(frozen=True)
class _Queued:
    """An input event held in the merge; an admission the model will read is decoded once, here."""

    event: faust.EventT
    admission: Admission | None = None
