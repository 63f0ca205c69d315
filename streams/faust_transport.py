"""A Faust app tuned for WardFlow: a fetch wait that is a setting, and changelog sends one can await.

Fetch wait: Faust fixes the consumer's at 1.5 s.

Kafka answers a fetch as soon as any partition has data, but some Kafka-compatible brokers
(the embedded Tansu among them) hold a fetch over many partitions for most of its wait. A
worker owns dozens of partitions (inputs, the ordered topic, changelogs), so at Faust's
fixed `fetch_max_wait_ms=1500` each hop could add up to ~0.5 s; `broker_fetch_max_wait_ms`
bounds that.

Changelog sends: a table write hands its changelog record to Faust's producer buffer, whose
background task takes it off the queue *before* handing it to the Kafka producer, so "buffer
empty, producer flushed" can still miss the record in between (seen under load: a state write
lost by a kill -9 after its event was committed). `TrackedTable` keeps each send's future on
the app, and `drain_changelog()` awaits every one: the broker has acknowledged them all.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import FutureMessage


def tuned_app_class(fetch_max_wait_ms: int) -> type[faust.App]:
    """A `faust.App` subclass whose consumer waits at most `fetch_max_wait_ms` per fetch."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            return consumer

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    class App(faust.App):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, Table=TrackedTable, **kwargs)
            self.pending_changelog: list[FutureMessage] = []

        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App


class TrackedTable(faust.Table):
    """A Faust table whose changelog sends the app can await (see `drain_changelog`)."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        fut = super().send_changelog(*args, **kwargs)
        pending = getattr(self.app, "pending_changelog", None)
        if pending is not None:
            pending.append(fut)
        return fut


async def drain_changelog(app: faust.App) -> None:
    """Return once every changelog record written so far is acknowledged by the broker."""
    producer = app.producer
    while True:
        pending, app.pending_changelog = app.pending_changelog, []
        while producer.buffer.size:
            await producer.buffer.flush()
        for fut in pending:
            await fut
        await producer.flush()
        if not app.pending_changelog:
            return
