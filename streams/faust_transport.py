"""A Faust app whose Kafka consumer's fetch wait is a setting instead of Faust's fixed 1.5 s.

Kafka answers a fetch as soon as any partition has data, but some Kafka-compatible brokers
(the embedded Tansu among them) hold a fetch over many partitions for most of its wait. A
worker owns dozens of partitions (inputs, the ordered topic, changelogs), so at Faust's
fixed `fetch_max_wait_ms=1500` each hop could add up to ~0.5 s; `broker_fetch_max_wait_ms`
bounds that. Only the consumer's fetch wait changes; everything else is Faust's own.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


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
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
