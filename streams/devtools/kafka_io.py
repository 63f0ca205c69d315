"""Small aiokafka helpers for the demo, the tests and the benchmarks: produce a list, read until."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


async def produce_all(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]],
                      **client: Any) -> int:
    """Send (topic, key, value) in order and wait for every ack; returns how many were sent.

    `client`: extra AIOKafkaProducer options (TLS and SASL: `streams.worker.kafka_security.client_options`)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, **client)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in messages]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def read_until(bootstrap: str, topics: Sequence[str], done: Callable[[list[Record]], bool],
                     timeout_s: float, settle_s: float = 0.0, **client: Any) -> list[Record]:
    """Read from the beginning of `topics` until `done(records)` holds (then `settle_s` more), or time out.

    Returns what was read either way; callers assert on it, so a timeout fails with evidence.
    """
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, **client)
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp_records in batch.values():
                records.extend(Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in tp_records)
            if settle_until is None and done(records):
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
        return records
    finally:
        await consumer.stop()
