"""What each input event does to a hospital's state, and which decisions it causes.

Pure functions over `HospitalState` (tables behind an interface) and the allocator: no
Faust, no Kafka, no clock. An event that cannot be applied raises `EventRejected`; the
processor then dead-letters it and discards the staged writes, so nothing half-applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from allocator.feedback import LabelledCase, feedback_from_override, feedback_from_transfer
from allocator.matching import Policy, assign
from allocator.overrides import check_override
from allocator.placement import Assignment, BedSnapshot, NoBed, PatientToPlace
from allocator.waiting import WaitingPatient
from streams.contract.models import (
    Admission,
    BedStatusChange,
    Cancellation,
    Discharge,
    InputEvent,
    Override,
    PageAck,
    PredictionOut,
    ReasonOut,
    Swap,
    Transfer,
    Vitals,
)
from streams.exceptions import EventRejected
from streams.state import capacity, clinical, windowed
from streams.state.clinical import ClinicalConfig
from streams.state.decisions import DecisionLog
from streams.state.records import BedState, EncounterState
from streams.state.tables import AVAILABLE, HospitalState
from streams.state.windowed import WindowConfig

BARIATRIC_WEIGHT_KG = 150.0  # the taxonomy's bariatric threshold, applied to the structured weight field

# Bed-status events from the contract and the bed status they set.
_BED_STATUS_FROM_EVENT = {"clean": AVAILABLE, "dirty": "dirty", "cleaning": "cleaning", "blocked": "blocked", "closed": "closed"}


@dataclass(frozen=True)
class HandlerContext:
    """What handlers need beyond state: kept explicit so tests can vary it."""

    model_available: bool = False
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)
    hold: timedelta = timedelta(minutes=30)  # how long a proposed bed waits for a clinician's confirmation
    windows: WindowConfig = field(default_factory=WindowConfig)  # arrivals, pages, occupancy over time
    policy: Policy = "optimal"  # everyone waiting matched together; "greedy" is v1's first come, first fit


def _ts(event: InputEvent) -> str:
    return event.occurred_at.isoformat()


def _log(event: InputEvent) -> DecisionLog:
    return DecisionLog(event.hospital_id, event.event_id, event.occurred_at)


def _resolve_requested_unit(state: HospitalState, requested: str) -> str:
    """The EHR may request a unit by its code or by a target_unit label; return the label."""
    hospital = state.hospital
    try:
        unit = hospital.unit(requested)
    except KeyError:
        unit = None
    if unit is not None:
        return unit.serves[0]
    if hospital.units_serving(requested):
        return requested
    raise EventRejected(
        "unknown_unit", "requested_unit",
        "admissions: field 'requested_unit' names no unit code or service label of this hospital",
    )


def _open_encounter(state: HospitalState, topic: str, patient_id: str, encounter_id: str) -> EncounterState:
    """The encounter an event refers to, which must be open and belong to the event's patient."""
    enc = state.encounter(encounter_id)
    if enc is None or enc.status == "discharged":
        raise EventRejected(
            "unknown_encounter", "encounter_id",
            f"{topic}: field 'encounter_id' refers to no open encounter (never admitted or already discharged)",
        )
    if enc.patient_id != patient_id:
        raise EventRejected(
            "patient_mismatch", "patient_id",
            f"{topic}: field 'patient_id' is not the patient of this encounter",
        )
    return enc


def _patient(enc: EncounterState) -> PatientToPlace:
    return PatientToPlace(encounter_id=enc.encounter_id, age=enc.age, sex=enc.sex,
                          target_unit=enc.target_unit or "", needs=frozenset(enc.needs))


def _case(state: HospitalState, enc: EncounterState) -> LabelledCase | None:
    """What the model (or the EHR's request) said about this encounter, with its text, for feedback."""
    text = state.text(enc.encounter_id)
    if not text:
        return None
    return LabelledCase(encounter_id=enc.encounter_id, text=text, age=enc.age, sex=enc.sex,
                        target_unit=enc.target_unit or "", acuity=enc.acuity, needs=frozenset(enc.needs))


def _occupy(state: HospitalState, bed_id: str, enc: EncounterState, at: str) -> None:
    state.set_bed(bed_id, BedState(status="occupied", since=at, encounter_id=enc.encounter_id, occupant_sex=enc.sex))


def _vacate(state: HospitalState, bed_id: str, at: str, reason: str) -> None:
    state.set_bed(bed_id, BedState(status="dirty", since=at, reason=reason))


def _assign(state: HospitalState, log: DecisionLog, enc: EncounterState, placed: Assignment, at: str,
            source_reason: tuple[str, str]) -> EncounterState:
    _occupy(state, placed.bed_id, enc, at)
    enc = enc.derive(status="placed", bed_id=placed.bed_id, unit=placed.unit, waiting_since=None)
    state.set_encounter(enc)
    prediction = enc.predicted()
    d = log.add("assignment", [source_reason, *_safety_reasons(prediction), *placed.reasons],
                patient_id=enc.patient_id,
                encounter_id=enc.encounter_id, unit=placed.unit, bed_id=placed.bed_id, prediction=prediction)
    state.set_decision_owner(d.decision_id, enc.encounter_id)
    return enc


def _waiting_patient(enc: EncounterState, now: datetime) -> WaitingPatient:
    """The matching's view of a patient: placement facts, acuity and time waited for priority."""
    since = enc.waiting_since or enc.admitted_at
    waited = max(0.0, (now - datetime.fromisoformat(since)).total_seconds() / 60) if since else 0.0
    return WaitingPatient(encounter_id=enc.encounter_id, age=enc.age, sex=enc.sex, target_unit=enc.target_unit or "",
                          needs=frozenset(enc.needs), acuity=enc.acuity, waited_minutes=waited,
                          unit_probability=enc.unit_probability)


def _beds_and_loads(state: HospitalState) -> tuple[dict[str, BedSnapshot], dict[str, float]]:
    """One pass over the beds: the snapshots of those not available (missing = available, as the
    allocator reads them) and each unit's nurse workload, the acuity weights of its patients."""
    weights = state.hospital.allocation
    snapshots: dict[str, BedSnapshot] = {}
    loads: dict[str, float] = {}
    for unit in state.hospital.units:
        total = 0.0
        for bed in state.hospital.beds_in_unit(unit.code):
            b = state.bed(bed.bed_id)
            if b.status == AVAILABLE:
                continue
            snapshots[bed.bed_id] = BedSnapshot(status=b.status, occupant_sex=b.occupant_sex)
            if b.status in ("occupied", "held") and b.encounter_id:
                enc = state.encounter(b.encounter_id)
                total += weights.acuity_weight(enc.acuity if enc else None)
        loads[unit.code] = total
    return snapshots, loads


def _best_bed(state: HospitalState, ctx: HandlerContext, enc: EncounterState, now: datetime) -> Assignment | NoBed:
    """The bed the policy gives one patient on their own (a proposal held for confirmation)."""
    beds, loads = _beds_and_loads(state)
    result = assign([_waiting_patient(enc, now)], state.hospital, beds, policy=ctx.policy, loads=loads)
    return result.assignments[0].assignment if result.assignments else result.unplaced[0][1]


def place_waiting(state: HospitalState, ctx: HandlerContext, log: DecisionLog, at: str, *,
                  trigger: tuple[str, str] = ("bed_freed", "A bed became available for a patient who was waiting."),
                  arrived: str | None = None, arrival_reason: tuple[str, str] | None = None) -> None:
    """Beds for everyone waiting, matched together under the policy; re-run when a bed frees or a patient arrives.

    `arrived`: the encounter whose arrival triggered the run; if it gets no bed it is told why
    (once), and the bed manager is paged. Others keep waiting silently (they were told already).
    """
    ids = state.waiting()
    encs: dict[str, EncounterState] = {}
    for encounter_id in ids:
        enc = state.encounter(encounter_id)
        if enc is not None and enc.status == "waiting" and enc.target_unit:
            encs[encounter_id] = enc
    if not encs:
        state.set_waiting([])
        return
    now = datetime.fromisoformat(at)
    beds, loads = _beds_and_loads(state)
    result = assign([_waiting_patient(e, now) for e in encs.values()], state.hospital, beds, policy=ctx.policy,
                    loads=loads, explain_unplaced={arrived} if arrived else ())  # only the arrival is told why
    placed: set[str] = set()
    for p in result.assignments:
        eid = p.patient.encounter_id
        reason = arrival_reason if eid == arrived and arrival_reason else trigger
        _assign(state, log, encs[eid], p.assignment, at, reason)
        placed.add(eid)
    for patient, no_bed in result.unplaced:
        if patient.encounter_id != arrived:
            continue
        enc = encs[patient.encounter_id]
        prediction = enc.predicted()
        d = log.add("no_bed", [arrival_reason or trigger, *_safety_reasons(prediction), *no_bed.reasons],
                    patient_id=enc.patient_id, encounter_id=enc.encounter_id, unit=None, prediction=prediction,
                    role="bed_manager", pager=state.hospital.roster.get("bed_manager"), priority="urgent")
        state.set_decision_owner(d.decision_id, enc.encounter_id)  # a clinician may reassign a waiting patient
    state.set_waiting([e for e in ids if e in encs and e not in placed])


def _arrive(state: HospitalState, ctx: HandlerContext, log: DecisionLog, enc: EncounterState, at: str,
            reason: tuple[str, str]) -> None:
    """A patient whose unit is known joins the waiting list, and everyone waiting is matched again."""
    state.set_encounter(enc.derive(status="waiting", waiting_since=enc.waiting_since or at))
    state.set_waiting([*state.waiting(), enc.encounter_id])
    place_waiting(state, ctx, log, at, trigger=("matching", "Placed when the waiting list was matched again "
                                                            "on a new arrival."),
                  arrived=enc.encounter_id, arrival_reason=reason)


def _safety_reasons(prediction: PredictionOut | None) -> list[ReasonOut]:
    """The prediction's own reasons (acuity raised by measured signs, unit made consistent), carried to the decision."""
    return [r for r in prediction.reasons if r.code and r.text] if prediction is not None else []


def _probability(prediction: PredictionOut, label: str) -> str:
    return f"{prediction.unit_probs.get(label, 0.0):.0%}"


def handle_admission(event: Admission, state: HospitalState, ctx: HandlerContext, log: DecisionLog,
                     prediction: PredictionOut | None = None) -> None:
    """Place by the EHR's request if any, else by the model; uncertain or missing: ask a clinician."""
    at = _ts(event)
    if state.encounter(event.encounter_id) is not None:
        raise EventRejected("duplicate_encounter", "encounter_id",
                            "admissions: field 'encounter_id' was already admitted by another event")
    current = state.open_encounter_of(event.patient_id)
    if current is not None:
        raise EventRejected("impossible_transition", "patient_id",
                            "admissions: field 'patient_id' already has an open encounter; discharge it first")
    needs = {"bariatric"} if (event.weight_kg or 0) >= BARIATRIC_WEIGHT_KG else set()
    if prediction is not None:
        needs |= set(prediction.needs)
    enc = EncounterState(encounter_id=event.encounter_id, patient_id=event.patient_id, age=float(event.age),
                         sex=event.sex, admitted_at=at, status="awaiting_confirmation", needs=sorted(needs),
                         spo2_scale2=bool(event.spo2_scale2), weight_kg=event.weight_kg,
                         prediction=None if prediction is None else prediction.model_dump(mode="json"))
    state.set_open_encounter(event.patient_id, event.encounter_id)
    state.set_text(event.encounter_id, event.text)  # for feedback while the stay is open; dropped at discharge
    common = dict(patient_id=event.patient_id, encounter_id=event.encounter_id, prediction=prediction)

    if event.bed_id is not None:
        _admit_to_ehr_bed(event, state, log, enc, at)
        return

    if event.requested_unit:
        label = _resolve_requested_unit(state, event.requested_unit)
        enc = enc.derive(target_unit=label, unit_source="requested")
        _arrive(state, ctx, log, enc, at, ("requested_unit", f"The EHR's bed request for {event.requested_unit} is followed."))
        return

    if prediction is None:
        state.set_encounter(enc)
        why = ("no_prediction", "No unit was requested and no model is running; a clinician must choose the unit."
               if not ctx.model_available else
               "No unit was requested and the model gave no prediction; a clinician must choose the unit.")
        state.set_decision_owner(log.add("needs_confirmation", [why], **common).decision_id, enc.encounter_id)
        return

    label = prediction.target_unit
    enc = enc.derive(target_unit=label, unit_source="model")
    predicted = (f"The model predicts {label} ({_probability(prediction, label)}), acuity "
                 f"{prediction.acuity}, model {prediction.model_version}.")
    if not state.hospital.units_serving(label):
        state.set_encounter(enc.derive(status="no_bed_needed"))
        kind = "needs_confirmation" if prediction.uncertain else "no_bed_needed"
        text = (" The prediction is uncertain: a clinician must confirm." if prediction.uncertain
                else " No unit of this hospital admits it, so no bed is allocated.")
        d = log.add(kind, [("model_prediction", predicted + text), *_safety_reasons(prediction)], **common)
        state.set_decision_owner(d.decision_id, enc.encounter_id)
        return

    if not prediction.uncertain:
        _arrive(state, ctx, log, enc, at, ("model_prediction", predicted))
        return

    # Uncertain: propose a bed and hold it until a clinician confirms, or the hold lapses.
    state.set_encounter(enc)
    why = ("uncertain", predicted + " Its confidence is below the threshold, so a clinician must confirm.")
    placed = _best_bed(state, ctx, enc, event.occurred_at)
    if isinstance(placed, Assignment):
        until = (event.occurred_at + ctx.hold).isoformat()
        state.set_bed(placed.bed_id, BedState(status="held", since=at, encounter_id=enc.encounter_id,
                                              occupant_sex=enc.sex, reason="awaiting confirmation"))
        state.set_encounter(enc.derive(bed_id=placed.bed_id, unit=placed.unit, hold_until=until))
        state.set_holds([*state.holds(), enc.encounter_id])
        d = log.add("needs_confirmation", [why, *_safety_reasons(prediction),
                                           ("bed_held", f"Bed {placed.bed_id} is held until {until}."), *placed.reasons],
                    unit=placed.unit, bed_id=placed.bed_id, details={"hold_expires_at": until}, **common)
    else:
        d = log.add("needs_confirmation", [why, *_safety_reasons(prediction), *placed.reasons], **common)
    state.set_decision_owner(d.decision_id, enc.encounter_id)


def _admit_to_ehr_bed(event: Admission, state: HospitalState, log: DecisionLog, enc: EncounterState, at: str) -> None:
    """The EHR already put the patient in a bed: record it (the bed board must match the EHR), don't choose one."""
    bed = state.hospital.bed(event.bed_id or "")
    if bed is None:
        raise EventRejected("unknown_bed", "bed_id", "admissions: field 'bed_id' names no bed of this hospital")
    current = state.bed(bed.bed_id)
    if current.status in ("occupied", "held"):
        raise EventRejected("impossible_transition", "bed_id",
                            "admissions: field 'bed_id' is a bed occupied or held for another patient")
    unit = state.hospital.unit(bed.unit)
    enc = enc.derive(status="placed", bed_id=bed.bed_id, unit=bed.unit, target_unit=unit.serves[0] if unit.serves
                     else None, unit_source="requested")
    _occupy(state, bed.bed_id, enc, at)
    state.set_encounter(enc)
    d = log.add("assignment", [("ehr_bed", f"The EHR admitted the patient to bed {bed.bed_id}; recorded as is.")],
                patient_id=enc.patient_id, encounter_id=enc.encounter_id, unit=bed.unit, bed_id=bed.bed_id,
                prediction=enc.predicted())
    state.set_decision_owner(d.decision_id, enc.encounter_id)


def lapse_holds(state: HospitalState, ctx: HandlerContext, now: datetime, log: DecisionLog) -> None:
    """Holds past their time are released: the bed goes back to the pool, and the decision says so."""
    holds = state.holds()
    if not holds:
        return
    keep = []
    for encounter_id in holds:
        enc = state.encounter(encounter_id)
        if enc is None or not enc.hold_until or enc.status != "awaiting_confirmation" or not enc.bed_id:
            continue
        if datetime.fromisoformat(enc.hold_until) > now:
            keep.append(encounter_id)
            continue
        at = now.isoformat()
        state.set_bed(enc.bed_id, BedState(status=AVAILABLE, since=at, reason="hold lapsed"))
        state.set_encounter(enc.derive(bed_id=None, unit=None, hold_until=None))
        log.add("hold_lapsed", [("hold_lapsed", f"No clinician confirmed by {enc.hold_until}; bed {enc.bed_id} "
                                                "is released and the patient still needs a decision.")],
                patient_id=enc.patient_id, encounter_id=enc.encounter_id, bed_id=enc.bed_id,
                role="bed_manager", pager=state.hospital.roster.get("bed_manager"), priority="urgent")
        place_waiting(state, ctx, log, at)
    state.set_holds(keep)


def handle_transfer(event: Transfer, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    at = _ts(event)
    enc = _open_encounter(state, "transfers", event.patient_id, event.encounter_id)
    bed = state.hospital.bed(event.to_bed_id)
    if bed is None:
        raise EventRejected("unknown_bed", "to_bed_id",
                            "transfers: field 'to_bed_id' names no bed of this hospital")
    if enc.bed_id == event.to_bed_id:
        return  # already there: nothing to change
    target = state.bed(event.to_bed_id)
    if target.status in ("occupied", "held") and target.encounter_id not in (None, enc.encounter_id):
        raise EventRejected("impossible_transition", "to_bed_id",
                            "transfers: field 'to_bed_id' is a bed occupied by another patient")
    if enc.bed_id:
        _vacate(state, enc.bed_id, at, reason="transfer")
    if bed.unit != enc.unit:
        windowed.record_arrival(state, bed.unit, event.occurred_at, ctx.windows)
        case = _case(state, enc)
        if case is not None:
            record = feedback_from_transfer(case, state.hospital, to_bed_id=event.to_bed_id,
                                            admitted_at=datetime.fromisoformat(enc.admitted_at),
                                            at=event.occurred_at, who="ehr")
            if record is not None:
                log.add_feedback(record, enc.model_version)
    _occupy(state, event.to_bed_id, enc, at)
    state.set_encounter(enc.derive(status="placed", bed_id=event.to_bed_id, unit=bed.unit, waiting_since=None))
    if enc.encounter_id in state.waiting():
        state.set_waiting([e for e in state.waiting() if e != enc.encounter_id])


def handle_discharge(event: Discharge, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    at = _ts(event)
    enc = _open_encounter(state, "discharges", event.patient_id, event.encounter_id)
    if enc.bed_id:
        _vacate(state, enc.bed_id, at, reason="discharge")
    state.set_encounter(enc.derive(status="discharged", bed_id=None, waiting_since=None))
    state.set_open_encounter(enc.patient_id, None)
    state.set_text(enc.encounter_id, None)
    clinical.forget(state, enc.encounter_id)
    if enc.encounter_id in state.waiting():
        state.set_waiting([e for e in state.waiting() if e != enc.encounter_id])


def handle_bed_status(event: BedStatusChange, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    at = _ts(event)
    if state.hospital.bed(event.bed_id) is None:
        raise EventRejected("unknown_bed", "bed_id", "bed-status: field 'bed_id' names no bed of this hospital")
    current = state.bed(event.bed_id)
    if current.status in ("occupied", "held"):
        raise EventRejected("impossible_transition", "status",
                            f"bed-status: field 'status' cannot change a bed while it is {current.status}; "
                            "discharge or transfer the patient first")
    new_status = _BED_STATUS_FROM_EVENT[event.status]
    state.set_bed(event.bed_id, BedState(status=new_status, since=at, reason=event.reason))
    if new_status == AVAILABLE:
        place_waiting(state, ctx, log, at)


def _pregnant(state: HospitalState, enc: EncounterState) -> bool:
    """Pregnancy is known from where the patient is or is going: an obstetric unit (its own chart)."""
    codes = [enc.unit] if enc.unit else [u.code for u in state.hospital.units_serving(enc.target_unit or "")]
    units = [state.hospital.unit(c) for c in codes if c]
    return bool(units) and all(u.obstetric for u in units)


def handle_vitals(event: Vitals, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    enc = _open_encounter(state, "vitals", event.patient_id, event.encounter_id)
    clinical.handle_vitals(event, state, enc, ctx.clinical, _pregnant(state, enc), log)


def _release(state: HospitalState, enc: EncounterState, at: str) -> None:
    """Free the patient's current bed: a hold goes back to the pool, a bed they lay in needs cleaning."""
    if not enc.bed_id:
        return
    if state.bed(enc.bed_id).status == "held":
        state.set_bed(enc.bed_id, BedState(status=AVAILABLE, since=at, reason="hold released"))
    else:
        _vacate(state, enc.bed_id, at, reason="moved")
    if enc.encounter_id in state.holds():
        state.set_holds([e for e in state.holds() if e != enc.encounter_id])


def handle_override(event: Override, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    """A clinician's word wins: confirm, reassign or reject a proposal, within the hard rules unless deliberate."""
    at = _ts(event)
    encounter_id = state.decision_owner(event.decision_id)
    enc = state.encounter(encounter_id) if encounter_id else None
    if enc is None or enc.status == "discharged":
        raise EventRejected("unknown_decision", "decision_id",
                            "overrides: field 'decision_id' names no open decision of this hospital")
    proposed = None
    if (enc.status == "awaiting_confirmation" and enc.bed_id and enc.unit
            and state.bed(enc.bed_id).status == "held"):
        proposed = Assignment(bed_id=enc.bed_id, unit=enc.unit, overflow=False, reasons=())
    outcome = check_override(event.action, event.clinician_id, state.hospital, proposed=proposed,
                             patient=_patient(enc), bed_id=event.bed_id, beds=state.bed_snapshots(),
                             deliberate=event.deliberate)
    common = dict(patient_id=enc.patient_id, encounter_id=enc.encounter_id, prediction=enc.predicted())
    if outcome.code == "unauthorized":
        raise EventRejected("unauthorized", "clinician_id",
                            "overrides: field 'clinician_id' is not a clinician allowed to override in this hospital")
    if not outcome.applied:
        log.add("override_refused", [*outcome.reasons, *outcome.breaches], bed_id=event.bed_id,
                details={"action": event.action, "code": outcome.code, "clinician_id": event.clinician_id}, **common)
        return
    details = {"action": event.action, "code": outcome.code, "clinician_id": event.clinician_id,
               "overridden_decision": event.decision_id,
               "breaches": [{"code": b.code, "text": b.text} for b in outcome.breaches]}
    if event.action == "reject":
        _release(state, enc, at)
        state.set_encounter(enc.derive(bed_id=None, unit=None, hold_until=None, status="awaiting_confirmation"))
        log.add("override_applied", outcome.reasons, details=details, **common)
        place_waiting(state, ctx, log, at)
        return
    if outcome.new_bed_id is None or outcome.new_unit is None:  # check_override names the bed it applies
        raise ValueError(f"override {outcome.code!r} applied without a bed")
    if event.action == "reassign" or outcome.new_bed_id != enc.bed_id:
        _release(state, enc, at)
    if enc.encounter_id in state.holds():
        state.set_holds([e for e in state.holds() if e != enc.encounter_id])
    if enc.encounter_id in state.waiting():
        state.set_waiting([e for e in state.waiting() if e != enc.encounter_id])
    enc = enc.derive(hold_until=None)
    log.add("override_applied", [*outcome.reasons, *outcome.breaches], bed_id=outcome.new_bed_id,
            unit=outcome.new_unit, details=details, **common)
    placed = Assignment(bed_id=outcome.new_bed_id, unit=outcome.new_unit, overflow=False,
                        reasons=tuple(outcome.reasons))
    _assign(state, log, enc, placed, at, ("clinician", f"Placed by clinician {event.clinician_id}."))
    case = _case(state, enc)
    record = case and feedback_from_override(case, outcome, state.hospital, clinician_id=event.clinician_id,
                                             at=event.occurred_at)
    if record:
        log.add_feedback(record, enc.model_version)


def handle_page_ack(event: PageAck, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    clinical.handle_page_ack(event, state, ctx.clinical, log)


def _close_stay(state: HospitalState, enc: EncounterState) -> None:
    state.set_encounter(enc.derive(status="discharged", bed_id=None, waiting_since=None, hold_until=None))
    state.set_open_encounter(enc.patient_id, None)
    state.set_text(enc.encounter_id, None)
    clinical.forget(state, enc.encounter_id)
    if enc.encounter_id in state.waiting():
        state.set_waiting([e for e in state.waiting() if e != enc.encounter_id])
    if enc.encounter_id in state.holds():
        state.set_holds([e for e in state.holds() if e != enc.encounter_id])


def handle_cancellation(event: Cancellation, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    """The EHR takes back an admission (the bed is freed), a transfer (back to `bed_id`) or a discharge (the stay reopens).

    A cancelled transfer is not a label correction: no feedback record, unlike a transfer.
    """
    at = _ts(event)
    common = dict(patient_id=event.patient_id, encounter_id=event.encounter_id)
    if event.cancels == "discharge":
        _reopen(event, state, ctx, log, at)
        return
    enc = _open_encounter(state, "cancellations", event.patient_id, event.encounter_id)
    if event.cancels == "admission":
        bed_id = enc.bed_id
        freed_clean = False
        if bed_id:
            if state.bed(bed_id).status == "held":  # proposed, never slept in: free at once
                state.set_bed(bed_id, BedState(status=AVAILABLE, since=at, reason="admission cancelled"))
                freed_clean = True
            else:
                _vacate(state, bed_id, at, reason="admission cancelled")
        _close_stay(state, enc)
        text = (f"The EHR cancelled the admission; bed {bed_id} is released"
                + (" and free at once." if freed_clean else " for cleaning.") if bed_id
                else "The EHR cancelled the admission; no bed was taken.")
        log.add("cancellation_applied", [("admission_cancelled", text)], unit=enc.unit, bed_id=bed_id, **common)
        if freed_clean:
            place_waiting(state, ctx, log, at)
        return
    # transfer: back to the bed the patient came from
    target_id = event.bed_id or ""
    bed = state.hospital.bed(target_id)
    if bed is None:
        raise EventRejected("unknown_bed", "bed_id", "cancellations: field 'bed_id' names no bed of this hospital")
    if enc.bed_id != target_id:
        target = state.bed(target_id)
        if target.status in ("occupied", "held") and target.encounter_id not in (None, enc.encounter_id):
            raise EventRejected("impossible_transition", "bed_id",
                                "cancellations: field 'bed_id' is a bed occupied by another patient")
        if enc.bed_id:
            _vacate(state, enc.bed_id, at, reason="transfer cancelled")
        enc = enc.derive(status="placed", bed_id=target_id, unit=bed.unit, waiting_since=None)
        _occupy(state, target_id, enc, at)
        state.set_encounter(enc)
        if enc.encounter_id in state.waiting():
            state.set_waiting([e for e in state.waiting() if e != enc.encounter_id])
    log.add("cancellation_applied", [("transfer_cancelled", f"The EHR cancelled the transfer; the patient is back "
                                                            f"in bed {target_id}.")],
            unit=bed.unit, bed_id=target_id, **common)


def _reopen(event: Cancellation, state: HospitalState, ctx: HandlerContext, log: DecisionLog, at: str) -> None:
    enc = state.encounter(event.encounter_id)
    if enc is None:
        raise EventRejected("unknown_encounter", "encounter_id",
                            "cancellations: field 'encounter_id' refers to no encounter (never admitted)")
    if enc.patient_id != event.patient_id:
        raise EventRejected("patient_mismatch", "patient_id",
                            "cancellations: field 'patient_id' is not the patient of this encounter")
    if enc.status != "discharged":
        raise EventRejected("impossible_transition", "cancels",
                            "cancellations: the encounter is not discharged, so there is no discharge to cancel")
    if state.open_encounter_of(enc.patient_id) is not None:
        raise EventRejected("impossible_transition", "patient_id",
                            "cancellations: the patient already has another open encounter")
    common = dict(patient_id=enc.patient_id, encounter_id=enc.encounter_id)
    state.set_open_encounter(enc.patient_id, enc.encounter_id)
    if event.bed_id is not None:
        bed = state.hospital.bed(event.bed_id)
        if bed is None:
            raise EventRejected("unknown_bed", "bed_id", "cancellations: field 'bed_id' names no bed of this hospital")
        current = state.bed(event.bed_id)
        if current.status in ("occupied", "held"):
            raise EventRejected("impossible_transition", "bed_id",
                                "cancellations: field 'bed_id' is a bed occupied or held for another patient")
        enc = enc.derive(status="placed", bed_id=event.bed_id, unit=bed.unit, waiting_since=None)
        _occupy(state, event.bed_id, enc, at)
        state.set_encounter(enc)
        log.add("cancellation_applied", [("discharge_cancelled", f"The EHR cancelled the discharge; the stay is open "
                                                                 f"again in bed {event.bed_id}.")],
                unit=bed.unit, bed_id=event.bed_id, **common)
        return
    log.add("cancellation_applied", [("discharge_cancelled", "The EHR cancelled the discharge; the stay is open again "
                                                             "and needs a bed.")], **common)
    if enc.target_unit:
        _arrive(state, ctx, log, enc.derive(waiting_since=None), at,
                ("discharge_cancelled", "The stay reopened by a cancelled discharge needs a bed."))
    else:
        state.set_encounter(enc.derive(status="awaiting_confirmation"))


def handle_swap(event: Swap, state: HospitalState, ctx: HandlerContext, log: DecisionLog) -> None:
    """Two patients exchanged beds at once (as the EHR records it, like a transfer)."""
    at = _ts(event)
    one = _open_encounter(state, "swaps", event.patient_id, event.encounter_id)
    two = _open_encounter(state, "swaps", event.other_patient_id, event.other_encounter_id)
    if not one.bed_id or not two.bed_id:
        field_name = "encounter_id" if not one.bed_id else "other_encounter_id"
        raise EventRejected("impossible_transition", field_name, f"swaps: field '{field_name}' is not in a bed, "
                                                                 "so there is nothing to swap")
    bed_one, bed_two = one.bed_id, two.bed_id
    unit_one, unit_two = state.hospital.bed_unit(bed_one), state.hospital.bed_unit(bed_two)
    one = one.derive(status="placed", bed_id=bed_two, unit=unit_two)
    two = two.derive(status="placed", bed_id=bed_one, unit=unit_one)
    _occupy(state, bed_two, one, at)
    _occupy(state, bed_one, two, at)
    state.set_encounter(one)
    state.set_encounter(two)
    for enc, bed_id, unit, was in ((one, bed_two, unit_two, bed_one), (two, bed_one, unit_one, bed_two)):
        log.add("swap_applied", [("beds_swapped", f"The EHR swapped two patients' beds: this patient moved from "
                                                  f"{was} to {bed_id}.")],
                patient_id=enc.patient_id, encounter_id=enc.encounter_id, unit=unit, bed_id=bed_id)


HANDLERS: dict[type, Callable[..., None]] = {
    Admission: handle_admission,
    Transfer: handle_transfer,
    Discharge: handle_discharge,
    BedStatusChange: handle_bed_status,
    Vitals: handle_vitals,
    Override: handle_override,
    PageAck: handle_page_ack,
    Cancellation: handle_cancellation,
    Swap: handle_swap,
}


def advance_clock(state: HospitalState, at: datetime) -> datetime:
    """The hospital's clock: the latest event time seen; a late event never moves it back."""
    current = state.clock()
    now = at if current is None else max(at, datetime.fromisoformat(current))
    state.set_clock(now.isoformat())
    return now


def handle(event: InputEvent, state: HospitalState, ctx: HandlerContext,
           prediction: PredictionOut | None = None) -> DecisionLog:
    """Time-driven work up to this event's time first (escalations, overdue observations), then the event."""
    log = _log(event)
    now = advance_clock(state, event.occurred_at)
    clinical.tick(state, now, ctx.clinical, log)
    lapse_holds(state, ctx, now, log)
    if isinstance(event, Admission):
        handle_admission(event, state, ctx, log, prediction)
        windowed.record_admission(state, event.occurred_at, ctx.windows)
    else:
        HANDLERS[type(event)](event, state, ctx, log)
    censuses = state.refresh_census()
    windowed.record_outcomes(state, event.occurred_at, censuses, log.decisions, ctx.windows)
    if not isinstance(event, (Vitals, PageAck)):  # only these leave beds, waits and arrivals alone
        capacity.update_surge(state, now, ctx.windows, log)
    return log
