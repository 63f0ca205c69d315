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

Stream partitions after a rebalance: Faust resumes them, *then* seeks them to the committed
offsets, *then* resumes flow control, which empties every stream's queue. Records fetched in
between are queued, advance the consumer's read offset, and are thrown away; the re-fetch
from the committed offset then drops them as already read, so a whole fetch of events is
silently skipped (seen after kill -9: ordered offsets 186-615 never processed). `TunedConsumer`
holds stream partitions back while the app is rebalancing and the app releases them in
`on_rebalance_end`, after the seek and the flow-control reset.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import FutureMessage


def tuned_app_class(fetch_max_wait_ms: int, group_instance_id: str | None = None) -> type[faust.App]:
    """A `faust.App` subclass whose consumer waits at most `fetch_max_wait_ms` per fetch.

    `group_instance_id` turns on static group membership (KIP-345): a worker restarted under the
    same id takes its partitions back at once instead of waiting for the group to notice that its
    previous incarnation died (a session timeout) and rebalance."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            consumer._group_instance_id = group_instance_id  # read when it starts its group coordinator
            return consumer

    class TunedConsumer(faust_aiokafka.Consumer):
        _held: set[Any]  # stream partitions Faust resumed mid-rebalance, released once it ends

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def resume_partitions(self, tps: Any) -> None:
            tps = set(tps)
            if self.app.rebalancing:
                held = {tp for tp in tps if not self._is_changelog_tp(tp)}
                self._held = getattr(self, "_held", set()) | held
                tps -= held
            super().resume_partitions(tps)

        async def wait_empty(self) -> None:
            """Faust waits here, on a rebalance and at shutdown, until every message it handed out is acked.

            The sequencer holds events back on purpose (event-time order, batching): they are not
            forwarded and so not acked, and waiting for them hung SIGTERM until the kill timeout. They
            are re-read from the committed offset by whoever owns the partition next, so they are
            released from the wait here; the state agent's event in flight is still waited for."""
            held = getattr(self.app, "held_messages", None)
            if held is not None:
                self._unacked_messages.difference_update(held())
            await super().wait_empty()

        def release_held_partitions(self) -> None:
            """Start fetching the stream partitions held back during the rebalance (still assigned ones)."""
            held, self._held = getattr(self, "_held", set()), set()
            if held:
                super().resume_partitions(held & set(self.assignment()))

    class Transport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    class App(faust.App):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, Table=TrackedTable, **kwargs)
            self.pending_changelog: list[FutureMessage] = []

        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

        def on_rebalance_end(self) -> None:
            super().on_rebalance_end()
            self.consumer.release_held_partitions()  # seeked and flow control reset: safe to fetch

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
