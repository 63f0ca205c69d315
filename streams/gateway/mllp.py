"""The MLLP listener: HL7 v2 frames in over TCP (or TLS), contract events to the broker, ACK/NAK back.

MLLP (HL7 v2 Minimal Lower Layer Protocol): each message is framed `<VT> message <FS><CR>`
(0x0B ... 0x1C 0x0D) and answered with one ACK framed the same way, in order. Framing is a
few lines and has to keep the raw bytes of every frame (for the dead letter) and decode each
one with its own MSH-18 character set, which python-hl7's MLLP reader does not, so the
`FrameSplitter` here does it; the HL7 itself is parsed by python-hl7 (`hl7v2`).

What the listener promises:
- AA only after every event of the message is acknowledged by the broker.
- AE / AR with an ERR segment otherwise; a message that cannot be mapped is on `dead-letters`
  (raw bytes, code, field) before its NAK is sent. A broker that does not answer gives AE 207:
  the sender keeps the message and resends.
- MSH-10 is the idempotency key: event ids derive from it, so a resent message gives the same
  events (the worker ignores repeats), and a recent identical resend is answered from memory
  without publishing again.
- Framing faults never stop the listener: a frame without its end block (a new start block
  comes first) is dead-lettered and NAKed; a frame larger than `hl7_max_message_bytes` is
  dead-lettered (its first bytes) and NAKed; a connection that closes or goes silent mid-frame
  has its partial bytes dead-lettered; nothing received is dropped without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from allocator.hospital import Hospital
from streams.gateway.hl7v2 import (
    APPLICATION_INTERNAL_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    AckCode,
    Header,
    Hl7Refused,
    build_ack,
    map_message,
    read_header,
)
from streams.gateway.publisher import Publisher, PublishError, dead_letter
from streams.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

VT, FS, CR = 0x0B, 0x1C, 0x0D
SOURCE = "hl7-mllp"  # the dead letter's `topic`: where the bytes came from


# --------------------------------------------------------------------------- framing (pure)


@dataclass(frozen=True)
class Frame:
    """What the splitter found: a complete message, or bytes that could not be one (`fault` says why)."""

    data: bytes
    fault: str | None = None  # None | missing_end_block | too_large | incomplete_frame | outside_frame


class FrameSplitter:
    """Split a byte stream into MLLP frames, whatever the reads' boundaries; keeps every byte accounted for."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._in_frame = False
        self._discarding = False  # inside a frame already reported as too large: skip to its end
        self._scan = 0

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        self._buf += data
        while self._buf:
            if not self._in_frame:
                start = self._buf.find(VT)
                junk = bytes(self._buf if start < 0 else self._buf[:start])
                if junk.strip(b"\r\n\t \x1c"):
                    out.append(Frame(junk, "outside_frame"))
                if start < 0:
                    self._buf.clear()
                    break
                del self._buf[: start + 1]
                self._in_frame, self._scan = True, 0
                continue
            end = self._buf.find(FS, self._scan)
            restart = self._buf.find(VT, self._scan)
            if restart >= 0 and (end < 0 or restart < end):
                if not self._discarding:
                    out.append(Frame(bytes(self._buf[:restart]), "missing_end_block"))
                del self._buf[:restart]
                self._in_frame, self._discarding = False, False
                continue
            if end < 0:
                self._scan = len(self._buf)
                if not self._discarding and len(self._buf) > self.max_bytes:
                    out.append(Frame(bytes(self._buf[: self.max_bytes]), "too_large"))
                    self._discarding = True
                if self._discarding:
                    self._buf.clear()
                    self._scan = 0
                break
            frame = bytes(self._buf[:end])
            cut = end + 2 if end + 1 < len(self._buf) and self._buf[end + 1] == CR else end + 1
            del self._buf[:cut]
            if self._discarding:
                self._discarding = False
            elif len(frame) > self.max_bytes:
                out.append(Frame(frame[: self.max_bytes], "too_large"))
            else:
                out.append(Frame(frame))
            self._in_frame, self._scan = False, 0
        return out

    def close(self) -> Frame | None:
        """At disconnect: the partial frame, if any (never silently dropped)."""
        partial = bytes(self._buf)
        self._buf.clear()
        if self._in_frame and not self._discarding and partial:
            return Frame(partial, "incomplete_frame")
        if not self._in_frame and partial.strip(b"\r\n\t \x1c"):
            return Frame(partial, "outside_frame")
        return None


def frame(message: bytes) -> bytes:
    return bytes([VT]) + message + bytes([FS, CR])


# --------------------------------------------------------------------------- one message -> one answer


_FAULTS: dict[str, tuple[AckCode, str]] = {
    "missing_end_block": ("AR", "the frame had no end block (FS CR) before the next start block: resend it"),
    "too_large": ("AR", "the message is larger than the listener accepts (hl7_max_message_bytes)"),
}


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter("wardflow_hl7_messages", "HL7 v2 messages answered, by type and acknowledgement code",
                                ["kind", "ack"], registry=r)
        self.events = Counter("wardflow_gateway_events", "Contract events published, by topic", ["topic"], registry=r)
        self.dead_letters = Counter("wardflow_gateway_dead_letters", "Messages dead-lettered, by code", ["code"], registry=r)
        self.ack_latency = Histogram("wardflow_hl7_ack_latency_seconds", "Frame received to ACK written",
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                     registry=r)
        self.connections = Counter("wardflow_hl7_connections", "MLLP connections accepted", registry=r)


class Hl7Service:
    """Maps, publishes and answers one message at a time (per connection); shared by all connections."""

    def __init__(self, hospital: Hospital, publisher: Publisher, *, cache_size: int = 100_000,
                 metrics: GatewayMetrics | None = None) -> None:
        self.hospital = hospital
        self.publisher = publisher
        self.metrics = metrics or GatewayMetrics()
        self.cache_size = cache_size
        self._answered: OrderedDict[tuple[str, str, str], tuple[bytes, bytes]] = OrderedDict()

    async def answer(self, raw: bytes, fault: str | None = None) -> bytes | None:
        """The ACK/NAK for one frame (None for bytes outside any frame: there is nobody to answer)."""
        now = datetime.now(UTC)
        header: Header | None
        try:
            header = read_header(raw)
        except Hl7Refused:
            header = None
        if fault is not None:
            return await self._framing_fault(raw, fault, header, now)
        digest = hashlib.sha256(raw).digest()
        key = (header.sending_app, header.sending_facility, header.control_id) if header else None
        if key and key[2] and (hit := self._answered.get(key)) is not None and hit[0] == digest:
            self._answered.move_to_end(key)
            return hit[1]
        try:
            mapped = map_message(raw, self.hospital, header)
        except Hl7Refused as refused:
            return await self._refuse(raw, header, refused, now, key, digest)
        except Exception as exc:
            log.exception("unexpected error mapping an HL7 message")
            internal = Hl7Refused("AE", APPLICATION_INTERNAL_ERROR, "internal_error",
                                  f"internal error while mapping ({type(exc).__name__}); the message is kept")
            return await self._refuse(raw, header, internal, now, None, digest)
        try:
            await self.publisher.publish(mapped.events)
        except PublishError as exc:
            log.warning("broker did not acknowledge HL7 %s: %s", mapped.header.control_id, exc)
            self.metrics.messages.labels(mapped.header.kind, "AE").inc()
            return build_ack(mapped.header, "AE", now, ack_control_id=_ack_id(), error=Hl7Refused(
                "AE", APPLICATION_INTERNAL_ERROR, "broker_unavailable",
                "the broker did not acknowledge the events in time: nothing was stored, resend the message"))
        for o in mapped.events:
            self.metrics.events.labels(o.topic).inc()
        self.metrics.messages.labels(mapped.header.kind, "AA").inc()
        ack = build_ack(mapped.header, "AA", now, ack_control_id=_ack_id(), text=mapped.note)
        self._remember(key, digest, ack)
        return ack

    async def _refuse(self, raw: bytes, header: Header | None, refused: Hl7Refused, now: datetime,
                      key: tuple[str, str, str] | None, digest: bytes) -> bytes:
        letter = dead_letter(SOURCE, raw, refused.code, refused.message, refused.where, now)
        try:
            await self.publisher.dead_letter(letter)
        except PublishError as exc:
            log.warning("broker did not acknowledge a dead letter: %s", exc)
            return build_ack(header, "AE", now, ack_control_id=_ack_id(), error=Hl7Refused(
                "AE", APPLICATION_INTERNAL_ERROR, "broker_unavailable",
                "the message was refused but could not be kept (broker unavailable): resend it"))
        self.metrics.dead_letters.labels(refused.code).inc()
        self.metrics.messages.labels(header.kind if header else "unknown", refused.ack).inc()
        nak = build_ack(header, refused.ack, now, ack_control_id=_ack_id(), error=refused)
        self._remember(key, digest, nak)
        return nak

    async def _framing_fault(self, raw: bytes, fault: str, header: Header | None, now: datetime) -> bytes | None:
        unknown: tuple[AckCode, str] = ("AR", f"framing fault: {fault}")
        ack_code, text = _FAULTS.get(fault, unknown)
        refused = Hl7Refused(ack_code, SEGMENT_SEQUENCE_ERROR, fault, text, segment="MSH" if header else None)
        letter = dead_letter(SOURCE, raw, fault, text, None, now)
        try:
            await self.publisher.dead_letter(letter)
            self.metrics.dead_letters.labels(fault).inc()
        except PublishError as exc:
            log.error("could not dead-letter a %s frame (%d bytes): %s", fault, len(raw), exc)
        if fault in ("incomplete_frame", "outside_frame"):
            return None  # nobody is waiting for an answer to these
        return build_ack(header, ack_code, now, ack_control_id=_ack_id(), error=refused)

    def _remember(self, key: tuple[str, str, str] | None, digest: bytes, answer: bytes) -> None:
        if key is None or not key[2] or self.cache_size == 0:
            return
        self._answered[key] = (digest, answer)
        self._answered.move_to_end(key)
        while len(self._answered) > self.cache_size:
            self._answered.popitem(last=False)


def _ack_id() -> str:
    return uuid.uuid4().hex[:20]


# --------------------------------------------------------------------------- the server


class MllpServer:
    """asyncio TCP/TLS server; one task per connection, messages of a connection answered in order."""

    def __init__(self, service: Hl7Service, settings: GatewaySettings) -> None:
        self.service = service
        self.settings = settings
        self._server: asyncio.AbstractServer | None = None
        self._slots = asyncio.Semaphore(settings.hl7_max_connections)
        self._tasks: set[asyncio.Task] = set()

    def ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.hl7_tls_cert is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(s.hl7_tls_cert), str(s.hl7_tls_key))
        if s.hl7_tls_client_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(s.hl7_tls_client_ca))
        return ctx

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._connection, self.settings.hl7_host, self.settings.hl7_port,
                                                  ssl=self.ssl_context(), limit=2 ** 16,
                                                  reuse_port=self.settings.hl7_processes > 1 or None)
        port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener on %s:%d%s", self.settings.hl7_host, port,
                 " (TLS)" if self.settings.hl7_tls_cert else "")
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        self.service.metrics.connections.inc()
        splitter = FrameSplitter(self.settings.hl7_max_message_bytes)
        try:
            async with self._slots:
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(1 << 16), timeout=self.settings.hl7_idle_timeout_s)
                    except TimeoutError:
                        log.info("MLLP connection %s idle for %.0f s: closing", peer, self.settings.hl7_idle_timeout_s)
                        break
                    if not data:
                        break
                    for fr in splitter.feed(data):
                        started = time.perf_counter()
                        answer = await self.service.answer(fr.data, fr.fault)
                        if answer is not None:
                            writer.write(frame(answer))
                            await writer.drain()
                            self.service.metrics.ack_latency.observe(time.perf_counter() - started)
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("MLLP connection %s dropped: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("MLLP connection %s failed", peer)
        finally:
            leftover = splitter.close()
            if leftover is not None:
                try:
                    await asyncio.shield(self.service.answer(leftover.data, leftover.fault))
                except Exception:
                    log.exception("could not keep the partial frame of %s", peer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)
