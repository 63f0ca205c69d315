"""What the embedded broker (Tansu) says of a partition's end, which the worker's table recovery relies on.

Tansu 0.6 lists a partition's end (ListOffsets, latest) as the base offset of its last record batch + 1,
short of the batch's other records; its fetch answers carry the true end. `ShownEndRecovery`
(streams/worker/faust_transport.py) reads to the end the fetch answers show, so that answer must be right.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.devtools.broker import create_topics

pytestmark = [pytest.mark.broker, pytest.mark.timeout(60)]


async def _ends_after_two_batches(bootstrap: str, topic: str) -> tuple[list[int], int, int]:
    """Acknowledged offsets of a 10-record batch and a 5-record one; the listed end; the fetched end."""
    await create_topics(bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        acked = []
        for n in (10, 5):  # each burst leaves in one batch (sent within the linger)
            sent = [await producer.send(topic, b"r%d" % i, partition=0) for i in range(n)]
            acked += [m.offset for m in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        listed = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        consumer.seek(tp, max(0, listed - 1))
        await consumer.getmany(timeout_ms=5000)
        fetched = consumer.highwater(tp)
    finally:
        await consumer.stop()
    return acked, listed, fetched


def test_fetch_answers_carry_the_partition_end_a_listing_may_fall_short_of(broker, run_id):
    acked, listed, fetched = asyncio.run(_ends_after_two_batches(broker.bootstrap, f"{run_id}.ends"))
    assert acked == list(range(15))
    assert fetched == 15, f"fetch answers say the partition ends at {fetched}, not after offset 14"
    assert listed <= fetched
    print(f"\nlisted end {listed}, fetched end {fetched} (Tansu 0.6 lists 11: the last batch's base offset + 1)")
