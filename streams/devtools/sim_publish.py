"""Publish simulated events to Kafka, paced so simulated time runs `speed` times faster than wall time.

Why paced: the demo should look like a hospital day played fast (speed 480 = a day in three
minutes), with arrivals bunching in the afternoon as they do in life; speed 0 sends as fast
as the broker acknowledges (benchmarks, tests). The simulated `occurred_at` is published as
is: the worker works in event time, so pacing changes only when a message arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.devtools.simulator import SimEvent
from streams.exceptions import BrokerError

SETTLE_EVERY = 1000  # await acknowledgements in chunks so memory stays flat on long runs


@dataclass(frozen=True)
class PublishReport:
    """What reached the broker: acknowledged messages by topic, failures, time taken."""

    sent: int
    failed: int
    by_topic: dict[str, int]
    wall_s: float
    sim_first: datetime | None
    sim_last: datetime | None
    stopped: bool
    first_error: str | None = None

    @property
    def events_per_second(self) -> float:
        return self.sent / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "by_topic": self.by_topic, "wall_s": round(self.wall_s, 2),
                "events_per_second": round(self.events_per_second, 1),
                "sim_first": self.sim_first.isoformat() if self.sim_first else None,
                "sim_last": self.sim_last.isoformat() if self.sim_last else None,
                "stopped": self.stopped, "first_error": self.first_error}


async def publish(events: Iterable[SimEvent], *, bootstrap: str, prefix: str, speed: float,
                  on_progress: Callable[[int, datetime], None] | None = None, stop: asyncio.Event | None = None,
                  producer_config: Mapping[str, Any] | None = None) -> PublishReport:
    """Send every event to `prefix + event.topic` keyed by hospital; flush and close on the way out.

    `speed` > 0 paces by the events' simulated time (first event = wall start); 0 means no
    pacing. `stop` ends the run early but cleanly: what was sent is flushed and counted.
    `on_progress(sent, simulated_time)` is called after each message is handed over.
    """
    if speed < 0 or speed != speed:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **dict(producer_config or {}))
    try:
        await producer.start()
    except Exception as exc:
        await producer.stop()
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from exc
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    tally = _Tally()
    pending: list[asyncio.Future] = []
    first: datetime | None = None
    last: datetime | None = None
    stopped = False
    try:
        for event in events:
            if stop is not None and stop.is_set():
                stopped = True
                break
            if first is None:
                first, origin = event.at, loop.time()
            if speed > 0:
                due = origin + (event.at - first).total_seconds() / speed
                if due > loop.time() and await _stopped_within(stop, due - loop.time()):
                    stopped = True
                    break
            pending.append(await producer.send(prefix + event.topic, value=event.value, key=event.key))
            tally.topics[event.topic] += 1
            last = event.at
            if on_progress is not None:
                on_progress(len(pending) + tally.settled, event.at)
            if len(pending) >= SETTLE_EVERY:
                await tally.settle(pending)
                pending = []
        await producer.flush()
    finally:
        try:
            await tally.settle(pending)
        finally:
            await producer.stop()
    return PublishReport(sent=tally.settled - tally.failed, failed=tally.failed, by_topic=dict(sorted(tally.topics.items())),
                         wall_s=time.monotonic() - started, sim_first=first, sim_last=last, stopped=stopped,
                         first_error=tally.first_error)


class _Tally:
    """Counts handed-over messages by topic and settles their delivery futures."""

    def __init__(self) -> None:
        self.topics: Counter[str] = Counter()
        self.settled = 0
        self.failed = 0
        self.first_error: str | None = None

    async def settle(self, futures: list[asyncio.Future]) -> None:
        for result in await asyncio.gather(*futures, return_exceptions=True):
            self.settled += 1
            if isinstance(result, BaseException):
                self.failed += 1
                self.first_error = self.first_error or f"{type(result).__name__}: {result}"


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    """Wait `seconds` for the pace, returning True at once if `stop` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
        return True
    except TimeoutError:
        return False
