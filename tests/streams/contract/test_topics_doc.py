"""docs/topics.md says what the code does: every dead-letter code and decision kind, no more, no less."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from streams.contract.models import DecisionKind
from streams.contract.validation import CODES
from streams.pipeline.processor import STATE_CODES

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "topics.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def documented_codes() -> set[str]:
    return set(re.findall(r"^\| `([a-z_0-9]+)` \|", _section("## Dead-letter codes"), re.M))


def codes_in_source() -> set[str]:
    """Every code the streams package dead-letters with, read from the source itself."""
    found: set[str] = set()
    patterns = [r"EventRejected\(\s*\"([a-z_]+)\"", r"_dead_letter\(\s*msg,\s*\"([a-z_]+)\"",
                r"ContractViolation\(\s*\"([a-z_]+)\"", r"PredictionFailed\([^)]*code=\"([a-z_]+)\""]
    for path in (ROOT / "streams").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            found.update(re.findall(pattern, text, re.S))
    return found


def test_every_dead_letter_code_is_documented_and_every_documented_one_exists():
    known = set(CODES) | set(STATE_CODES)
    assert len(known) == len(CODES) + len(STATE_CODES), "a code is listed twice"
    assert documented_codes() == known


def test_the_code_lists_hold_every_code_the_source_uses():
    used = codes_in_source()
    assert used, "the source scan found nothing: the patterns are stale"
    assert used - set(CODES) - set(STATE_CODES) == set()
    # and pydantic's own error types all map to listed codes
    from streams.contract.validation import _CODE_BY_TYPE
    assert set(_CODE_BY_TYPE.values()) <= set(CODES)


def test_every_decision_kind_is_documented():
    kinds = set(typing.get_args(DecisionKind))
    row = next(line for line in _section("### `decisions`").splitlines() if line.startswith("| `kind` |"))
    assert set(re.findall(r"`([a-z_0-9]+)`", row.split("|")[4])) == kinds


def test_internal_phi_topics_are_documented():
    section = _section("## Internal topics (PHI)")
    for name in ("ordered", "journal-changelog", "texts-changelog"):
        assert name in section


def _examples() -> dict[str, dict]:
    """The JSON example of each input topic in the document."""
    from streams.contract.models import INPUT_MODELS

    out = {}
    for topic in INPUT_MODELS:
        block = _section(f"### `{topic}`").split("```json", 1)[1].split("```", 1)[0]
        out[topic] = __import__("orjson").loads(block)
    return out


def test_documented_examples_are_valid_and_every_optional_field_accepts_null():
    import orjson

    from streams.contract.models import INPUT_MODELS, MEASUREMENTS
    from streams.contract.validation import decode_event

    for topic, example in _examples().items():
        model = INPUT_MODELS[topic]
        decode_event(topic, orjson.dumps(example))
        for name, info in model.model_fields.items():
            if info.is_required() or (topic, name) in (("overrides", "bed_id"), ("cancellations", "bed_id")) or (
                    topic == "vitals" and name in MEASUREMENTS and name in example
                    and sum(k in example for k in MEASUREMENTS) == 1):
                continue
            event = decode_event(topic, orjson.dumps({**example, name: None}))
            assert getattr(event, name) in (None, False), (topic, name)
    # bed_id may be null too, when the action needs none
    decode_event("overrides", orjson.dumps({**_examples()["overrides"], "action": "confirm", "bed_id": None}))
