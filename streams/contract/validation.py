"""Raw Kafka bytes -> a contract model, or a `ContractViolation` an integrator can act on.

Messages are built here from the error type and the field path, never from pydantic's
text, which echoes input values: a clinical note must not reach a dead letter's
`message`, a log line or a metric. Only numbers are ever echoed back.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError

from streams.contract.models import (
    INPUT_MODELS,
    TIMESTAMP_RULE,
    DeadLetter,
    InputEvent,
    utcnow,
)
from streams.exceptions import StreamsError

CODES = (
    "empty_message",
    "not_utf8",
    "malformed_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "out_of_range",
    "bad_timestamp",
    "no_measurement",
    "unknown_topic",
)

_BOM = b"\xef\xbb\xbf"

# pydantic error type -> contract error code
_CODE_BY_TYPE = {
    "missing": "missing_field",
    "string_type": "wrong_type",
    "float_type": "wrong_type",
    "int_type": "wrong_type",
    "bool_type": "wrong_type",
    "dict_type": "wrong_type",
    "list_type": "wrong_type",
    "literal_error": "invalid_value",
    "string_too_short": "invalid_value",
    "string_too_long": "invalid_value",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than": "out_of_range",
    "finite_number": "out_of_range",
}

_EXPECTED_BY_TYPE = {
    "string_type": "a string",
    "float_type": "a number",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "dict_type": "an object",
    "list_type": "an array",
}

# Field-specific wording where the generic one would leave a producer guessing.
_EXPECTED_BY_FIELD = {
    "age": "a number of years",
    "weight_kg": "a number of kilograms",
    "resp_rate": "a number of breaths per minute",
    "spo2": "a number (percent)",
    "systolic_bp": "a number (mmHg)",
    "heart_rate": "a number of beats per minute",
    "temperature_c": "a number of degrees Celsius",
}


class ContractViolation(StreamsError):
    """A message broke the contract: `code` is stable, `message` is one safe sentence."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


def decode_event(topic: str, raw: bytes | None) -> InputEvent:
    """Validate one Kafka value for a contract topic (name without prefix)."""
    model = INPUT_MODELS.get(topic)
    if model is None:
        known = ", ".join(INPUT_MODELS)
        raise ContractViolation("unknown_topic", f"unknown input topic '{topic}'; known: {known}")
    if raw is None or not bytes(raw).strip():
        raise ContractViolation("empty_message", f"{topic}: the message value is empty")
    data = bytes(raw)
    if data.startswith(_BOM):  # RFC 8259 lets a parser ignore it; some EHR exports add one
        data = data[len(_BOM) :]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractViolation(
            "not_utf8", f"{topic}: the value is not UTF-8 (invalid byte at offset {exc.start})"
        ) from None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:  # orjson's msg names the problem, never the input
        raise ContractViolation(
            "malformed_json",
            f"{topic}: the value is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})",
        ) from None
    if not isinstance(obj, dict):
        raise ContractViolation(
            "not_an_object", f"{topic}: the value must be a JSON object, got {_json_kind(obj)}"
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise violation_from(topic, model, exc) from None


def violation_from(topic: str, model: type[BaseModel], exc: ValidationError) -> ContractViolation:
    """The first error, in field order, as a ContractViolation; the rest are counted."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    code, field, sentence = _describe(model, first)
    message = f"{topic}: field '{field}' {sentence}" if field else f"{topic}: the event {sentence}"
    others = len(errors) - 1
    if others:
        message += f" (and {others} other problem{'s' if others > 1 else ''})"
    return ContractViolation(code, message, field)


def _describe(model: type[BaseModel], error: Any) -> tuple[str, str | None, str]:
    """(code, dotted field path, predicate) for one pydantic error dict."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    path = ".".join(str(part) for part in error["loc"]) or ctx.get("field")
    name = str(error["loc"][-1]) if error["loc"] else path
    value = error.get("input")
    if kind == "bad_timestamp":
        return "bad_timestamp", path, TIMESTAMP_RULE
    if kind in ("no_measurement", "missing_field"):
        return kind, path, str(error["msg"])  # our own templates: no input in them
    code = _CODE_BY_TYPE.get(kind, "invalid_value")
    if code == "missing_field":
        return code, path, "is required but missing"
    if code == "wrong_type":
        expected = _EXPECTED_BY_FIELD.get(name or "", _EXPECTED_BY_TYPE.get(kind, "another type"))
        return code, path, f"must be {expected}, got {_json_kind(value)}"
    if kind == "literal_error":
        return code, path, f"must be one of {ctx.get('expected', 'the listed values')}"
    if kind == "string_too_short":
        return code, path, "must not be empty"
    if kind == "string_too_long":
        return code, path, f"is too long (at most {ctx.get('max_length')} characters)"
    if code == "out_of_range":
        low, high = _bounds(model, name)
        shown = f" = {value}" if _is_number(value) else ""
        return code, path, f"{shown} is out of range ({low} to {high})".lstrip()
    return code, path, "is not a valid value"


def _bounds(model: type[BaseModel], name: str | None) -> tuple[Any, Any]:
    """The field's declared [ge, le], read from the model so messages never drift from it."""
    info = model.model_fields.get(name or "")
    low = high = None
    if info is not None:
        for meta in _constraints(info.annotation) + list(info.metadata):
            low = meta.ge if isinstance(meta, Ge) else low
            high = meta.le if isinstance(meta, Le) else high
    return _plain(low), _plain(high)


def _constraints(annotation: Any) -> list[Any]:
    """Ge/Le metadata hidden inside `Annotated[...] | None`."""
    found: list[Any] = []
    for arg in getattr(annotation, "__args__", ()):
        found.extend(getattr(arg, "__metadata__", ()))
        for meta in getattr(arg, "__metadata__", ()):
            found.extend(getattr(meta, "metadata", ()))
    return found


def _plain(bound: Any) -> Any:
    return int(bound) if isinstance(bound, float) and bound.is_integer() else bound


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    """The JSON name of a value's type: safe to echo where the value itself is not."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def dead_letter_payload(value: bytes | None) -> tuple[str | None, str]:
    """Keep a payload as received: text when it is UTF-8, else base64 of the exact bytes."""
    if value is None:
        return None, "utf-8"
    try:
        return bytes(value).decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(bytes(value)).decode("ascii"), "base64"


def make_dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    violation: ContractViolation,
    received_at: datetime | None = None,
) -> DeadLetter:
    """The dead-letter record for a message that failed `decode_event`."""
    key_text, key_encoding = dead_letter_payload(key)
    value_text, value_encoding = dead_letter_payload(value)
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key_text,
        key_encoding=key_encoding,
        value=value_text,
        value_encoding=value_encoding,
        code=violation.code,
        message=violation.message,
        field=violation.field,
        received_at=received_at or utcnow(),
    )
