"""The Faust application: topics, tables and the state agent, built from settings.

`create_app(settings)` is a factory (no module-level app), so tests and the demo can run
workers with their own topic prefix and consumer group. The agent stays thin: it hands each
raw message to `EventProcessor` and keeps going whatever the message holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

from allocator.hospital import Hospital, load_hospitals
from inference.interface import TriageModel
from streams.contract.envelope import Envelope
from streams.contract.limits import Limits
from streams.contract.models import INPUT_MODELS, DeadLetter, encode_output
from streams.exceptions import ModelMissingError
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.positions import OrderedPositions
from streams.pipeline.processor import EventProcessor, RawMessage
from streams.pipeline.sequencer_stage import SequencerStage
from streams.settings import WardflowSettings
from streams.state.handlers import HandlerContext
from streams.state.tables import TABLE_TYPES
from streams.state.views import beds_snapshot, capacity_snapshot
from streams.state.windowed import ARRIVALS_WINDOW, OCCUPANCY_WINDOW, PAGES_WINDOW
from streams.worker.faust_transport import acting_on, drain_changelog, tuned_app_class
from streams.worker.kafka_security import faust_credentials
from streams.worker.membership import member_file

log = logging.getLogger(__name__)

def raw_message(m: Any) -> RawMessage:
    """The original message behind a copy in the ordered topic (origin and prediction ride in its envelope)."""
    envelope = Envelope.from_headers(m.headers)
    if envelope is None:
        return RawMessage(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                          timestamp=m.timestamp)
    origin = envelope.origin
    return RawMessage(topic=origin.topic, partition=origin.partition, offset=origin.offset, key=m.key, value=m.value,
                      timestamp=m.timestamp, prediction=envelope.prediction, prediction_error=envelope.failure,
                      too_large=envelope.too_large)


def load_model(settings: WardflowSettings) -> TriageModel | None:
    """The triage model, or None when allowed to run without one (every affected decision says so)."""
    if (Path(settings.model_path) / "triage_config.json").exists():
        from inference.serving import OnnxTriageModel

        model = OnnxTriageModel.load(Path(settings.model_path), threads=settings.inference_threads,
                                     uncertainty_threshold=settings.uncertainty_threshold,
                                     batch_size=settings.inference_batch_size, policy=settings.triage_policy_path)
        log.info("triage model %s loaded from %s (%s)", model.model_version, settings.model_path,
                 ", ".join(model.providers))
        return model
    if settings.allow_no_model:
        log.warning("no triage model at %s: running WITHOUT a model (allow_no_model); admissions without a "
                    "requested_unit get needs_confirmation decisions that say so", settings.model_path)
        return None
    raise ModelMissingError(f"no triage model at {settings.model_path}: build one with `make model` "
                            "(wardflow build-model), point --model-path at one, or start with --allow-no-model true")


def broker_urls(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def bootstrap_servers(url: str) -> str:
    """`kafka://a:9092,kafka://b:9092` -> `a:9092,b:9092` for aiokafka clients."""
    return ",".join(u.split("://", 1)[-1] for u in broker_urls(url))


def input_topic_names(settings: WardflowSettings) -> list[str]:
    return [settings.topic(name) for name in INPUT_MODELS]


def output_topic_names(settings: WardflowSettings) -> list[str]:
    return [settings.topic("decisions"), settings.topic("dead-letters"), settings.topic("feedback")]


class FaustSink:
    """Decisions, feedback and dead letters onto their Faust topics; `flush` waits for the broker's acks."""

    def __init__(self, decisions: faust.TopicT, dead_letters: faust.TopicT, feedback: faust.TopicT) -> None:
        self.decisions_topic = decisions
        self.dead_letters_topic = dead_letters
        self.feedback_topic = feedback
        self._pending: list[Any] = []  # output send futures not yet known to be acknowledged

    async def send_outputs(self, hospital_id: str, outputs: dict[str, list[str]]) -> None:
        """Queue decisions and feedback in the producer (the processor's flush makes them durable)."""
        key = hospital_id.encode()
        for value in outputs.get("decisions", []):
            self._pending.append(await self.decisions_topic.send(key=key, value=value.encode()))
        for value in outputs.get("feedback", []):
            self._pending.append(await self.feedback_topic.send(key=key, value=value.encode()))

    async def send_dead_letter(self, key: bytes | None, letter: DeadLetter) -> None:
        """Queue a dead letter (the checkpoint's flush makes it durable before its event is acknowledged)."""
        self._pending.append(await self.dead_letters_topic.send(key=key, value=encode_output(letter)))

    async def flush(self) -> None:
        """Every output and changelog record so far acknowledged, each send's own future awaited
        (Faust's flush gives up after 0.1 s idle, and a producer flush can miss a batch in flight).

        The futures are awaited only after the producer buffer has been emptied by this call, so
        they never depend on the buffer's background task alone."""
        app = self.decisions_topic.app
        pending, self._pending = self._pending, []
        app.pending_changelog.extend(pending)
        await drain_changelog(app)


@dataclass
class WardflowApp:
    """The Faust app plus what it was built from (handy for the CLI and tests)."""

    app: faust.App
    settings: WardflowSettings
    hospitals: dict[str, Hospital]
    metrics: WorkerMetrics
    tables: dict[str, faust.Table]


_LOAD: Any = object()


def create_app(settings: WardflowSettings, *, hospitals: dict[str, Hospital] | None = None,
               metrics: WorkerMetrics | None = None, model: TriageModel | None = _LOAD,
               note_member: bool = False) -> WardflowApp:
    """The worker's Faust app. `note_member`: record the group member id in the data directory at every
    assignment, for the next start to remove it if this process dies without leaving (`run_worker`)."""
    hospitals = hospitals if hospitals is not None else load_hospitals(settings.hospital_config)
    metrics = metrics or WorkerMetrics()
    model = load_model(settings) if model is _LOAD else model
    note = member_file(settings.data_dir) if note_member else None
    app = tuned_app_class(settings.broker_fetch_max_wait_ms, settings.broker_group_instance_id or None, note)(
        settings.app_id,
        broker=broker_urls(settings.broker_url),
        broker_credentials=faust_credentials(settings),
        producer_max_request_size=settings.producer_max_request_bytes,
        store="memory://",  # state is rebuilt from the changelog topics on start
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=bool(settings.web_port),
        web_port=settings.web_port or 6066,
        web_tables_enabled=False,  # the default would serve table contents: patient data
        table_cleanup_interval=3600.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    windows = settings.window_config()
    limits = Limits.from_settings(settings)
    tables = {
        name: app.Table(f"{settings.topic_prefix}{name}", value_type=value_type, partitions=settings.topic_partitions)
        for name, value_type in TABLE_TYPES.items()
    }
    # Faust windowed tables of steps (hopping counts are sums of steps: streams.state.windowed). The processor
    # writes each step's key itself (event time, through the journal); Faust keeps, expires and recovers them.
    tables[ARRIVALS_WINDOW].tumbling(windows.step_s, expires=windows.expires_s)
    tables[PAGES_WINDOW].tumbling(windows.step_s, expires=windows.expires_s)
    tables[OCCUPANCY_WINDOW].tumbling(windows.occupancy_step_s, expires=windows.expires_s)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inputs = app.topic(*input_topic_names(settings), **raw)
    ordered = app.topic(settings.topic("ordered"), partitions=settings.topic_partitions, internal=True, **raw)
    sink = FaustSink(app.topic(settings.topic("decisions"), **raw), app.topic(settings.topic("dead-letters"), **raw),
                     app.topic(settings.topic("feedback"), **raw))
    processor = EventProcessor(
        topic_prefix=settings.topic_prefix, hospitals=hospitals, tables=tables, sink=sink, metrics=metrics,
        dedupe_retention=timedelta(hours=settings.dedupe_retention_hours), limits=limits,
        context=HandlerContext(model_available=model is not None, clinical=settings.clinical_config(),
                               hold=timedelta(minutes=settings.hold_minutes), windows=windows,
                               policy=settings.allocation_policy),
    )
    stage = SequencerStage(app, ordered, input_topics=input_topic_names(settings),
                           admissions_topic=settings.topic("admissions"), model=model,
                           batch_size=settings.inference_batch_size,
                           max_wait_s=settings.sequencer_max_wait_ms / 1000, metrics=metrics, limits=limits)

    app.held_messages = stage.held_messages  # read by the consumer's wait_empty
    @app.agent(inputs, concurrency=1, name=f"{settings.topic_prefix}sequencer")
    async def sequencer(stream: faust.StreamT) -> None:
        """Input topics -> one event-time-ordered topic per hospital partition (no tables here)."""
        async for event in stream.noack().events():
            if stage.add(event):
                await stage.release_all()  # a full batch: don't wait for the timer

    @app.timer(interval=max(settings.inference_batch_wait_ms / 1000, 0.005))
    async def release_waiting() -> None:
        """Releases on a short beat: bounds the batching wait, and frees events held for a silent topic."""
        await stage.release_all()

    # The last `ordered` offset applied per partition: recovered with the state, the truth about progress.
    positions = OrderedPositions(app.Table(f"{settings.topic_prefix}positions", partitions=settings.topic_partitions))
    checkpoint_wait_s = settings.checkpoint_max_ms / 1000

    @app.on_partitions_revoked.connect
    async def forget_revoked(app_: faust.App, revoked: set, **kwargs: Any) -> None:
        await processor.settle()  # the checkpoint in flight is made durable and acknowledged before partitions move
        positions.forget()
        stage.forget(sorted({tp.partition for tp in revoked}))
        processor.forget_finished()
        await drain_changelog(app_)  # the last event's writes reach the changelog before the next owner reads it

    @app.page("/hospitals/")
    async def hospitals_view(web: Any, request: Any) -> Any:
        """The hospitals this worker's configuration knows."""
        return web.json({"hospitals": sorted(hospitals)})

    @app.page("/hospitals/{hospital_id}/capacity/")
    async def capacity_view(web: Any, request: Any, hospital_id: str) -> Any:
        """Census per unit and surge level of one hospital, as this worker holds them."""
        hospital = hospitals.get(hospital_id)
        if hospital is None:
            return web.json({"error": f"unknown hospital {hospital_id!r}"}, status=404)
        return web.json(capacity_snapshot(tables, hospital, windows))

    @app.page("/hospitals/{hospital_id}/beds/")
    async def beds_view(web: Any, request: Any, hospital_id: str) -> Any:
        """Every bed's status and occupant (identifiers and acuity only) and the waiting list, for bed boards."""
        hospital = hospitals.get(hospital_id)
        if hospital is None:
            return web.json({"error": f"unknown hospital {hospital_id!r}"}, status=404)
        return web.json(beds_snapshot(tables, hospital))

    async def checkpoint(events: list[faust.EventT]) -> None:
        """Apply a batch of `ordered` events and start its checkpoint; acknowledged once it is durable."""
        current, stale = [], 0
        for event in events:  # a rebalance since they were read: the partition's next owner applies them
            if event.message.generation_id == app.consumer_generation_id:
                current.append(event)
            else:
                stale += 1
        if stale:
            log.info("%d events read before a rebalance left to the partitions' owners", stale)
        seeks: dict[Any, Any] = {}  # TP -> the offset to go back to
        todo: list[RawMessage] = []
        of_partition: dict[int, faust.EventT] = {}
        last: dict[int, int] = {}
        for event in current:
            m = event.message
            verdict = positions.check(m.partition, m.offset, time.monotonic())
            if verdict.action == "skip":
                continue
            if verdict.action == "seek":  # events were skipped before us: go back for them, in order
                metrics.errors.labels(stage="ordered_gap").inc()
                log.warning("%s[%d]: offset %d arrived but %d is next to apply; seeking back to it",
                            m.topic, m.partition, m.offset, verdict.expected)
                seeks[m.tp] = verdict.expected
                continue
            if verdict.action == "accept_gap":
                metrics.errors.labels(stage="ordered_gap").inc()
                log.error("%s[%d]: offsets %d..%d are no longer in the log; continuing at %d",
                          m.topic, m.partition, verdict.expected, m.offset - 1, m.offset)
            todo.append(raw_message(m))
            positions.stage(m.partition, m.offset)
            of_partition[m.partition] = event
            last[m.partition] = m.offset

        def scope(partition: int) -> Any:
            return acting_on(of_partition[partition])

        def durable() -> None:
            for partition, offset in last.items():
                with scope(partition):
                    positions.write(partition, offset)
            for event in events:
                event.ack()
            metrics.checkpoint_events.observe(len(todo))

        try:
            await processor.apply_batch(todo, scope, durable)
        except BaseException:
            positions.drop_staged()
            raise
        for tp, offset in seeks.items():
            await app.consumer.seek(tp, offset)

    @app.agent(ordered, concurrency=1, name=f"{settings.topic_prefix}state")
    async def state_agent(stream: faust.StreamT) -> None:
        """Every input event in event-time order, per hospital partition, in checkpointed batches: thin on purpose.

        A batch closes at `checkpoint_max_events`, after `checkpoint_max_ms`, or as soon as the
        consumer has nothing more to give (an idle worker checkpoints each event at once)."""
        events = stream.noack()
        queue = events.channel.queue
        batch: list[faust.EventT] = []
        closes_at = 0.0
        async for event in events.events():
            if not batch:
                closes_at = time.monotonic() + checkpoint_wait_s
            batch.append(event)
            if len(batch) < settings.checkpoint_max_events and not queue.empty() and time.monotonic() < closes_at:
                continue
            taken, batch = batch, []
            await checkpoint(taken)

    return WardflowApp(app=app, settings=settings, hospitals=hospitals, metrics=metrics, tables=tables)
