"""Input messages, start to finish, a batch at a time: decode, dedupe, apply, emit, checkpoint.

Kept free of Faust so the same code runs under the worker's agent and in plain tests: the
tables are any mappings and the output goes through a `Sink`. Each event is applied on its
own overlay of its hospital's batch overlay (it reads every earlier event's writes; a
rejected event changes nothing). A checkpoint then makes the batch durable with one broker
round trip: each hospital's outputs and ONE journal record (the batch's writes, one value
per key, the previous record's writes, and the outputs) are acknowledged together before
the individual table writes are issued and before any event is acknowledged; those writes
become durable with the next checkpoint's round trip. The worker does not wait for that round
trip before applying its next batch (`apply_batch`): the next batch is applied over the
outstanding one's overlays while its acknowledgements travel, and is itself checkpointed only
once they are in (one checkpoint in flight at a time; `settle()` waits for it). After a crash or a rebalance the first
event of each hospital finishes the last journalled batch (writes re-applied, outputs re-sent:
deterministic ids and bytes), and events seen again are duplicates by their id. A batch of
one event behaves exactly as the worker did event by event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from aiokafka.partitioner import murmur2

from allocator.hospital import Hospital
from streams.contract.envelope import PredictionFailure
from streams.contract.limits import Limits, fits, size_facts, utf8_prefix
from streams.contract.models import DeadLetter, Decision, PredictionOut, encode_output
from streams.contract.validation import ContractViolation, dead_letter_payload, decode_event
from streams.exceptions import CheckpointFailed, EventRejected
from streams.pipeline.metrics import WorkerMetrics
from streams.state import dedupe
from streams.state.handlers import HandlerContext, handle
from streams.state.records import UnitCensus
from streams.state.tables import CENSUS, HospitalState, StagedTables, replay_journal

log = logging.getLogger(__name__)

# Dead-letter codes for contract-valid events that cannot be applied (the contract's own: validation.CODES).
# docs/topics.md documents each; tests/streams/contract/test_topics_doc.py checks the code, this list and the document agree.
STATE_CODES = (
    "too_large", "unknown_hospital", "wrong_partition", "future_event", "stale_event", "unknown_unit", "unknown_bed",
    "unknown_encounter", "patient_mismatch", "duplicate_encounter", "impossible_transition", "unknown_decision",
    "unauthorized", "unknown_page", "inference_failed", "internal_error",
)


@dataclass(frozen=True)
class RawMessage:
    """A message as it came off the broker: nothing decoded yet."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds since the epoch, the broker's record time
    prediction: PredictionOut | None = None  # the model's output for an admission, from the sequencer stage
    prediction_error: PredictionFailure | None = None  # why the model could not read it
    too_large: dict | None = None  # the original's sizes and SHA-256s when the sequencer forwarded an excerpt


class Sink(Protocol):
    async def send_outputs(self, hospital_id: str, outputs: dict[str, list[str]]) -> None:
        """Queue encoded decisions and feedback records (durable at the next `flush`)."""

    async def send_dead_letter(self, key: bytes | None, letter: DeadLetter) -> None:
        """Queue one dead letter (durable at the next `flush`, before its event is acknowledged)."""

    async def flush(self) -> None:
        """Wait until everything produced so far (table changelogs included) is acknowledged."""


@dataclass
class Outcome:
    status: str  # applied | duplicate | dead_letter
    decisions: list[Decision] = field(default_factory=list)
    code: str | None = None


# Table writes for a partition's state happen inside `scope(partition)` (the worker: with one of that
# partition's events as Faust's current event, so the changelog records go to the right partition).
Scope = Callable[[int], AbstractContextManager[object]]


def _no_scope(partition: int) -> AbstractContextManager[object]:
    return nullcontext()


@dataclass
class _Accepted:
    """One event applied on its own overlay, waiting to join its hospital's batch."""

    msg: RawMessage
    hospital: Hospital
    event_id: str
    staged: StagedTables
    outputs: dict[str, list[str]]
    weight: int
    decisions: list[Decision]
    feedback_sources: list[str]
    censuses: list[UnitCensus]
    waiting: int


@dataclass
class _HospitalBatch:
    staged: StagedTables
    partition: int
    event_ids: list[str] = field(default_factory=list)
    outputs: dict[str, list[str]] = field(default_factory=lambda: {"decisions": [], "feedback": []})
    weight: int = 0
    accepted: list[_Accepted] = field(default_factory=list)


@dataclass
class _Batch:
    tables: Mapping[str, MutableMapping[str, Any]]
    scope: Scope
    previous: _Batch | None = None  # the checkpoint still in flight: this batch reads over its writes
    on_durable: Callable[[], None] | None = None  # run once the batch is durable and its writes issued
    hospitals: dict[str, _HospitalBatch] = field(default_factory=dict)

    def _base(self, hospital_id: str) -> StagedTables:
        earlier = self.previous.hospitals.get(hospital_id) if self.previous is not None else None
        return StagedTables(self.tables, parent=earlier.staged if earlier is not None else None)

    def overlay(self, hospital_id: str) -> StagedTables:
        hb = self.hospitals.get(hospital_id)
        return hb.staged if hb is not None else self._base(hospital_id)

    def hospital(self, hospital_id: str, partition: int) -> _HospitalBatch:
        hb = self.hospitals.get(hospital_id)
        if hb is None:
            hb = self.hospitals[hospital_id] = _HospitalBatch(self._base(hospital_id), partition)
        return hb


class EventProcessor:
    def __init__(self, *, topic_prefix: str, hospitals: Mapping[str, Hospital],
                 tables: Mapping[str, MutableMapping[str, Any]], sink: Sink, metrics: WorkerMetrics,
                 dedupe_retention: timedelta, context: HandlerContext | None = None,
                 flush_warn_s: float = 10.0, limits: Limits | None = None) -> None:
        self.prefix = topic_prefix
        self.hospitals = hospitals
        self.tables = tables
        self.sink = sink
        self.metrics = metrics
        self.retention = dedupe_retention
        self.context = context or HandlerContext()
        self.flush_warn_s = flush_warn_s  # a broker acknowledgement slower than this is logged (and counted)
        self.limits = limits or Limits()
        self._journal_weight: dict[str, int] = {}  # hospital -> bytes of its last journalled writes (this process)
        self._finished: set[str] = set()  # hospitals whose last journalled event this process has finished
        self._in_flight: _Batch | None = None  # the checkpoint whose acknowledgements are awaited
        self._settling: asyncio.Future[None] | None = None  # waits for them, then issues its writes
        self._last_settled: set[str] = set()  # hospitals whose writes the last settled checkpoint issued

    def forget_finished(self) -> None:
        """Partitions moved (rebalance): finish each hospital's last event again before its next one."""
        self._finished.clear()
        self._journal_weight.clear()

    async def _finish_last_event(self, hospital_id: str) -> None:
        """First event of a hospital in this process: whatever a crash cut short is finished from the journal."""
        outputs = replay_journal(self.tables, hospital_id)
        if outputs:
            await self.sink.send_outputs(hospital_id, outputs)
            await self._flush()
            log.info("finished the last journalled event of %s (%d decisions re-sent)", hospital_id,
                     len(outputs.get("decisions", [])))
        self._finished.add(hospital_id)

    async def _flush(self) -> None:
        """`sink.flush()`, saying so in the log while the broker keeps the event waiting (a stall shows)."""
        task = asyncio.ensure_future(self.sink.flush())
        waited = 0.0
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.flush_warn_s)
            if done:
                return task.result()
            waited += self.flush_warn_s
            self.metrics.errors.labels(stage="flush_slow").inc()
            log.warning("still waiting after %.0f s for the broker to acknowledge an event's outputs and writes",
                        waited)

    def contract_topic(self, topic: str) -> str:
        return topic[len(self.prefix):] if topic.startswith(self.prefix) else topic

    async def process(self, msg: RawMessage) -> Outcome:
        """One message as a batch of its own (applied, a duplicate or dead-lettered; never an exception)."""
        return (await self.process_batch([msg]))[0]

    async def process_batch(self, msgs: Sequence[RawMessage], scope: Scope | None = None) -> list[Outcome]:
        """`apply_batch`, then `settle`: when this returns, everything of these messages is durable."""
        outcomes = await self.apply_batch(msgs, scope)
        await self.settle()
        return outcomes

    async def apply_batch(self, msgs: Sequence[RawMessage], scope: Scope | None = None,
                          on_durable: Callable[[], None] | None = None) -> list[Outcome]:
        """Apply messages in order and start their checkpoint; an outcome per message.

        The batch is applied over the checkpoint still in flight (if any), then waits for it, then
        sends its own outputs and journal record and returns without waiting for their
        acknowledgement. `on_durable` runs once they are acknowledged and the batch's table
        writes are issued: only then may its messages be acknowledged. When a hospital's batch
        would outgrow one journal record, the part so far is checkpointed first.
        """
        batch = _Batch(self.tables, scope or _no_scope, previous=self._in_flight)
        outcomes = []
        for msg in msgs:
            outcome, accepted = await self._guarded(msg, batch)
            if accepted is not None:
                current = batch.hospitals.get(accepted.hospital.hospital_id)
                if current is not None and current.weight + accepted.weight > self.limits.max_output_bytes:
                    # the event's writes stay valid: they were read over the part being checkpointed
                    await self._start_checkpoint(batch)
                    batch = _Batch(self.tables, batch.scope, previous=batch)
                self._join(batch, accepted)
            outcomes.append(outcome)
        batch.on_durable = on_durable
        await self._start_checkpoint(batch)
        return outcomes

    async def settle(self) -> None:
        """Wait until the checkpoint in flight is acknowledged and its writes issued (a rebalance, a test)."""
        if self._settling is not None:
            try:
                await asyncio.shield(self._settling)
            except BaseException:
                # The batch was not made durable and none of its events acknowledged: they come again.
                # Start clean, and let each hospital's next event finish its last journal record first.
                self._settling = self._in_flight = None
                self.forget_finished()
                raise

    async def _guarded(self, msg: RawMessage, batch: _Batch) -> tuple[Outcome, _Accepted | None]:
        """`_process` behind the last-resort guard, which makes a crash loop on one message impossible:
        anything unexpected (a bug, an output that would not fit) dead-letters the message as
        `internal_error` and the stream moves on. Only a failure of the broker itself propagates.
        """
        try:
            return await self._process(msg, batch)
        except Exception:
            log.exception("unexpected error on %s[%d]@%d; dead-lettered as internal_error",
                          msg.topic, msg.partition, msg.offset)
            self.metrics.errors.labels(stage="guard").inc()
            name = self.contract_topic(msg.topic)
            return await self._dead_letter(msg, "internal_error", None,
                                           f"{name}: the worker failed on this message; it is kept here for replay"), None

    @staticmethod
    def _join(batch: _Batch, accepted: _Accepted) -> None:
        """An accepted event's writes and outputs join its hospital's batch."""
        hb = batch.hospital(accepted.hospital.hospital_id, accepted.msg.partition)
        hb.staged.absorb(accepted.staged)
        hb.event_ids.append(accepted.event_id)
        for kind, encoded in accepted.outputs.items():
            hb.outputs.setdefault(kind, []).extend(encoded)
        hb.weight += accepted.weight
        hb.accepted.append(accepted)

    async def _start_checkpoint(self, batch: _Batch) -> None:
        """Once the checkpoint in flight is settled: this batch's outputs and one journal record per
        hospital handed to the producer, and a task that waits for their acknowledgement."""
        await self.settle()
        limit = self.limits.max_output_bytes
        # A journal record carries its hospital's writes of the checkpoint just settled (issued, not yet
        # acknowledged); older writes were acknowledged by that checkpoint's flush. When both would not
        # fit in one record, those writes are made durable first (one extra round trip) and left out of it.
        carried = {hid for hid in batch.hospitals if hid in self._last_settled}
        if any(hb.weight + self._journal_weight.get(hid, limit) > limit
               for hid, hb in batch.hospitals.items() if hid in carried):
            await self._flush()
            carried = set()
        for hid, hb in batch.hospitals.items():
            await self.sink.send_outputs(hid, hb.outputs)
            with batch.scope(hb.partition):
                hb.staged.write_journal(hid, hb.event_ids, hb.outputs, carry_previous=hid in carried)
            self._journal_weight[hid] = hb.weight
        self._in_flight = batch
        self._settling = asyncio.ensure_future(self._settle(batch))

    async def _settle(self, batch: _Batch) -> None:
        try:
            await self._flush()
        except Exception as exc:
            log.exception("a checkpoint was not acknowledged by the broker; none of its events is acknowledged")
            raise CheckpointFailed("a checkpoint's outputs and journal were not acknowledged") from exc
        for hb in batch.hospitals.values():  # synchronously: a batch applied meanwhile reads them here or there
            with batch.scope(hb.partition):
                hb.staged.commit()
        self._last_settled = set(batch.hospitals)
        for hb in batch.hospitals.values():
            for accepted in hb.accepted:
                self._observe(accepted)
        if self._in_flight is batch:
            self._in_flight = None
        batch.previous = None
        if batch.on_durable is not None:
            batch.on_durable()

    async def _process(self, msg: RawMessage, batch: _Batch) -> tuple[Outcome, _Accepted | None]:
        name = self.contract_topic(msg.topic)
        self.metrics.events_in.labels(topic=name).inc()
        limits = self.limits
        if msg.too_large is not None or limits.oversize(msg.key, msg.value):
            return await self._too_large(msg, name), None
        try:
            event = decode_event(name, msg.value)
        except ContractViolation as exc:
            return await self._dead_letter(msg, exc.code, exc.field, exc.message), None
        text = getattr(event, "text", None)
        if isinstance(text, str) and len(text) > limits.max_text_chars:
            return await self._dead_letter(msg, "too_large", "text",
                                           f"{name}: field 'text' is longer than the {limits.max_text_chars} "
                                           "characters this worker accepts"), None
        hospital = self.hospitals.get(event.hospital_id)
        if hospital is None:
            return await self._dead_letter(msg, "unknown_hospital", "hospital_id",
                                           f"{name}: field 'hospital_id' names no hospital this worker serves"), None
        misplaced = self._misplaced(msg, event.hospital_id)
        if misplaced:
            return await self._dead_letter(msg, "wrong_partition", "hospital_id", f"{name}: {misplaced}"), None
        # The broker's record time, or our own clock if that is earlier (a producer may set a record time
        # from a wrong clock); on a replay our clock is later, so a replay decides as the first pass did.
        reference = min(msg.timestamp, time.time()) if msg.timestamp and msg.timestamp > 0 else time.time()
        ahead = event.occurred_at.timestamp() - reference
        if ahead > limits.future_skew_s:
            return await self._dead_letter(
                msg, "future_event", "occurred_at",
                f"{name}: field 'occurred_at' is {_duration(ahead)} ahead of the time the broker received the "
                f"event (at most {_duration(limits.future_skew_s)} is accepted); check the sender's clock"), None
        if hospital.hospital_id not in self._finished:
            with batch.scope(msg.partition):
                await self._finish_last_event(hospital.hospital_id)
        staged = batch.overlay(hospital.hospital_id).child()
        if dedupe.is_duplicate(staged, hospital.hospital_id, event.event_id):
            self.metrics.duplicates.labels(topic=name).inc()
            return Outcome("duplicate"), None
        if dedupe.is_stale(staged, hospital.hospital_id, event.occurred_at, self.retention):
            return await self._dead_letter(msg, "stale_event", "occurred_at",
                                           f"{name}: field 'occurred_at' is older than the {self.retention} "
                                           "idempotency window, so it cannot be applied safely"), None
        if msg.prediction_error is not None:
            return await self._dead_letter(msg, msg.prediction_error.code, "text", msg.prediction_error.message), None
        state = HospitalState(staged, hospital)
        try:
            result = handle(event, state, self.context, prediction=msg.prediction)
            decisions = result.decisions
        except EventRejected as exc:
            return await self._dead_letter(msg, exc.code, exc.field, exc.message), None
        except Exception:
            log.exception("unexpected error applying %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            self.metrics.errors.labels(stage="apply").inc()
            return await self._dead_letter(msg, "internal_error", None,
                                           f"{name}: the worker failed to apply this event; it is kept here for "
                                           "replay"), None
        censuses = [v for t, _, v in staged.writes() if t == CENSUS and v is not None]
        dedupe.remember(staged, hospital.hospital_id, event.event_id, event.occurred_at, self.retention)
        outputs = {"decisions": [encode_output(d).decode() for d in decisions],
                   "feedback": [encode_output(f).decode() for f in result.feedback]}
        weight = _outputs_weight(staged, outputs, hospital.hospital_id)
        if weight > self.limits.max_output_bytes:
            return await self._dead_letter(
                msg, "too_large", None,
                f"{name}: applying this event would write {weight} bytes of decisions and state in one record, "
                f"more than the {self.limits.max_output_bytes} a record may carry; nothing was applied"), None
        accepted = _Accepted(msg=msg, hospital=hospital, event_id=event.event_id, staged=staged, outputs=outputs,
                             weight=weight, decisions=decisions,
                             feedback_sources=[record.source for record in result.feedback],
                             censuses=censuses, waiting=len(state.waiting()))
        return Outcome("applied", decisions), accepted

    def _observe(self, accepted: _Accepted) -> None:
        hid = accepted.hospital.hospital_id
        for source in accepted.feedback_sources:
            self.metrics.feedback.labels(source=source).inc()
        for d in accepted.decisions:
            self.metrics.decisions.labels(kind=d.kind).inc()
            if d.kind == "page":
                self.metrics.pages.labels(role=d.role or "").inc()
            elif d.kind == "escalation":
                self.metrics.escalations.labels(role=d.role or "").inc()
                if (d.details or {}).get("first_escalation"):
                    self.metrics.pages_escalated.inc()
            elif d.kind == "surge_level" and d.details:
                self.metrics.surge.labels(hospital=d.hospital_id).set(d.details["level"])
            elif d.kind == "news2" and d.details and d.details.get("complete"):
                self.metrics.news2.labels(band=d.details["band"]).inc()
        if accepted.decisions and accepted.msg.timestamp:
            self.metrics.latency.observe(max(0.0, time.time() - accepted.msg.timestamp))
        for census in accepted.censuses:
            self.metrics.occupancy.labels(hospital=hid, unit=census.unit).set(census.occupancy)
            for status, count in census.by_status.items():
                self.metrics.beds.labels(hospital=hid, unit=census.unit, status=status).set(count)
        self.metrics.waiting.labels(hospital=hid).set(accepted.waiting)

    def _misplaced(self, msg: RawMessage, hospital_id: str) -> str | None:
        """Why this event is not on its hospital's partition (a hospital's state lives on one), or None."""
        if msg.key != hospital_id.encode():
            return ("the message key must be the event's hospital_id (UTF-8), so that all of a hospital's "
                    "events share one partition")
        partitions = self.limits.partitions
        if partitions and msg.partition != partition_for(msg.key, partitions):
            return (f"it arrived on partition {msg.partition}, but its hospital_id belongs on partition "
                    f"{partition_for(msg.key, partitions)} (Kafka's default murmur2 partitioner)")
        return None

    async def _too_large(self, msg: RawMessage, name: str) -> Outcome:
        facts = msg.too_large or size_facts(msg.key, msg.value)
        limits = self.limits
        what = (f"key of {facts['key_size']} bytes (at most {limits.max_key_bytes})"
                if facts["key_size"] > limits.max_key_bytes else
                f"value of {facts['value_size']} bytes (at most {limits.max_message_bytes})")
        return await self._dead_letter(msg, "too_large", None,
                                       f"{name}: the message is too large: {what}; its size and SHA-256 are "
                                       "kept here with as much of it as fits", facts=facts)

    async def _dead_letter(self, msg: RawMessage, code: str, field_name: str | None, message: str,
                           facts: dict | None = None) -> Outcome:
        letter, key = self._fitting_letter(msg, code, field_name, message, facts)
        await self.sink.send_dead_letter(key, letter)  # durable with its batch's checkpoint
        self.metrics.dead_letters.labels(code=code).inc()
        log.warning("dead letter %s at %s[%d]@%d: %s", code, msg.topic, msg.partition, msg.offset, message)
        return Outcome("dead_letter", code=code)

    def _fitting_letter(self, msg: RawMessage, code: str, field_name: str | None, message: str,
                        facts: dict | None) -> tuple[DeadLetter, bytes | None]:
        """The dead letter, with as much of the original as fits the producer's limit (sizes and hashes if cut)."""
        limits = self.limits
        key_too_large = (facts or {}).get("key_size", 0) > limits.max_key_bytes
        key = msg.key if msg.key is not None and len(msg.key) <= limits.max_key_bytes and not key_too_large else None
        received_at = datetime.now(UTC)
        common = dict(topic=msg.topic, partition=msg.partition, offset=msg.offset, code=code, message=message,
                      field=field_name, received_at=received_at)
        if facts is None:
            value, value_encoding = dead_letter_payload(msg.value)
            key_text, key_encoding = dead_letter_payload(msg.key)
            letter = DeadLetter(key=key_text, key_encoding=key_encoding, value=value, value_encoding=value_encoding,
                                **common)
            if fits(limits, key, encode_output(letter)):
                return letter, key
            facts = size_facts(msg.key, msg.value)
        budget = max(0, (limits.max_output_bytes - len(key or b"") - 4096) // 6)  # JSON escapes: <= 6 bytes a byte
        key_part = utf8_prefix(msg.key or b"", min(limits.max_key_bytes, budget)) if msg.key is not None else None
        for share in (1.0, 0.5, 0.25, 0.0):
            value_part = utf8_prefix(msg.value, int(budget * share)) if msg.value is not None else None
            value, value_encoding = dead_letter_payload(value_part)
            key_text, key_encoding = dead_letter_payload(key_part)
            letter = DeadLetter(key=key_text, key_encoding=key_encoding, value=value, value_encoding=value_encoding,
                                truncated=True, **facts, **common)
            if fits(limits, key, encode_output(letter)):
                return letter, key
        return DeadLetter(key_encoding="utf-8", value_encoding="utf-8", truncated=True, **facts, **common), None


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client and aiokafka) gives `key`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


def _outputs_weight(staged: StagedTables, outputs: dict[str, list[str]], hospital_id: str) -> int:
    """Bytes this event adds to its journal record (its staged writes and its outputs), an upper bound.

    Faust writes changelog values with the standard library's JSON, which escapes every non-ASCII
    character (up to 3x the UTF-8 bytes) and the quotes inside the encoded outputs it embeds.
    """
    writes = [[t, k, v.asdict() if hasattr(v, "asdict") else v] for t, k, v in staged.writes()]
    encoded = orjson.dumps(writes, default=str)
    out = "".join(o for group in outputs.values() for o in group).encode()
    return (_escaped_bound(encoded) + _escaped_bound(out) + out.count(b'"') + len(hospital_id)) * 11 // 10


def _escaped_bound(utf8: bytes) -> int:
    non_ascii = len(utf8) - len(utf8.decode("utf-8", "replace").encode("ascii", "ignore"))
    return len(utf8) + 2 * non_ascii
