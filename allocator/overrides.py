"""A clinician's answer to a proposed bed (confirm, reassign, reject), checked before anything moves.

Pure: the caller passes the proposal, the patient and the bed snapshot, and applies the outcome.
Only clinicians the hospital lists may override (anyone else is `unauthorized`, which the
caller dead-letters). A reassignment is checked against every hard constraint with the same
breach checker that referees the matching; a breach is refused unless the clinician marked the
override `deliberate`, and then it is applied with the breaches recorded, because a clinician
at the bedside may know what the rules cannot. A bed that is not free is always refused: that
is not a judgement call but a collision with another patient or with housekeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from allocator.hospital import Hospital
from allocator.overlay import with_changes
from allocator.placement import AVAILABLE, Assignment, BedSnapshot, PatientToPlace, Reason, hard_breaches, unit_label

__all__ = ["ACTIONS", "Action", "OverrideOutcome", "check_override"]

Action = Literal["confirm", "reassign", "reject"]
ACTIONS: tuple[str, ...] = ("confirm", "reassign", "reject")
_HELD = "held"


@dataclass(frozen=True)
class OverrideOutcome:
    """What to do with an override.

    `code`: confirmed | reassigned | reassigned_with_breaches | rejected (applied), or
    unauthorized | nothing_to_confirm | nothing_to_reject | bed_required | unknown_bed |
    bed_unavailable | breach_refused (not applied). `breaches` lists every hard constraint the
    new bed breaks: the refusal's grounds, or, when deliberate, what the record must keep.
    """

    applied: bool
    code: str
    reasons: list[Reason]
    breaches: list[Reason] = field(default_factory=list)
    new_bed_id: str | None = None
    new_unit: str | None = None


def check_override(
    action: Action,
    clinician_id: str,
    hospital: Hospital,
    *,
    proposed: Assignment | None,
    patient: PatientToPlace,
    bed_id: str | None,
    beds: Mapping[str, BedSnapshot],
    deliberate: bool = False,
) -> OverrideOutcome:
    """Whether the override may be applied, and with what bed.

    `proposed` is the bed the allocator proposed (held for this patient in `beds`, which is why
    that bed may show as 'held'), or None when there is no open proposal.
    """
    if clinician_id not in hospital.clinicians:
        return _refused("unauthorized", f"{clinician_id!r} is not on {hospital.name}'s list of clinicians who may "
                                        f"override a placement.")
    if action == "confirm":
        return _confirm(clinician_id, hospital, proposed, beds)
    if action == "reject":
        if proposed is None:
            return _refused("nothing_to_reject", "There is no proposed bed to reject.")
        return OverrideOutcome(True, "rejected", [Reason("rejected", f"{clinician_id} rejected bed {proposed.bed_id}; "
                                                                     f"the patient goes back on the waiting list.")])
    if action == "reassign":
        return _reassign(clinician_id, hospital, proposed, patient, bed_id, beds, deliberate)
    raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")


def _confirm(clinician_id: str, hospital: Hospital, proposed: Assignment | None,
             beds: Mapping[str, BedSnapshot]) -> OverrideOutcome:
    if proposed is None:
        return _refused("nothing_to_confirm", "There is no proposed bed to confirm.")
    if (why := _unavailable(proposed.bed_id, beds, proposed)) is not None:
        return _refused("bed_unavailable", why)
    unit = hospital.unit(proposed.unit)
    return OverrideOutcome(True, "confirmed", [Reason("confirmed", f"{clinician_id} confirmed bed {proposed.bed_id} on "
                                                                   f"{unit_label(unit)}.")],
                           new_bed_id=proposed.bed_id, new_unit=proposed.unit)


def _reassign(
    clinician_id: str,
    hospital: Hospital,
    proposed: Assignment | None,
    patient: PatientToPlace,
    bed_id: str | None,
    beds: Mapping[str, BedSnapshot],
    deliberate: bool,
) -> OverrideOutcome:
    if bed_id is None:
        return _refused("bed_required", "A reassignment must name the bed it moves the patient to.")
    bed = hospital.bed(bed_id)
    if bed is None:
        return _refused("unknown_bed", f"Bed {bed_id} is not a bed of {hospital.name}.")
    if (why := _unavailable(bed_id, beds, proposed)) is not None:
        return _refused("bed_unavailable", why)
    # The patient's own hold is released by the move, so it must not count as a room-mate.
    if proposed is not None and proposed.bed_id != bed_id:
        beds = with_changes(beds, {proposed.bed_id: BedSnapshot(AVAILABLE)})
    breaches = hard_breaches(patient, bed, hospital, beds)
    unit = hospital.unit(bed.unit)
    where = f"bed {bed_id} on {unit_label(unit)}"
    if breaches and not deliberate:
        return OverrideOutcome(False, "breach_refused",
                               [Reason("breach_refused", f"Moving the patient to {where} breaks {len(breaches)} hard "
                                                         f"rule{'s' if len(breaches) != 1 else ''}; resend it marked "
                                                         f"deliberate to override them.")],
                               breaches=breaches)
    if breaches:
        return OverrideOutcome(True, "reassigned_with_breaches",
                               [Reason("deliberate_breach", f"{clinician_id} deliberately moved the patient to {where} "
                                                            f"against {len(breaches)} hard rule"
                                                            f"{'s' if len(breaches) != 1 else ''}, recorded below.")],
                               breaches=breaches, new_bed_id=bed_id, new_unit=bed.unit)
    return OverrideOutcome(True, "reassigned", [Reason("reassigned", f"{clinician_id} moved the patient to {where}, "
                                                                     f"which meets every hard rule.")],
                           new_bed_id=bed_id, new_unit=bed.unit)


def _unavailable(bed_id: str, beds: Mapping[str, BedSnapshot], proposed: Assignment | None) -> str | None:
    """Why the bed cannot take the patient now, or None: free, or the proposal's own hold."""
    snap = beds.get(bed_id)
    if snap is None or snap.status == AVAILABLE:
        return None
    if snap.status == _HELD and proposed is not None and proposed.bed_id == bed_id:
        return None
    return f"Bed {bed_id} is {snap.status}, not free; an override cannot put a patient in it."


def _refused(code: str, text: str) -> OverrideOutcome:
    return OverrideOutcome(False, code, [Reason(code, text)])
