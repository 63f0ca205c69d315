"""The board's inputs and its one output: decisions and page acks from Kafka, the worker's views over
HTTP, and clinicians' overrides back to Kafka. Changes are announced to the browsers (SSE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from allocator.hospital import Hospital
from streams.board.metrics import BoardMetrics
from streams.board.settings import BoardSettings
from streams.board.state import HospitalBoard

log = logging.getLogger(__name__)


def bootstrap_servers(url: str) -> str:
    return ",".join(u.strip().split("://", 1)[-1] for u in url.split(",") if u.strip())


def kafka_client_args(settings: BoardSettings) -> dict[str, Any]:
    args: dict[str, Any] = {"bootstrap_servers": bootstrap_servers(settings.broker_url)}
    if settings.broker_username and settings.broker_password:
        args.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                    sasl_plain_username=settings.broker_username,
                    sasl_plain_password=settings.broker_password.get_secret_value())
    return args


class Broadcaster:
    """Tells every live browser which hospital changed; a slow browser only misses repeats."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=8)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._queues.discard(q)

    def publish(self, hospital_ids: Iterable[str]) -> None:
        for hid in hospital_ids:
            for q in self._queues:
                if hid not in q._queue:  # type: ignore[attr-defined]  # a pending change already says it
                    with contextlib.suppress(asyncio.QueueFull):
                        q.put_nowait(hid)

    @property
    def clients(self) -> int:
        return len(self._queues)


class BoardFeed:
    """Runs the consumer and the views poller; holds one `HospitalBoard` per hospital."""

    def __init__(self, settings: BoardSettings, hospitals: dict[str, Hospital], metrics: BoardMetrics) -> None:
        self.settings = settings
        self.hospitals = hospitals
        self.metrics = metrics
        self.boards = {hid: HospitalBoard(h) for hid, h in hospitals.items()}
        self.broadcaster = Broadcaster()
        self.caught_up = asyncio.Event()
        self.producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task] = []
        self._http: httpx.AsyncClient | None = None
        self._refresh_lock = asyncio.Lock()
        self.last_push: dict[str, float] = {}
        self.failed: str | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=2.0)
        self.producer = AIOKafkaProducer(acks="all", **kafka_client_args(self.settings))
        await self.producer.start()
        await self.refresh_views(self.boards)
        self._tasks = [asyncio.create_task(self._consume(), name="board-consumer"),
                       asyncio.create_task(self._poll_views(), name="board-views")]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task) -> None:
        """A feed task must never end while the board runs: say so loudly and turn /healthz red."""
        if task.cancelled():
            return
        self.failed = f"{task.get_name()} stopped: {task.exception()!r}"
        log.error("board: %s", self.failed, exc_info=task.exception())
        self.metrics.ready.set(0)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.producer is not None:
            await self.producer.stop()
        if self._http is not None:
            await self._http.aclose()

    # ------------------------------------------------------------- decisions
    async def _partitions(self, consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
        """Every partition of `topics`, waiting (and saying so) until the worker has created them."""
        warned = False
        while True:
            await consumer.topics()  # refreshes the metadata
            found = {t: consumer.partitions_for_topic(t) for t in topics}
            missing = [t for t, parts in found.items() if not parts]
            if not missing:
                return [TopicPartition(t, p) for t, parts in found.items() for p in sorted(parts)]
            if not warned:
                log.warning("board: waiting for topic(s) %s to exist (is the worker running?)", ", ".join(missing))
                warned = True
            await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        topics = [self.settings.topic("decisions"), self.settings.topic("page-acks")]
        consumer = AIOKafkaConsumer(group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                    fetch_max_wait_ms=50, **kafka_client_args(self.settings))
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, topics)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                changed: set[str] = set()
                stamps: list[float] = []
                for records in batch.values():
                    for r in records:
                        hid = self._apply(r)
                        if hid:
                            changed.add(hid)
                            if r.topic.endswith("decisions"):
                                stamps.append(r.timestamp / 1000)
                if changed:
                    await self.refresh_views(changed)
                    self._announce(changed)
                    now = time.time()
                    if self.caught_up.is_set():
                        for s in stamps:
                            self.metrics.push_latency.observe(max(0.0, now - s))
                if not self.caught_up.is_set():
                    positions = {tp: await consumer.position(tp) for tp in ends}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        self.caught_up.set()
                        self.metrics.ready.set(1)
                        log.info("board caught up with %s (%d decisions)", topics[0],
                                 sum(b.decisions_applied for b in self.boards.values()))
        finally:
            await consumer.stop()

    def _apply(self, r: Any) -> str | None:
        try:
            body = orjson.loads(r.value)
            hid = body["hospital_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("board: unreadable record on %s partition %s offset %s skipped", r.topic, r.partition, r.offset)
            return None
        board = self.boards.get(hid)
        if board is None:
            return None
        if r.topic.endswith("page-acks"):
            self.metrics.page_acks.inc()
            return hid if board.apply_ack(body) else None
        if board.apply(body):
            self.metrics.decisions.labels(kind=str(body.get("kind"))).inc()
            self.metrics.queue.labels(hospital=hid).set(len(board.queue))
            return hid
        return None

    def _announce(self, hids: Iterable[str]) -> None:
        hids = list(hids)
        for hid in hids:
            self.last_push[hid] = time.time()
        self.broadcaster.publish(hids)

    # ------------------------------------------------------------- worker views
    async def _get(self, url: str) -> dict | None:
        assert self._http is not None
        try:
            response = await self._http.get(url)
            if response.status_code != 200:
                return None
            return response.json()
        except (httpx.HTTPError, ValueError):
            return None

    async def _views_for(self, hid: str) -> tuple[dict | None, dict | None]:
        """The freshest answer among the worker(s): the one whose hospital clock is latest."""
        best: tuple[dict | None, dict | None] = (None, None)
        for base in self.settings.view_urls():
            beds = await self._get(f"{base}/hospitals/{hid}/beds/")
            if beds is None:
                continue
            capacity = await self._get(f"{base}/hospitals/{hid}/capacity/")
            if best[0] is None or (beds.get("as_of") or "") > (best[0].get("as_of") or ""):
                best = (beds, capacity)
        return best

    async def refresh_views(self, hids: Iterable[str]) -> set[str]:
        changed: set[str] = set()
        async with self._refresh_lock:
            for hid in hids:
                beds, capacity = await self._views_for(hid)
                if beds is None:
                    self.metrics.view_errors.inc()
                self.metrics.views_ok.labels(hospital=hid).set(0 if beds is None else 1)
                board = self.boards[hid]
                if board.set_views(beds, capacity):
                    changed.add(hid)
                self.metrics.queue.labels(hospital=hid).set(len(board.queue))
        return changed

    async def _poll_views(self) -> None:
        while True:
            await asyncio.sleep(self.settings.board_views_poll_s)
            changed = await self.refresh_views(self.boards)
            if changed:
                self._announce(changed)
            self.metrics.clients.set(self.broadcaster.clients)

    # ------------------------------------------------------------- overrides
    async def publish_override(self, hospital_id: str, body: dict) -> None:
        assert self.producer is not None
        await self.producer.send_and_wait(self.settings.topic("overrides"), key=hospital_id.encode(),
                                          value=orjson.dumps(body))
