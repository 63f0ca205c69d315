"""Event-time merge of a hospital's input topics, so state sees events in the order they happened.

Kafka orders messages within a topic partition only; a worker reading `admissions` and
`transfers` may otherwise see a transfer before the admission it refers to (always so when
catching up after a crash). Like Kafka Streams' timestamp synchronisation, the merger keeps
one queue per input topic of a partition and releases the head with the earliest
`occurred_at` only when every other topic either has something queued or has nothing left
to read. A topic whose backlog is not known yet is waited for `max_wait_s`; one known to
hold unread messages is waited for until they arrive (they are on their way), up to
`stuck_after_s` as a safety net. Order within one topic partition is never changed. Ties go
to the contract's topic order, then offset.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

# lag(topic, partition) -> messages still to be delivered, or None when not known yet
LagFn = Callable[[str, int], "int | None"]


def event_time(value: bytes | None) -> float | None:
    """`occurred_at` in epoch seconds, or None when the message cannot tell (it is released at once)."""
    try:
        body = orjson.loads(value) if value else None
        return datetime.fromisoformat(body["occurred_at"]).timestamp() if isinstance(body, dict) else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Pending:
    topic: str
    partition: int
    offset: int
    sort_key: tuple[float, int, int]
    queued_at: float
    item: Any = field(compare=False)


class EventTimeMerger:
    """Per partition, one FIFO per topic; `release()` pops what may go, in event-time order."""

    def __init__(self, topics: Sequence[str], max_wait_s: float, stuck_after_s: float = 30.0) -> None:
        self.topics = tuple(topics)
        self._rank = {t: i for i, t in enumerate(self.topics)}
        self.max_wait_s = max_wait_s
        self.stuck_after_s = stuck_after_s
        self.forced_releases = 0  # heads released while a topic still had unread messages
        self.unknown_lag_releases = 0  # heads released after max_wait with a topic's backlog unknown
        self._queues: dict[int, dict[str, deque[Pending]]] = {}
        self.delivered: dict[tuple[str, int], int] = {}  # last offset handed to us per topic partition
        self.last_added: dict[int, float] = {}  # per partition, when its newest event was queued (`now` of `add`)

    def add(self, topic: str, partition: int, offset: int, occurred_at: float | None, item: Any, now: float) -> None:
        ts = -math.inf if occurred_at is None else occurred_at
        queue = self._queues.setdefault(partition, {}).setdefault(topic, deque())
        queue.append(Pending(topic, partition, offset, (ts, self._rank.get(topic, len(self.topics)), offset), now, item))
        self.delivered[(topic, partition)] = offset
        self.last_added[partition] = now

    def pending(self, partition: int | None = None) -> int:
        parts = self._queues.values() if partition is None else [self._queues.get(partition, {})]
        return sum(len(q) for p in parts for q in p.values())

    def partitions(self) -> list[int]:
        return [p for p, queues in self._queues.items() if any(queues.values())]

    def release(self, partition: int, now: float, lag: LagFn) -> list[Pending]:
        queues = self._queues.get(partition, {})
        out: list[Pending] = []
        while True:
            heads = {t: q[0] for t, q in queues.items() if q}
            if not heads:
                return out
            head = min(heads.values(), key=lambda p: p.sort_key)
            if head.sort_key[0] != -math.inf:
                waited = now - head.queued_at
                lags = [lag(t, partition) for t in self.topics if t not in heads]
                if any(n for n in lags if n) and waited < self.stuck_after_s:
                    return out  # a silent topic has unread messages: one may be earlier
                if any(n is None for n in lags) and waited < self.max_wait_s:
                    return out  # backlog not known yet: wait a little
                if any(n is None for n in lags):
                    self.unknown_lag_releases += 1
                if any(n for n in lags if n):
                    self.forced_releases += 1
            out.append(queues[head.topic].popleft())

    def held(self) -> list[Any]:
        """Every item still queued (not released), on every partition."""
        return [p.item for queues in self._queues.values() for q in queues.values() for p in q]

    def forget(self, partitions: Sequence[int]) -> None:
        """Drop queued events of revoked partitions: they will be read again by their new owner."""
        for p in partitions:
            self._queues.pop(p, None)
            self.last_added.pop(p, None)
            for k in [k for k in self.delivered if k[1] == p]:
                del self.delivered[k]
