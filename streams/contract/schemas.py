"""JSON Schema (draft 2020-12) for every contract topic, generated from the models.

Generated, not hand-written, so the published schema cannot drift from what the worker
enforces. Rules pydantic cannot express (a vitals event needs one measurement, a reassign
needs a bed) are added here as `anyOf` / `if`-`then`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from streams.contract.models import INPUT_MODELS, MEASUREMENTS, OUTPUT_MODELS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
CONTRACT_VERSION = 1

_KEY = "Kafka key: the hospital_id (UTF-8), so all of one hospital's events share a partition."
_DEAD_LETTER_KEY = (
    "Kafka key: the failed message's own key, which the contract makes the hospital_id."
)
_VALUE = "Value: one JSON object, UTF-8."


def topic_schemas(prefix: str = "wardflow.") -> dict[str, dict]:
    """Full topic name -> JSON Schema, inputs first, in contract order."""
    schemas: dict[str, dict] = {}
    for name, model in INPUT_MODELS.items():
        schema = _base(prefix + name, model, mode="validation", key=_KEY)
        schema["description"] += (
            " Every input carries event_id (the idempotency key: a repeat is a no-op), "
            "hospital_id and occurred_at. Extra fields are allowed and ignored."
        )
        schemas[prefix + name] = schema
    for name, out_model in OUTPUT_MODELS.items():
        key = _DEAD_LETTER_KEY if name == "dead-letters" else _KEY
        schema = _base(prefix + name, out_model, mode="serialization", key=key)
        _drop_nulls(schema)  # outputs are written without nulls (exclude_none)
        schemas[prefix + name] = schema
    _add_rules(schemas, prefix)
    return schemas


def write_schemas(out_dir: Path, prefix: str = "wardflow.") -> list[Path]:
    """Write `<full topic name>.schema.json` per topic; byte-stable for a given contract."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic, schema in topic_schemas(prefix).items():
        path = out_dir / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _base(topic: str, model: type[BaseModel], mode: Literal["validation", "serialization"], key: str) -> dict[str, Any]:
    body = model.model_json_schema(mode=mode)
    doc = " ".join((model.__doc__ or "").split())
    head = {
        "$schema": DIALECT,
        "$id": f"urn:wardflow:contract:v{CONTRACT_VERSION}:{topic}",
        "title": topic,
        "description": f"{doc} {key} {_VALUE}".strip(),
    }
    body.pop("title", None)
    body.pop("description", None)
    return {**head, **body}


def _add_rules(schemas: dict[str, dict], prefix: str) -> None:
    """Cross-field rules the models check in validators."""
    vitals = schemas[prefix + "vitals"]
    vitals["anyOf"] = [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in MEASUREMENTS
    ]
    vitals["description"] += " At least one measurement must be present and not null."
    overrides = schemas[prefix + "overrides"]
    overrides["if"] = {"properties": {"action": {"const": "reassign"}}, "required": ["action"]}
    overrides["then"] = {
        "required": ["bed_id"],
        "properties": {"bed_id": {"type": "string", "minLength": 1}},
    }
    overrides["description"] += " bed_id is required when action is 'reassign'."


def _drop_nulls(node: Any) -> None:
    """Turn `anyOf: [X, {type: null}]` into X, and drop `default: null`, in place."""
    if isinstance(node, list):
        for item in node:
            _drop_nulls(item)
        return
    if not isinstance(node, dict):
        return
    options = node.get("anyOf")
    if isinstance(options, list):
        kept = [opt for opt in options if opt != {"type": "null"}]
        if len(kept) == 1 and len(kept) < len(options):
            del node["anyOf"]
            node.update(kept[0])
    if "default" in node and node["default"] is None:
        del node["default"]
    for value in node.values():
        _drop_nulls(value)
