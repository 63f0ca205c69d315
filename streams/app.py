"""The Faust application: topics, tables and the state agent, built from settings.

`create_app(settings)` is a factory (no module-level app), so tests and the demo can run
workers with their own topic prefix and consumer group. The agent stays thin: it hands each
raw message to `EventProcessor` and keeps going whatever the message holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
from faust.types import TP

from allocator.hospital import Hospital, load_hospitals
from streams.contract import INPUT_MODELS, DeadLetter, Decision, encode_output
from streams.faust_transport import tuned_app_class
from streams.handlers import HandlerContext
from streams.metrics import WorkerMetrics
from streams.processor import EventProcessor, RawMessage
from streams.sequencer import EventTimeMerger, event_time
from streams.records import BedState, DedupeBucket, DedupeMeta, EncounterState, UnitCensus
from streams.settings import WardflowSettings
from streams.state import (BEDS, CENSUS, CLOCK, DECISION_INDEX, ENCOUNTERS, OBSERVATIONS, PAGES, PAGING,
                           PAGING_ACTIVE, PATIENTS, SEEN, SEEN_BUCKETS, SEEN_META, WAITING, HOLDS)

log = logging.getLogger(__name__)

# Table name -> value type (None: plain JSON values).
TABLE_TYPES: dict[str, Any] = {
    BEDS: BedState, ENCOUNTERS: EncounterState, PATIENTS: None, CENSUS: UnitCensus,
    WAITING: None, SEEN: None, SEEN_BUCKETS: DedupeBucket, SEEN_META: DedupeMeta,
    OBSERVATIONS: None, PAGING: None, PAGES: None, PAGING_ACTIVE: None, CLOCK: None, DECISION_INDEX: None,
    HOLDS: None,
}


H_TOPIC, H_PARTITION, H_OFFSET = "wardflow-topic", "wardflow-partition", "wardflow-offset"


def raw_message(m: Any) -> RawMessage:
    """The original message behind a copy in the ordered topic (its origin rides in headers)."""
    headers = {k: v for k, v in (m.headers.items() if isinstance(m.headers, dict) else (m.headers or []))}
    if H_TOPIC not in headers:
        return RawMessage(topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                          timestamp=m.timestamp)
    return RawMessage(topic=headers[H_TOPIC].decode(), partition=int(headers[H_PARTITION]),
                      offset=int(headers[H_OFFSET]), key=m.key, value=m.value, timestamp=m.timestamp)


def broker_urls(url: str) -> list[str]:
    return [u.strip() for u in url.split(",") if u.strip()]


def bootstrap_servers(url: str) -> str:
    """`kafka://a:9092,kafka://b:9092` -> `a:9092,b:9092` for aiokafka clients."""
    return ",".join(u.split("://", 1)[-1] for u in broker_urls(url))


def input_topic_names(settings: WardflowSettings) -> list[str]:
    return [settings.topic(name) for name in INPUT_MODELS]


def output_topic_names(settings: WardflowSettings) -> list[str]:
    return [settings.topic("decisions"), settings.topic("dead-letters")]


class FaustSink:
    """Sends decisions (waiting for the broker's ack) and dead letters through Faust topics."""

    def __init__(self, decisions: faust.TopicT, dead_letters: faust.TopicT) -> None:
        self.decisions_topic = decisions
        self.dead_letters_topic = dead_letters

    async def send_decisions(self, hospital_id: str, decisions: list[Decision]) -> None:
        key = hospital_id.encode()
        pending = [await self.decisions_topic.send(key=key, value=encode_output(d)) for d in decisions]
        for fut in pending:
            await fut  # delivered before any state is written: see streams.processor

    async def send_dead_letter(self, key: bytes | None, letter: DeadLetter) -> None:
        await self.dead_letters_topic.send(key=key, value=encode_output(letter))


@dataclass
class WardflowApp:
    """The Faust app plus what it was built from (handy for the CLI and tests)."""

    app: faust.App
    settings: WardflowSettings
    hospitals: dict[str, Hospital]
    metrics: WorkerMetrics
    tables: dict[str, faust.Table]


def create_app(settings: WardflowSettings, *, hospitals: dict[str, Hospital] | None = None,
               metrics: WorkerMetrics | None = None) -> WardflowApp:
    hospitals = hospitals if hospitals is not None else load_hospitals(settings.hospital_config)
    metrics = metrics or WorkerMetrics()
    broker_credentials = None
    if settings.broker_username and settings.broker_password:
        broker_credentials = faust.SASLCredentials(username=settings.broker_username,
                                                   password=settings.broker_password.get_secret_value())
    app = tuned_app_class(settings.broker_fetch_max_wait_ms)(
        settings.app_id,
        broker=broker_urls(settings.broker_url),
        broker_credentials=broker_credentials,
        store="memory://",  # state is rebuilt from the changelog topics on start
        datadir=str(settings.data_dir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=bool(settings.web_port),
        web_port=settings.web_port or 6066,
        web_tables_enabled=False,  # the default would serve table contents: patient data
        table_cleanup_interval=3600.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    tables = {
        name: app.Table(f"{settings.topic_prefix}{name}", value_type=value_type, partitions=settings.topic_partitions)
        for name, value_type in TABLE_TYPES.items()
    }
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    inputs = app.topic(*input_topic_names(settings), **raw)
    ordered = app.topic(settings.topic("ordered"), partitions=settings.topic_partitions, internal=True, **raw)
    sink = FaustSink(app.topic(settings.topic("decisions"), **raw), app.topic(settings.topic("dead-letters"), **raw))
    processor = EventProcessor(
        topic_prefix=settings.topic_prefix, hospitals=hospitals, tables=tables, sink=sink, metrics=metrics,
        dedupe_retention=timedelta(hours=settings.dedupe_retention_hours),
        context=HandlerContext(model_available=False, clinical=settings.clinical_config()),
    )
    merger = EventTimeMerger(input_topic_names(settings), max_wait_s=settings.sequencer_max_wait_ms / 1000)
    release_lock = asyncio.Lock()

    def lag(topic: str, partition: int) -> int | None:
        """Messages of a topic partition not yet handed to the sequencer (None: not known yet)."""
        tp = TP(topic, partition)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned / not fetched yet
            return None
        if highwater is None:
            return None
        last = merger.delivered.get((topic, partition))
        if last is not None:
            return max(0, highwater - (last + 1))
        committed = app.consumer._committed_offset.get(tp)  # next offset to read after a restart
        return max(0, highwater - (committed or 0))

    async def forward(partition: int) -> None:
        """Send what the merger releases to the ordered topic, then ack the originals."""
        async with release_lock:
            released = merger.release(partition, time.monotonic(), lag)
            sent = []
            for p in released:
                m = p.item.message
                sent.append(await ordered.send(
                    key=m.key, value=m.value, partition=m.partition, timestamp=m.timestamp,
                    headers=[(H_TOPIC, m.topic.encode()), (H_PARTITION, str(m.partition).encode()),
                             (H_OFFSET, str(m.offset).encode())]))
            for fut, p in zip(sent, released):
                await fut
                p.item.ack()  # the original is committed only once its copy is safely in `ordered`

    @app.agent(inputs, concurrency=1, name=f"{settings.topic_prefix}sequencer")
    async def sequencer(stream: faust.StreamT) -> None:
        """Input topics -> one event-time-ordered topic per hospital partition (no tables here)."""
        async for event in stream.noack().events():
            m = event.message
            merger.add(m.topic, m.partition, m.offset, event_time(m.value), event, time.monotonic())
            await forward(m.partition)

    @app.timer(interval=max(settings.sequencer_max_wait_ms / 4000, 0.01))
    async def release_waiting() -> None:
        """Releases events held for a silent topic once the wait is over, even if nothing else arrives."""
        for partition in merger.partitions():
            await forward(partition)

    @app.on_partitions_revoked.connect
    async def forget_revoked(app_: faust.App, revoked: set, **kwargs: Any) -> None:
        merger.forget(sorted({tp.partition for tp in revoked}))

    @app.agent(ordered, concurrency=1, name=f"{settings.topic_prefix}state")
    async def state_agent(stream: faust.StreamT) -> None:
        """Every input event in event-time order, one at a time, per hospital partition: thin on purpose."""
        async for event in stream.events():
            await processor.process(raw_message(event.message))

    return WardflowApp(app=app, settings=settings, hospitals=hospitals, metrics=metrics, tables=tables)
