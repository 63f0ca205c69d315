"""The gateway's one Kafka producer: contract events and dead letters, each awaited until the broker acknowledges.

An HL7 AA (or a FHIR 200) is only sent after `publish` returns, so an acknowledged message is on
the broker; a message that cannot be mapped is on `dead-letters` (with its raw bytes) before its
NAK goes out. A broker that does not answer within `publish_timeout_s` raises `PublishError`:
the sender then gets a NAK AE and resends later, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from datetime import datetime

import orjson
from aiokafka import AIOKafkaProducer

from streams.contract.models import DeadLetter, encode_output
from streams.exceptions import BrokerError
from streams.gateway.hl7v2 import Outbound
from streams.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker did not acknowledge in time (or refused): answer with a retryable error."""


def encode_event(out: Outbound) -> bytes:
    """Contract JSON, encoded once at the exit: no nulls, sorted keys (the same event gives the same bytes)."""
    return orjson.dumps(out.event.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS)


def dead_letter(source: str, raw: bytes, code: str, message: str, field: str | None, at: datetime) -> DeadLetter:
    """A refused message as the contract keeps it: raw bytes as received (base64 when not UTF-8)."""
    try:
        value, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    return DeadLetter(topic=source, partition=-1, offset=-1, key=None, key_encoding="utf-8", value=value,
                      value_encoding=encoding, code=code, message=message, field=field, received_at=at)


class Publisher:
    def __init__(self, settings: GatewaySettings, hospital_id: str, *, max_request_bytes: int) -> None:
        self.settings = settings
        self.key = hospital_id.encode()
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap(), acks="all", linger_ms=1,
                                          max_request_size=max_request_bytes,
                                          request_timeout_ms=int(settings.publish_timeout_s * 1000),
                                          **settings.producer_config())

    async def start(self) -> None:
        try:
            await self._producer.start()
        except Exception as exc:
            await self._producer.stop()
            raise BrokerError(f"cannot reach the broker at {self.settings.bootstrap()}: {exc}") from exc

    async def stop(self) -> None:
        await self._producer.stop()

    async def _send_all(self, items: Sequence[tuple[str, bytes]]) -> None:
        try:
            futures = [await self._producer.send(topic, value=value, key=self.key) for topic, value in items]
            done, pending = await asyncio.wait(futures, timeout=self.settings.publish_timeout_s)
        except Exception as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        if pending:
            raise PublishError(f"no acknowledgement within {self.settings.publish_timeout_s} s")
        for fut in done:
            if (error := fut.exception()) is not None:
                raise PublishError(f"{type(error).__name__}: {error}") from error

    async def publish(self, events: Sequence[Outbound]) -> None:
        if events:
            await self._send_all([(self.settings.topic(o.topic), encode_event(o)) for o in events])

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self._send_all([(self.settings.topic("dead-letters"), encode_output(letter))])
