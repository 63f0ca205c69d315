"""Labels the hospital gives back: clinician overrides and early transfers, as training records.

Why the free text is in the record: the model learns from (text, age, sex) -> label, and a
correction without the text it corrects teaches nothing. Carrying it here, rather than joining
it back later from the inputs, keeps the record self-contained; the price is that the
feedback topic holds clinical text (PHI) and must be restricted exactly like the input topics
(same ACLs, retention and encryption), never like the decision or metrics topics.

A record is written only when the label it carries is known:
* an override confirms the proposed unit's label, or reassigns to a unit that serves the
  patient's label (label confirmed) or to a unit outside the label's units and overflow that
  serves exactly one other label (label corrected);
* a transfer within `transfer_correction_hours` of admission to a unit that serves exactly
  one label other than the patient's corrects it (early transfers are how a wrong first
  placement shows).
A move onto one of the label's own overflow units says nothing about the label (outlying under
bed pressure is exactly what those units are for), and a reject says the bed was wrong, not the
label, so neither writes a record. The record's `needs` and `acuity` are those recorded for the
patient: neither path corrects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from allocator.hospital import Hospital, Unit
from allocator.overrides import OverrideOutcome
from allocator.placement import candidate_units

__all__ = ["FeedbackRecord", "LabelledCase", "feedback_from_override", "feedback_from_transfer"]

Source = Literal["override", "transfer"]


@dataclass(frozen=True)
class LabelledCase:
    """What the model was asked about one encounter and what it (or a person) answered."""

    encounter_id: str
    text: str  # the arrival's free text (PHI)
    age: float
    sex: str
    target_unit: str  # the label the first placement used
    acuity: int | None
    needs: frozenset[str]


@dataclass(frozen=True)
class FeedbackRecord:
    encounter_id: str
    text: str
    age: float
    sex: str
    target_unit: str  # the label the hospital's action says is right
    acuity: int | None
    needs: tuple[str, ...]  # sorted
    source: Source
    who: str  # the clinician who overrode, or who (or which system) recorded the transfer
    at: datetime
    previous_target_unit: str  # the label the first placement used
    corrected: bool  # target_unit differs from previous_target_unit

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `at` as RFC 3339, needs as a sorted list."""
        return {
            "encounter_id": self.encounter_id, "text": self.text, "age": self.age, "sex": self.sex,
            "target_unit": self.target_unit, "acuity": self.acuity, "needs": list(self.needs),
            "source": self.source, "who": self.who, "at": self.at.isoformat(),
            "previous_target_unit": self.previous_target_unit, "corrected": self.corrected,
        }


def feedback_from_override(
    case: LabelledCase, outcome: OverrideOutcome, hospital: Hospital, *, clinician_id: str, at: datetime
) -> FeedbackRecord | None:
    """The label an applied confirm or reassign vouches for, or None when it vouches for none."""
    if not outcome.applied or outcome.new_unit is None:
        return None  # refused, unauthorized, or a reject (the bed was wrong, not necessarily the label)
    label = _label_of_move(hospital, case.target_unit, hospital.unit(outcome.new_unit))
    if label is None:
        return None
    return _record(case, label, "override", clinician_id, at)


def feedback_from_transfer(
    case: LabelledCase, hospital: Hospital, *, to_bed_id: str, admitted_at: datetime, at: datetime, who: str,
) -> FeedbackRecord | None:
    """A correction when the transfer moves the patient, early, to another label's unit; else None."""
    bed = hospital.bed(to_bed_id)
    if bed is None:
        raise ValueError(f"{to_bed_id!r} is not a bed of {hospital.hospital_id}")
    elapsed = at - admitted_at
    if elapsed < timedelta(0) or elapsed > timedelta(hours=hospital.allocation.transfer_correction_hours):
        return None
    label = _label_of_move(hospital, case.target_unit, hospital.unit(bed.unit))
    if label is None or label == case.target_unit:
        return None  # a move within the label's units (or an ambiguous one) corrects nothing
    return _record(case, label, "transfer", who, at)


def _label_of_move(hospital: Hospital, label: str, unit: Unit) -> str | None:
    """The label a move onto `unit` implies: `label` itself, another single label, or None if unclear."""
    if label in unit.serves:
        return label
    if unit.code in {u.code for u in candidate_units(hospital, label)}:
        return None  # an overflow unit of the label: outlying, not a relabelling
    if len(unit.serves) != 1:
        return None  # serves nothing (a step-down unit) or several labels: cannot tell which
    return unit.serves[0]


def _record(case: LabelledCase, label: str, source: Source, who: str, at: datetime) -> FeedbackRecord:
    return FeedbackRecord(
        encounter_id=case.encounter_id, text=case.text, age=case.age, sex=case.sex, target_unit=label,
        acuity=case.acuity, needs=tuple(sorted(case.needs)), source=source, who=who, at=at,
        previous_target_unit=case.target_unit, corrected=label != case.target_unit,
    )
