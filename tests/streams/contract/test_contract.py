"""The contract models and `decode_event`: valid events pass, every error code is precise
and never echoes free text."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streams.contract.models import (
    INPUT_MODELS,
    OUTPUT_MODELS,
    Admission,
    BedStatusChange,
    Cancellation,
    DeadLetter,
    Decision,
    Discharge,
    Override,
    PageAck,
    PredictionOut,
    ReasonOut,
    Swap,
    Transfer,
    Vitals,
    encode_output,
)
from streams.contract.validation import (
    CODES,
    ContractViolation,
    dead_letter_payload,
    decode_event,
    make_dead_letter,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "topics.md"
SECRET = "SECRET-PHRASE"

BASE = {"event_id": "ev-1", "hospital_id": "h1", "occurred_at": "2026-11-24T08:15:00+00:00"}
ENC = {"patient_id": "P1", "encounter_id": "E1"}

EXAMPLES: dict[str, dict[str, Any]] = {
    "admissions": {**BASE, **ENC, "age": 78, "sex": "F", "text": "fall, hip pain"},
    "vitals": {**BASE, **ENC, "resp_rate": 22, "spo2": 93.5, "on_oxygen": False},
    "transfers": {**BASE, **ENC, "to_bed_id": "B12"},
    "discharges": {**BASE, **ENC, "disposition": "home"},
    "bed-status": {**BASE, "bed_id": "B12", "status": "clean"},
    "overrides": {
        **BASE,
        "decision_id": "d1",
        "action": "reassign",
        "clinician_id": "C1",
        "reason": "closer to nurses",
        "bed_id": "B3",
    },
    "page-acks": {**BASE, "page_id": "pg1", "clinician_id": "C1"},
    "cancellations": {**BASE, **ENC, "cancels": "transfer", "bed_id": "B12"},
    "swaps": {**BASE, **ENC, "other_patient_id": "P2", "other_encounter_id": "E2"},
}

MODEL_OF = {
    "admissions": Admission,
    "vitals": Vitals,
    "transfers": Transfer,
    "discharges": Discharge,
    "bed-status": BedStatusChange,
    "overrides": Override,
    "page-acks": PageAck,
    "cancellations": Cancellation,
    "swaps": Swap,
}


def raw(payload: Any) -> bytes:
    return orjson.dumps(payload)


def violation(topic: str, payload: Any) -> ContractViolation:
    data = payload if isinstance(payload, (bytes, type(None))) else raw(payload)
    with pytest.raises(ContractViolation) as info:
        decode_event(topic, data)
    return info.value


def with_(topic: str, **changes: Any) -> dict[str, Any]:
    """The topic's example with fields changed; a value of `...` removes the field."""
    event = dict(EXAMPLES[topic])
    for name, value in changes.items():
        if value is ...:
            event.pop(name, None)
        else:
            event[name] = value
    return event


def docs_examples() -> dict[str, Any]:
    """The first ```json block under each `### \\`topic\\`` heading of docs/topics.md."""
    text = DOCS.read_text(encoding="utf-8")
    found = {}
    for match in re.finditer(r"^### `([a-z-]+)`\n(.*?)(?=^### |\Z)", text, re.M | re.S):
        block = re.search(r"```json\n(.*?)```", match.group(2), re.S)
        if block:
            found[match.group(1)] = orjson.loads(block.group(1))
    return found


# --------------------------------------------------------------------------- valid input


def test_input_models_cover_the_contract_topics() -> None:
    assert INPUT_MODELS == MODEL_OF
    assert set(OUTPUT_MODELS) == {"decisions", "dead-letters", "feedback"}


@pytest.mark.parametrize("topic", list(EXAMPLES))
def test_valid_example_decodes(topic: str) -> None:
    event = decode_event(topic, raw(EXAMPLES[topic]))
    assert type(event) is MODEL_OF[topic]
    assert event.event_id == "ev-1"
    assert event.occurred_at == datetime(2026, 11, 24, 8, 15, tzinfo=UTC)


@pytest.mark.parametrize("topic", list(INPUT_MODELS))
def test_docs_example_decodes(topic: str) -> None:
    example = docs_examples()[topic]
    assert type(decode_event(topic, raw(example))) is MODEL_OF[topic]


def test_docs_output_examples_validate_and_dead_letter_message_is_real() -> None:
    examples = docs_examples()
    Decision.model_validate(examples["decisions"])
    letter = DeadLetter.model_validate(examples["dead-letters"])
    actual = violation("vitals", letter.value.encode())
    assert (letter.code, letter.field) == (actual.code, actual.field)
    assert letter.message == actual.message


def test_admission_fields_and_defaults() -> None:
    event = decode_event("admissions", raw(with_("admissions", age=0.5, weight_kg=3)))
    assert isinstance(event, Admission)
    assert event.age == 0.5 and event.weight_kg == 3.0
    assert event.spo2_scale2 is False and event.arrival is None and event.requested_unit is None


def test_strings_are_stripped_and_extra_fields_ignored() -> None:
    payload = with_("admissions", patient_id="  P1 ", sex=" M ", arrival=" walk_in", vendor="x")
    event = decode_event("admissions", raw(payload))
    assert (event.patient_id, event.sex, event.arrival) == ("P1", "M", "walk_in")
    assert not hasattr(event, "vendor")


def test_utf8_bom_is_tolerated() -> None:
    event = decode_event("transfers", b"\xef\xbb\xbf" + raw(EXAMPLES["transfers"]))
    assert event.to_bed_id == "B12"


def test_nulls_mean_absent_for_optional_fields() -> None:
    event = decode_event("vitals", raw(with_("vitals", spo2=None, heart_rate=None)))
    assert event.spo2 is None and event.resp_rate == 22


def test_models_are_frozen() -> None:
    event = decode_event("transfers", raw(EXAMPLES["transfers"]))
    with pytest.raises(ValidationError):
        event.to_bed_id = "other"  # type: ignore[misc]  # deliberately: the model is frozen


def test_override_deliberate_and_other_actions_without_bed() -> None:
    event = decode_event("overrides", raw(with_("overrides", deliberate=True)))
    assert event.deliberate is True
    payload = with_("overrides", action="confirm", bed_id=..., reason="")
    confirm = decode_event("overrides", raw(payload))
    assert confirm.bed_id is None and confirm.deliberate is False


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-24T08:15:00Z", datetime(2026, 11, 24, 8, 15, tzinfo=UTC)),
        ("2026-11-24t08:15:00z", datetime(2026, 11, 24, 8, 15, tzinfo=UTC)),
        (
            "2026-11-24T09:15:00.250+01:00",
            datetime(2026, 11, 24, 9, 15, 0, 250000, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2026-11-24T08:15:00.123456789Z",
            datetime(2026, 11, 24, 8, 15, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_rfc3339_timestamps_with_offset_are_accepted(stamp: str, expected: datetime) -> None:
    event = decode_event("page-acks", raw(with_("page-acks", occurred_at=stamp)))
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-11-24T08:15:00",  # naive
        "2026-11-24",
        "24/11/2026 08:15",
        "2026-13-24T08:15:00Z",
        "2026-11-24T08:15:00+24:00",
        "",
        1795500000,  # epoch seconds: not RFC 3339
        None,
    ],
)
def test_bad_timestamps_are_refused_with_the_offset_rule(stamp: Any) -> None:
    exc = violation("page-acks", with_("page-acks", occurred_at=stamp))
    assert exc.code == "bad_timestamp" and exc.field == "occurred_at"
    assert str(exc) == (
        "page-acks: field 'occurred_at' must be RFC 3339 with a UTC offset, "
        "e.g. 2026-11-24T08:15:00+00:00"
    )


def test_python_construction_needs_an_aware_datetime() -> None:
    fields = {**EXAMPLES["page-acks"], "occurred_at": datetime(2026, 11, 24, 8, 15)}
    with pytest.raises(ValidationError, match="bad_timestamp"):
        PageAck(**fields)
    aware = datetime(2026, 11, 24, 8, 15, tzinfo=UTC)
    assert PageAck(**{**fields, "occurred_at": aware}).occurred_at == aware


# --------------------------------------------------------------------------- error codes


ERROR_CASES: list[tuple[str, Any, str, str | None]] = [
    ("admissions", None, "empty_message", None),
    ("admissions", b"", "empty_message", None),
    ("admissions", b"\xff\xfe{}", "not_utf8", None),
    ("admissions", b'{"event_id": "e1",}', "malformed_json", None),
    ("admissions", [EXAMPLES["admissions"]], "not_an_object", None),
    ("admissions", "just a string", "not_an_object", None),
    ("admissions", with_("admissions", patient_id=...), "missing_field", "patient_id"),
    ("admissions", with_("admissions", event_id=...), "missing_field", "event_id"),
    ("overrides", with_("overrides", bed_id=...), "missing_field", "bed_id"),
    ("overrides", with_("overrides", bed_id=None), "missing_field", "bed_id"),
    ("admissions", with_("admissions", age="42"), "wrong_type", "age"),
    ("admissions", with_("admissions", age=True), "wrong_type", "age"),
    ("admissions", with_("admissions", patient_id=123), "wrong_type", "patient_id"),
    ("admissions", with_("admissions", spo2_scale2="true"), "wrong_type", "spo2_scale2"),
    ("vitals", with_("vitals", on_oxygen=1), "wrong_type", "on_oxygen"),
    ("vitals", with_("vitals", spo2="93"), "wrong_type", "spo2"),
    ("overrides", with_("overrides", deliberate="yes"), "wrong_type", "deliberate"),
    ("admissions", with_("admissions", sex="female"), "invalid_value", "sex"),
    ("admissions", with_("admissions", sex="f"), "invalid_value", "sex"),
    ("admissions", with_("admissions", arrival="helicopter"), "invalid_value", "arrival"),
    ("admissions", with_("admissions", text="   "), "invalid_value", "text"),
    ("admissions", with_("admissions", text="x" * 20_001), "invalid_value", "text"),
    ("admissions", with_("admissions", hospital_id="h" * 101), "invalid_value", "hospital_id"),
    ("admissions", with_("admissions", event_id=""), "invalid_value", "event_id"),
    ("bed-status", with_("bed-status", status="on_fire"), "invalid_value", "status"),
    ("vitals", with_("vitals", consciousness="GCS15"), "invalid_value", "consciousness"),
    ("overrides", with_("overrides", action="delete"), "invalid_value", "action"),
    ("admissions", with_("admissions", age=-1), "out_of_range", "age"),
    ("admissions", with_("admissions", age=126), "out_of_range", "age"),
    ("admissions", with_("admissions", weight_kg=0.1), "out_of_range", "weight_kg"),
    ("vitals", with_("vitals", spo2=140), "out_of_range", "spo2"),
    ("vitals", with_("vitals", temperature_c=98.6), "out_of_range", "temperature_c"),
    ("vitals", with_("vitals", systolic_bp=10), "out_of_range", "systolic_bp"),
    ("vitals", with_("vitals", resp_rate=81), "out_of_range", "resp_rate"),
    ("vitals", with_("vitals", heart_rate=301), "out_of_range", "heart_rate"),
    ("admissions", with_("admissions", occurred_at="today"), "bad_timestamp", "occurred_at"),
    (
        "vitals",
        with_("vitals", resp_rate=..., spo2=None, on_oxygen=...),
        "no_measurement",
        None,
    ),
    ("beds", EXAMPLES["bed-status"], "unknown_topic", None),
    ("wardflow.admissions", EXAMPLES["admissions"], "unknown_topic", None),
]


@pytest.mark.parametrize(("topic", "payload", "code", "field"), ERROR_CASES)
def test_error_codes_and_fields(topic: str, payload: Any, code: str, field: str | None) -> None:
    exc = violation(topic, payload)
    assert exc.code == code and exc.field == field
    assert exc.code in CODES
    assert str(exc) == exc.message and exc.message.strip()
    if field is not None:
        assert f"field '{field}'" in exc.message
    if code != "unknown_topic":
        assert exc.message.startswith(f"{topic}: ")


def test_every_code_is_exercised_by_the_table() -> None:
    assert {row[2] for row in ERROR_CASES} == set(CODES)


def test_messages_say_what_was_expected() -> None:
    assert str(violation("admissions", with_("admissions", age="42"))) == (
        "admissions: field 'age' must be a number of years, got a string"
    )
    assert str(violation("vitals", with_("vitals", spo2=140))) == (
        "vitals: field 'spo2' = 140 is out of range (0 to 100)"
    )
    assert "'F', 'M' or 'X'" in str(violation("admissions", with_("admissions", sex="Q")))
    assert "at least one of resp_rate" in str(
        violation("vitals", with_("vitals", resp_rate=..., spo2=..., on_oxygen=...))
    )
    assert "at line 1, column 18" in str(violation("admissions", b'{"event_id": "e1",}'))
    assert "at line 3, column 9" in str(violation("admissions", b'{\n "a": 1,\n "b": 2 3}'))
    assert "got null" in str(violation("transfers", with_("transfers", to_bed_id=None)))


def test_first_error_in_field_order_and_others_counted() -> None:
    payload = with_("admissions", sex="Q", age="old", hospital_id=..., text="")
    exc = violation("admissions", payload)
    assert (exc.code, exc.field) == ("missing_field", "hospital_id")
    assert exc.message.endswith("(and 3 other problems)")
    one_more = violation("admissions", with_("admissions", sex="Q", age="old"))
    assert one_more.field == "age" and one_more.message.endswith("(and 1 other problem)")


def test_strings_are_never_coerced_to_numbers_or_booleans() -> None:
    for name, value in [("age", "42"), ("age", "42.0"), ("weight_kg", "70")]:
        assert violation("admissions", with_("admissions", **{name: value})).code == "wrong_type"
    assert violation("vitals", with_("vitals", on_oxygen="false")).code == "wrong_type"
    assert violation("vitals", with_("vitals", heart_rate=False)).code == "wrong_type"


def test_ints_are_accepted_for_numbers() -> None:
    event = decode_event("vitals", raw(with_("vitals", spo2=93, temperature_c=37)))
    assert event.spo2 == 93.0 and isinstance(event.temperature_c, float)


# --------------------------------------------------------------------------- privacy


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("admissions", with_("admissions", text=SECRET, age="broken")),
        ("admissions", with_("admissions", text=SECRET, age=-3, sex=SECRET)),
        ("admissions", with_("admissions", text=SECRET * 2_000)),
        ("admissions", with_("admissions", text=SECRET, occurred_at=SECRET)),
        ("admissions", with_("admissions", patient_id=SECRET, encounter_id=7)),
        ("overrides", with_("overrides", reason=SECRET, bed_id=...)),
        ("overrides", with_("overrides", reason=SECRET, action=SECRET)),
        ("discharges", with_("discharges", disposition=SECRET * 100)),
        ("bed-status", with_("bed-status", reason=SECRET, status=SECRET)),
        ("admissions", {**EXAMPLES["admissions"], "age": "x", SECRET: SECRET}),
        ("admissions", b'{"text": "' + SECRET.encode() + b'", bad}'),
        ("admissions", b'{"text": "' + SECRET.encode() + b'\xff"}'),
        ("admissions", SECRET),
    ],
)
def test_no_input_string_ever_appears_in_a_message(topic: str, payload: Any) -> None:
    exc = violation(topic, payload)
    assert SECRET not in exc.message and SECRET not in repr(exc)
    assert exc.field is None or SECRET not in exc.field


def test_pydantic_errors_from_direct_construction_hide_the_input() -> None:
    with pytest.raises(ValidationError) as info:
        Override(**with_("overrides", reason=SECRET, bed_id=...))
    assert SECRET not in str(info.value)


# --------------------------------------------------------------------------- dead letters


def test_dead_letter_payload_keeps_text_or_base64() -> None:
    assert dead_letter_payload(b'{"a": "\xc3\xa9"}') == ('{"a": "\u00e9"}', "utf-8")
    assert dead_letter_payload(None) == (None, "utf-8")
    assert dead_letter_payload(b"") == ("", "utf-8")
    text, encoding = dead_letter_payload(b"\xff\x00abc")
    assert encoding == "base64" and base64.b64decode(text) == b"\xff\x00abc"


def test_make_dead_letter_from_a_violation() -> None:
    value = b"\xfe" + raw(EXAMPLES["vitals"])
    exc = violation("vitals", value)
    received = datetime(2026, 11, 24, 8, 16, tzinfo=UTC)
    letter = make_dead_letter("wardflow.vitals", 2, 41, b"h1", value, exc, received)
    assert (letter.code, letter.field) == ("not_utf8", None)
    assert (letter.key, letter.key_encoding) == ("h1", "utf-8")
    assert letter.value_encoding == "base64" and base64.b64decode(letter.value) == value
    out = orjson.loads(encode_output(letter))
    assert out["received_at"] == "2026-11-24T08:16:00Z" and "field" not in out


# --------------------------------------------------------------------------- outputs


def decision(**changes: Any) -> Decision:
    fields: dict[str, Any] = {
        "decision_id": "dec-1",
        "kind": "assignment",
        "hospital_id": "h1",
        "created_at": datetime(2026, 11, 24, 9, 15, tzinfo=timezone(timedelta(hours=1))),
        "caused_by": "ev-1",
        "patient_id": "P1",
        "bed_id": "B12",
        "prediction": PredictionOut(
            target_unit="ORTHO",
            unit_probs={"ORTHO": 0.9, "MEDICINE": 0.1},
            acuity=2,
            acuity_probs={"2": 0.8, "3": 0.2},
            needs=["telemetry"],
            need_probs={"telemetry": 0.7, "bariatric": 0.01},
            uncertain=False,
            model_version="m1",
        ),
        "reasons": [ReasonOut(code="bed_clean", text="B12 is clean.")],
        "details": {"b": 1, "a": [1, 2]},
    }
    fields.update(changes)
    return Decision(**fields)


def test_encode_output_is_deterministic_and_canonical() -> None:
    first = encode_output(decision())
    assert first == encode_output(decision())
    reordered = decision(details={"a": [1, 2], "b": 1})
    assert encode_output(reordered) == first
    assert first.startswith(b'{"bed_id":"B12","caused_by"')


def test_encode_output_writes_offsets_and_no_nulls() -> None:
    out = orjson.loads(encode_output(decision()))
    assert out["created_at"] == "2026-11-24T09:15:00+01:00"
    assert "unit" not in out and "page_id" not in out and None not in out.values()
    assert Decision.model_validate(out) == decision()


def test_outputs_refuse_naive_times_and_empty_reasons() -> None:
    with pytest.raises(ValidationError):
        decision(created_at=datetime(2026, 11, 24, 9, 15))
    with pytest.raises(ValidationError):
        decision(reasons=[])
    with pytest.raises(ValidationError):
        decision(kind="guess")


# --------------------------------------------------------------------------- docs


def test_docs_name_every_field_and_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for model in [*INPUT_MODELS.values(), *OUTPUT_MODELS.values(), PredictionOut]:
        for name in model.model_fields:
            assert f"`{name}`" in text, f"{model.__name__}.{name} is not documented"
    for code in CODES:
        assert f"| `{code}` |" in text, code
    for topic in [*INPUT_MODELS, *OUTPUT_MODELS]:
        assert f"### `{topic}`" in text
