"""Typed Faust records: the values kept in the worker's tables (and their changelogs).

Input and output messages are validated by the pydantic contract (`streams.contract.models`); these
records are the worker's own state, small and flat so a changelog entry stays cheap.
"""

from __future__ import annotations

from typing import Any

import faust

from streams.contract.models import PredictionOut


class BedState(faust.Record, serializer="json"):  # type: ignore[call-arg]  # a Faust class option; faust is untyped here
    """One bed: `available` (clean, empty), `occupied`, `held`, `dirty`, `cleaning`, `blocked`, `closed`."""

    status: str
    since: str  # RFC 3339: when the bed entered this status (event time)
    encounter_id: str | None = None
    occupant_sex: str | None = None
    reason: str | None = None


class EncounterState(faust.Record, serializer="json"):  # type: ignore[call-arg]  # a Faust class option; faust is untyped here
    """One patient's stay: where they are and what is known about them (no free text kept)."""

    encounter_id: str
    patient_id: str
    age: float
    sex: str
    admitted_at: str
    status: str  # awaiting_confirmation | waiting | placed | discharged
    needs: list = []
    target_unit: str | None = None
    unit_source: str | None = None  # requested | model
    bed_id: str | None = None
    unit: str | None = None
    waiting_since: str | None = None
    spo2_scale2: bool = False
    weight_kg: float | None = None
    prediction: dict | None = None  # the model's `PredictionOut` as the changelog stores it: read it with `predicted()`
    hold_until: str | None = None  # a proposed bed is held for confirmation until then

    def predicted(self) -> PredictionOut | None:
        """The prediction that placed this patient, typed (it was stored from a validated `PredictionOut`)."""
        return None if self.prediction is None else PredictionOut.model_validate(self.prediction)

    @property
    def acuity(self) -> int | None:
        """The predicted ESI level (1-5), or None without a prediction: read often (every matching), so not re-validated."""
        value = (self.prediction or {}).get("acuity")
        return value if isinstance(value, int) and 1 <= value <= 5 else None

    @property
    def model_version(self) -> str | None:
        return (self.prediction or {}).get("model_version")

    @property
    def unit_probability(self) -> float | None:
        """The model's probability of the target unit, when the model chose it."""
        if self.unit_source != "model" or not self.prediction:
            return None
        value = self.prediction.get("unit_probs", {}).get(self.target_unit or "")
        return float(value) if isinstance(value, (int, float)) else None


class UnitCensus(faust.Record, serializer="json"):  # type: ignore[call-arg]  # a Faust class option; faust is untyped here
    """Beds of one unit by status, recomputed from the beds table whenever one of them changes."""

    unit: str
    total: int
    by_status: dict = {}

    @property
    def occupancy(self) -> float:
        taken = sum(v for k, v in self.by_status.items() if k in ("occupied", "held"))
        return taken / self.total if self.total else 0.0


class DedupeBucket(faust.Record, serializer="json"):  # type: ignore[call-arg]  # a Faust class option; faust is untyped here
    """Event ids first seen within one hour of event time: lets old ids be forgotten in bulk."""

    event_ids: list = []


class DedupeMeta(faust.Record, serializer="json"):  # type: ignore[call-arg]  # a Faust class option; faust is untyped here
    """Per hospital: newest event time seen and the oldest bucket still remembered."""

    high_water: str
    oldest_bucket: int


def record_to_dict(record: faust.Record) -> dict[str, Any]:
    return record.asdict()
