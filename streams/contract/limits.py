"""Size and time limits at the edge: what a message may weigh and how far ahead it may be dated.

Size is bad input like any other: a value or key over its limit is never forwarded whole (the
sequencer forwards an excerpt and a `wardflow-too-large` header with the sizes and SHA-256s;
the state agent dead-letters it as `too_large`). Every record we send is checked against the
producer's limit before it is sent (`fits`), so no input can make a send fail and crash the
worker. The defaults fit Kafka's: 1 MiB per request, half of it for one input value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from streams.settings import WardflowSettings

H_TOO_LARGE = "wardflow-too-large"
RECORD_OVERHEAD_BYTES = 512  # record batch framing, varints, timestamps: generous


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 524_288
    max_key_bytes: int = 1024
    max_text_chars: int = 20_000
    producer_max_request_bytes: int = 1_048_576
    future_skew_s: float = 15 * 60.0
    partitions: int | None = None  # input topic partitions: None skips the partition-ownership check

    @classmethod
    def from_settings(cls, settings: WardflowSettings) -> Limits:
        return cls(max_message_bytes=settings.max_message_bytes, max_key_bytes=settings.max_key_bytes,
                   max_text_chars=settings.max_text_chars,
                   producer_max_request_bytes=settings.producer_max_request_bytes,
                   future_skew_s=settings.future_skew_minutes * 60, partitions=settings.topic_partitions)

    @property
    def max_output_bytes(self) -> int:
        """The most one record of ours (key, value, headers) may weigh, framing included."""
        return self.producer_max_request_bytes - RECORD_OVERHEAD_BYTES

    def oversize(self, key: bytes | None, value: bytes | None) -> bool:
        return len(key or b"") > self.max_key_bytes or len(value or b"") > self.max_message_bytes


def record_size(key: bytes | None, value: bytes | None, headers: Any = ()) -> int:
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in headers or ())


def fits(limits: Limits, key: bytes | None, value: bytes | None, headers: Any = ()) -> bool:
    return record_size(key, value, headers) <= limits.max_output_bytes


def sha256_hex(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def size_facts(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """Sizes and SHA-256s of an original message: what a dead letter keeps when it cannot keep the bytes."""
    return {"key_size": len(key or b""), "key_sha256": sha256_hex(key) if key is not None else None,
            "value_size": len(value or b""), "value_sha256": sha256_hex(value) if value is not None else None}


def read_too_large(headers: dict[str, bytes]) -> dict[str, Any] | None:
    raw = headers.get(H_TOO_LARGE)
    if not raw:
        return None
    try:
        facts = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return facts if isinstance(facts, dict) else None


def utf8_prefix(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes of `data`, not cutting a UTF-8 character in two (so valid UTF-8 stays valid)."""
    cut = data[:max(0, limit)]
    for back in range(4):
        try:
            (cut[:len(cut) - back] if back else cut).decode("utf-8")
            return cut[:len(cut) - back] if back else cut
        except UnicodeDecodeError:
            continue
    return cut  # not UTF-8 anyway: kept as bytes (base64 in a dead letter)
