"""Published JSON Schemas: one per topic, complete, and agreeing with `decode_event`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.contract.models import INPUT_MODELS, OUTPUT_MODELS, DeadLetter, encode_output
from streams.contract.schemas import topic_schemas, write_schemas
from streams.contract.validation import ContractViolation, decode_event, make_dead_letter
from tests.streams.contract.test_contract import ERROR_CASES, EXAMPLES, decision, docs_examples

TOPICS = [*INPUT_MODELS, *OUTPUT_MODELS]
REFUSED = [(t, p) for t, p, _, _ in ERROR_CASES if t in INPUT_MODELS and isinstance(p, dict)]


def required_of(model: Any) -> set[str]:
    return {name for name, info in model.model_fields.items() if info.is_required()}


def test_write_schemas_writes_one_valid_file_per_topic(tmp_path: Path) -> None:
    paths = write_schemas(tmp_path / "out")
    assert len(paths) == len(TOPICS) == 12
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"wardflow.{topic}.schema.json" for topic in TOPICS
    )
    for topic, path in zip(TOPICS, paths, strict=True):
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(f"wardflow.{topic}")
        assert schema["title"] == f"wardflow.{topic}"
        assert "hospital_id" in schema["description"] and "Kafka key" in schema["description"]
        model = {**INPUT_MODELS, **OUTPUT_MODELS}[topic]
        assert set(schema["required"]) >= required_of(model)
        assert set(schema["properties"]) == set(model.model_fields)


def test_write_schemas_is_byte_stable_and_honours_the_prefix(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_schemas(tmp_path / "a")]
    assert first == [p.read_bytes() for p in write_schemas(tmp_path / "a")]
    assert {p.name for p in write_schemas(tmp_path / "b", prefix="test.")} == {
        f"test.{topic}.schema.json" for topic in TOPICS
    }
    assert set(topic_schemas("")) == set(TOPICS)


def test_schema_expresses_types_enums_ranges_and_times() -> None:
    schemas = topic_schemas()
    admission = schemas["wardflow.admissions"]["properties"]
    assert admission["sex"]["enum"] == ["F", "M", "X"]
    assert (admission["age"]["type"], admission["age"]["minimum"], admission["age"]["maximum"]) == (
        "number",
        0,
        125,
    )
    assert admission["occurred_at"]["format"] == "date-time"
    assert admission["text"]["maxLength"] == 20_000
    vitals = schemas["wardflow.vitals"]
    assert vitals["properties"]["spo2"]["anyOf"][0]["maximum"] == 100
    assert len(vitals["anyOf"]) == 7
    overrides = schemas["wardflow.overrides"]
    assert overrides["if"]["properties"]["action"]["const"] == "reassign"
    assert overrides["then"]["required"] == ["bed_id"]
    decisions = schemas["wardflow.decisions"]
    assert "null" not in json.dumps(decisions["properties"])  # outputs never carry null
    assert decisions["properties"]["reasons"]["minItems"] == 1


# --------------------------------------------------------------------------- with jsonschema


@pytest.fixture(scope="module")
def validators() -> dict[str, Any]:
    jsonschema = pytest.importorskip("jsonschema")
    found = {}
    for topic, schema in topic_schemas("").items():
        jsonschema.Draft202012Validator.check_schema(schema)
        found[topic] = jsonschema.Draft202012Validator(schema)
    return found


@pytest.mark.parametrize("topic", list(INPUT_MODELS))
def test_examples_validate_against_schemas(validators: dict[str, Any], topic: str) -> None:
    validators[topic].validate(EXAMPLES[topic])
    validators[topic].validate(docs_examples()[topic])


def test_outputs_validate_against_schemas(validators: dict[str, Any]) -> None:
    validators["decisions"].validate(orjson.loads(encode_output(decision())))
    validators["decisions"].validate(docs_examples()["decisions"])
    validators["dead-letters"].validate(docs_examples()["dead-letters"])
    with pytest.raises(ContractViolation) as info:
        decode_event("vitals", b"\xff")
    letter = make_dead_letter("wardflow.vitals", 0, 1, None, b"\xff", info.value)
    assert isinstance(letter, DeadLetter)
    validators["dead-letters"].validate(orjson.loads(encode_output(letter)))


@pytest.mark.parametrize(
    ("topic", "payload"),
    REFUSED,
)
def test_schema_refuses_what_decode_event_refuses(
    validators: dict[str, Any], topic: str, payload: dict[str, Any]
) -> None:
    assert not validators[topic].is_valid(payload)


@pytest.mark.parametrize(
    ("topic", "changes"),
    [
        ("admissions", {"occurred_at": "2026-11-24T08:15:00"}),
        ("overrides", {"action": "reassign", "bed_id": None}),
        ("vitals", {"resp_rate": None, "spo2": None, "on_oxygen": None}),
    ],
)
def test_schema_expresses_the_cross_field_rules(
    validators: dict[str, Any], topic: str, changes: dict[str, Any]
) -> None:
    payload = {**EXAMPLES[topic], **changes}
    assert not validators[topic].is_valid(payload)
    with pytest.raises(ContractViolation):
        decode_event(topic, orjson.dumps(payload))
