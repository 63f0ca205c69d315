"""The triage model's contract, shared by the worker, the simulator and the serving code.

Deliberately free of heavy imports: only the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class TriageRequest:
    """One arrival to triage: free text plus age in years (0.5 = six months) and sex F/M/X."""

    id: str
    text: str
    age: float
    sex: str


@dataclass(frozen=True)
class Reason:
    """Why the served prediction differs from the model's argmax (a safety floor, a consistency rule, the
    cost of under-triage). Numbers only, never the note's words."""

    code: str
    text: str

    def to_dict(self) -> dict:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True)
class TriagePrediction:
    """Calibrated prediction for one request; every probability is after temperature scaling.

    `target_unit`, `acuity`, `needs` and `uncertain` are the decoded, safety-checked values
    (`inference.decoding`); the probabilities are the model's own; `reasons` say what changed."""

    id: str
    target_unit: str
    unit_probs: dict[str, float]
    acuity: int
    acuity_probs: dict[str, float]  # keys "1".."5"
    needs: tuple[str, ...]
    need_probs: dict[str, float]
    uncertain: bool
    model_version: str
    reasons: tuple[Reason, ...] = ()

    def to_dict(self) -> dict:
        return {
            "id": self.id, "target_unit": self.target_unit, "unit_probs": dict(self.unit_probs),
            "acuity": self.acuity, "acuity_probs": dict(self.acuity_probs), "needs": list(self.needs),
            "need_probs": dict(self.need_probs), "uncertain": self.uncertain,
            "model_version": self.model_version, "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True)
class PredictionFailed:
    """A request that could not be predicted; `message` names the field, never contains the text."""

    id: str
    code: str
    message: str

    def to_dict(self) -> dict:
        return {"id": self.id, "error": {"code": self.code, "message": self.message}}


@runtime_checkable
class TriageModel(Protocol):
    model_version: str

    def predict_batch(self, requests: Sequence[TriageRequest]) -> list[TriagePrediction | PredictionFailed]:
        """Predictions aligned with `requests`; one bad request never fails its neighbours."""
        ...


VALID_SEXES = ("F", "M", "X")
MAX_AGE = 125.0


def validate_request(req: object) -> PredictionFailed | None:
    """Check one request's fields; a PredictionFailed naming the field, or None when usable."""
    rid = getattr(req, "id", None)
    rid_s = str(rid) if rid is not None else ""
    if not isinstance(rid, str) or not rid:
        return PredictionFailed(rid_s, "invalid_id", "field 'id' must be a non-empty string")
    text = getattr(req, "text", None)
    if not isinstance(text, str):
        return PredictionFailed(rid, "invalid_text", "field 'text' must be a string")
    if not text.strip():
        return PredictionFailed(rid, "empty_text", "field 'text' is empty")
    age = getattr(req, "age", None)
    if isinstance(age, bool) or not isinstance(age, (int, float)) or age != age:
        return PredictionFailed(rid, "invalid_age", "field 'age' must be a number of years")
    if age < 0 or age > MAX_AGE:
        return PredictionFailed(rid, "invalid_age", f"field 'age' must be between 0 and {MAX_AGE:g}")
    sex = getattr(req, "sex", None)
    if sex not in VALID_SEXES:
        return PredictionFailed(rid, "invalid_sex", "field 'sex' must be one of F, M, X")
    return None
