"""The envelope between the worker's two stages, in Kafka headers: one encode, one decode.

The sequencer stage forwards every input message, bytes unchanged, to the `ordered` topic; the
envelope says where the original came from (topic, partition, offset: the state agent dedupes,
dead-letters and commits positions by it), what the model predicted from an admission's text or
why it could not, and, for a message too large to forward whole, the original's sizes and
SHA-256s. `Envelope.headers()` is the only encoder and `Envelope.from_headers()` the only decoder.
The admission's text never travels here: only the prediction does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from streams.contract.limits import H_TOO_LARGE, read_too_large, size_facts
from streams.contract.models import PredictionOut

H_TOPIC, H_PARTITION, H_OFFSET = "wardflow-topic", "wardflow-partition", "wardflow-offset"
H_PREDICTION = "wardflow-prediction"
H_PREDICTION_ERROR = "wardflow-prediction-error"


@dataclass(frozen=True)
class Origin:
    """Where an event was first read: its input topic, partition and offset."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class PredictionFailure:
    """Why the model gave no prediction for an admission (dead-lettered with this code and message)."""

    code: str
    message: str


UNREADABLE_PREDICTION = PredictionFailure(
    "inference_failed", "admissions: the prediction that came with this admission could not be read; it is kept "
                        "here for replay")


@dataclass(frozen=True)
class Envelope:
    origin: Origin
    prediction: PredictionOut | None = None
    failure: PredictionFailure | None = None
    too_large: dict[str, Any] | None = None  # the original's sizes and SHA-256s (`limits.size_facts`)

    def headers(self) -> list[tuple[str, bytes]]:
        out = [(H_TOPIC, self.origin.topic.encode()), (H_PARTITION, str(self.origin.partition).encode()),
               (H_OFFSET, str(self.origin.offset).encode())]
        if self.too_large is not None:
            out.append((H_TOO_LARGE, orjson.dumps(self.too_large)))
        if self.prediction is not None:
            out.append((H_PREDICTION, self.prediction.model_dump_json().encode()))
        if self.failure is not None:
            out.append((H_PREDICTION_ERROR, orjson.dumps({"code": self.failure.code, "message": self.failure.message})))
        return out

    def without_prediction(self, key: bytes | None, value: bytes | None) -> Envelope:
        """The same origin for a message cut to an excerpt: sizes and hashes instead of a prediction."""
        return Envelope(self.origin, too_large=size_facts(key, value))

    @classmethod
    def from_headers(cls, headers: Any) -> Envelope | None:
        """The envelope of a message of the ordered topic; None when it carries no origin (not forwarded by the
        sequencer stage). A prediction that cannot be read becomes a failure (the admission is dead-lettered
        with the reason), never an exception in the state agent."""
        h = dict(headers.items() if isinstance(headers, dict) else (headers or []))
        try:
            origin = Origin(h[H_TOPIC].decode(), int(h[H_PARTITION]), int(h[H_OFFSET]))
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        prediction = failure = None
        if h.get(H_PREDICTION):
            try:
                prediction = PredictionOut.model_validate_json(h[H_PREDICTION])
            except ValidationError:
                failure = UNREADABLE_PREDICTION
        if h.get(H_PREDICTION_ERROR):
            failure = _failure(h[H_PREDICTION_ERROR])
        return cls(origin, prediction, failure, read_too_large(h))


def _failure(raw: bytes) -> PredictionFailure:
    try:
        body = orjson.loads(raw)
        return PredictionFailure(str(body["code"]), str(body["message"]))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return UNREADABLE_PREDICTION
