"""Vitals -> NEWS2 -> pages, acknowledgements and time-driven escalation, per hospital.

Pure functions over `HospitalState` and the allocator's NEWS2 and paging rules. Time is the
hospital's own clock: the latest event time seen for it (never the wall clock), so replays
after a crash give the same pages with the same ids and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from allocator import news2, paging
from allocator.hospital import Hospital
from streams.contract.models import PageAck, Vitals
from streams.exceptions import EventRejected
from streams.state.decisions import DecisionLog
from streams.state.records import EncounterState

HOSPITAL_ROLES = ("bed_manager", "critical_care_outreach", "rapid_response", "site_manager")


@dataclass(frozen=True)
class ClinicalConfig:
    """NEWS2 and paging settings (from WardflowSettings)."""

    max_obs_age: timedelta = timedelta(minutes=60)
    paging: paging.PagingConfig = field(default_factory=paging.PagingConfig)


def pager_for(hospital: Hospital, unit_code: str | None, role: str) -> str | None:
    """The pager of `role`: the patient's unit roster first, then the hospital's."""
    if unit_code:
        try:
            pager = hospital.unit(unit_code).roster.get(role)
        except KeyError:
            pager = None
        if pager:
            return pager
    return hospital.roster.get(role)


def page_id_for(hospital_id: str, event_id: str) -> str:
    return f"pg-{hospital_id}-{event_id}"


def _observations(raw: dict | None) -> dict[str, news2.Observation]:
    return {k: news2.Observation(v[0], datetime.fromisoformat(v[1])) for k, v in (raw or {}).items()}


def _raw_observations(obs: dict[str, news2.Observation]) -> dict[str, list]:
    return {k: [o.value, o.at.isoformat()] for k, o in obs.items()}


def _vitalset(event: Vitals) -> news2.Vitalset:
    return news2.Vitalset(resp_rate=event.resp_rate, spo2=event.spo2, on_oxygen=event.on_oxygen,
                          systolic_bp=event.systolic_bp, heart_rate=event.heart_rate,
                          consciousness=event.consciousness, temperature_c=event.temperature_c)


def _parameters(result: news2.News2Score) -> list[dict]:
    return [{"name": p.name, "value": p.value, "points": p.points} for p in result.parameters]


def handle_vitals(event: Vitals, state, enc: EncounterState, cfg: ClinicalConfig, pregnant: bool,
                  log: DecisionLog) -> None:
    """Record the observations; score when complete; do what the chart and the open episode call for."""
    now = event.occurred_at
    hid = state.hid
    latest = _observations(state.observations(enc.encounter_id))
    new = _vitalset(event)
    state.set_observations(enc.encounter_id, _raw_observations(news2.record(latest, new, now)))
    common = dict(patient_id=enc.patient_id, encounter_id=enc.encounter_id, unit=enc.unit)

    applies, why = news2.news2_applicable(enc.age, pregnant)
    pstate = paging.PagingState.from_dict(state.paging(enc.encounter_id) or {})
    if not applies:
        if not latest:  # say it once, on the patient's first observations
            log.add("news2", [("news2_not_applicable", why)], details={"applicable": False}, **common)
        return
    combined = news2.combine(latest, new, now, cfg.max_obs_age)
    if combined.incomplete:
        # The missing parameters can only add points: measured values already in a paging band page now.
        lower = news2.score_at_least(combined.vitals, scale2=enc.spo2_scale2)
        names = ", ".join(p.replace("_", " ") for p in combined.incomplete)
        incomplete = {"complete": False, "missing": list(combined.missing), "stale": list(combined.stale)}
        if not cfg.paging.paging_band(lower.band):
            log.add("news2", [("news2_incomplete", f"NEWS2 not scored: no recent value for {names}; "
                                                   "the set is incomplete, not guessed.")],
                    details=incomplete, **common)
            return
        result = lower
        details = {**incomplete, "at_least": True, "total": lower.total, "band": lower.band.value,
                   "parameters": _parameters(lower), "carried": list(combined.carried)}
        log.add("news2", [("news2_at_least", f"{news2.describe_scoring(lower)} The set is incomplete (no recent "
                                             f"value for {names}), and its measured values alone reach this band.")],
                details=details, **common)
    else:
        result = news2.score(combined.vitals, scale2=enc.spo2_scale2)
        details = {"complete": True, "total": result.total, "band": result.band.value,
                   "parameters": _parameters(result), "carried": list(combined.carried)}
    previous_band = pstate.last_band
    pstate, actions = paging.on_score(pstate, result, now, cfg.paging, page_id_for(hid, event.event_id))
    if result.band != previous_band and not result.unmeasured:
        log.add("news2", [("news2_band", news2.describe_scoring(result))], details=details, **common)
    for action in actions:
        _emit(log, state, enc, action, details)
    _save_paging(state, enc.encounter_id, pstate, cfg)


def handle_page_ack(event: PageAck, state, cfg: ClinicalConfig, log: DecisionLog) -> None:
    """An ack ends the episode's escalation as of its own `occurred_at` (event time), even when it is
    processed after an escalation its time preceded: that escalation stands, no further one follows."""
    encounter_id = state.page_owner(event.page_id)
    if encounter_id is None:
        raise EventRejected("unknown_page", "page_id", "page-acks: field 'page_id' names no page of this hospital")
    pstate = paging.PagingState.from_dict(state.paging(encounter_id) or {})
    pstate, outcome = paging.on_ack(pstate, event.page_id, event.occurred_at)
    if outcome == paging.AckOutcome.UNKNOWN:
        return  # a page this hospital sent, since superseded by a newer one: nothing left to stop
    _save_paging(state, encounter_id, pstate, cfg)


def tick(state, now: datetime, cfg: ClinicalConfig, log: DecisionLog) -> None:
    """Time-driven paging as of `now` (hospital time): unrepeated suspect readings, escalations, urgent
    overdue observations, and each unit's overdue list when a ward round has come.

    Only patients whose next time-driven action is due are read: the active list keeps, per
    encounter, when that is (`paging.next_action_at`), so an event costs O(patients due), not
    O(patients watched); a ward round (a few a day) reads everyone watched.
    """
    active = state.paging_active()
    stamp = now.timestamp()
    due = [e for e, at in active.items() if at is not None and at <= stamp]
    for encounter_id in due:
        enc = state.encounter(encounter_id)
        if enc is None or enc.status == "discharged":
            forget(state, encounter_id)
            continue
        pstate = paging.PagingState.from_dict(state.paging(encounter_id) or {})
        pstate, actions = paging.tick(pstate, now, cfg.paging)
        for action in actions:
            _emit(log, state, enc, action, None)
        _save_paging(state, encounter_id, pstate, cfg)
    _ward_round(state, now, cfg, log)


def _ward_round(state, now: datetime, cfg: ClinicalConfig, log: DecisionLog) -> None:
    """At the first event after a ward round time: one overdue list per unit (the latest round only)."""
    round_at = paging.previous_round(now, cfg.paging)
    last = state.last_ward_round()
    if last is not None and datetime.fromisoformat(last) >= round_at:
        return
    state.set_last_ward_round(round_at.isoformat())
    if last is None:
        return  # the first event this worker sees for the hospital: the next round is the first
    entries, encounters = [], {}
    for encounter_id in state.paging_active():
        enc = state.encounter(encounter_id)
        raw = state.paging(encounter_id)
        if enc is None or enc.status == "discharged" or raw is None:
            continue
        encounters[encounter_id] = enc
        entries.append((encounter_id, enc.unit, paging.PagingState.from_dict(raw)))
    rounds, updated = paging.overdue_round(entries, round_at, cfg.paging)
    for encounter_id, pstate in updated.items():
        _save_paging(state, encounter_id, pstate, cfg)
    hospital = state.hospital
    for r in rounds:
        patients = [{"encounter_id": p.encounter_id, "patient_id": encounters[p.encounter_id].patient_id,
                     "bed_id": encounters[p.encounter_id].bed_id, "band": p.band.value, "total": p.total,
                     "due_at": p.due_at.isoformat(), "minutes_overdue": p.minutes_overdue} for p in r.patients]
        log.add("observations_overdue", [("overdue_round", r.reasons[0])], unit=r.unit, role=r.role,
                pager=pager_for(hospital, r.unit, r.role), priority="routine",
                details={"round_at": r.round_at.isoformat(), "patients": [
                    {k: v for k, v in p.items() if v is not None} for p in patients]})


def forget(state, encounter_id: str) -> None:
    """The patient left: nothing more to escalate or expect."""
    active = state.paging_active()
    if encounter_id in active:
        del active[encounter_id]
        state.set_paging_active(active)


def _save_paging(state, encounter_id: str, pstate: paging.PagingState, cfg: ClinicalConfig) -> None:
    state.set_paging(encounter_id, pstate.to_dict())
    next_at = paging.next_action_at(pstate, cfg.paging)
    active = state.paging_active()
    value = None if next_at is None else next_at.timestamp()
    if active.get(encounter_id, "absent") != value:
        active[encounter_id] = value
        state.set_paging_active(active)


def _trend(trend) -> list[dict]:
    return [{"at": t.at.isoformat(), "total": t.total, "band": t.band.value} for t in trend]


def _trend_text(trend) -> str:
    return "NEWS2 trend: " + ", ".join(f"{t.total} at {t.at:%H:%M}" for t in trend) + "."


def _role_words(role: str) -> str:
    return role.replace("_", " ")


def _emit(log: DecisionLog, state, enc: EncounterState, action, details: dict | None) -> None:
    hospital = state.hospital
    common = dict(patient_id=enc.patient_id, encounter_id=enc.encounter_id, unit=enc.unit)
    if isinstance(action, paging.Page):
        state.set_page_owner(action.page_id, enc.encounter_id)
        page_details = {**(details or {}), "total": action.total, "band": action.band.value,
                        "scoring": [{"name": p.name, "value": p.value, "points": p.points} for p in action.scoring],
                        "trend": _trend(action.trend), "observe_every_minutes": action.monitoring_minutes}
        if action.repage:  # a page inside an open episode: why
            page_details["repage"] = action.repage
        extra = action.repage or action.after_repeat or paging.REPEAT_NOT_TAKEN
        reasons = [("news2", action.reasons[0]), ("response", action.reasons[1]),
                   *[(extra, r) for r in action.reasons[2:]], ("trend", _trend_text(action.trend))]
        log.add("page", reasons, page_id=action.page_id, role=action.role,
                pager=pager_for(hospital, enc.unit, action.role), priority=str(action.priority),
                details=page_details, **common)
    elif isinstance(action, paging.Escalation):
        state.set_page_owner(action.page_id, enc.encounter_id)
        log.add("escalation", [("unacknowledged", f"The {_role_words(action.from_role)} has not acknowledged "
                                                  f"the page; escalated to the {_role_words(action.role)}."),
                               *[("news2", r) for r in action.reasons[1:2]]],
                page_id=action.page_id, role=action.role, pager=pager_for(hospital, enc.unit, action.role),
                priority=str(action.priority), details={"escalation_level": action.escalation_level, "first_escalation": action.first}, **common)
    elif isinstance(action, paging.ReviewDue):
        review_details = {"total": action.total, "band": action.band.value,
                          "observe_every_minutes": action.monitoring_minutes,
                          "next_obs_due_at": action.next_obs_due_at.isoformat(),
                          "nurse_assessment": action.nurse_assessment}
        if action.rising_from is not None:  # a rise below the paging bands: observe sooner (the board only)
            review_details["rising_from"] = action.rising_from
        log.add("review_due", [("news2", action.reasons[0]), ("review", action.reasons[1]),
                               *[("rising", r) for r in action.reasons[2:]]], priority="routine",
                details=review_details, **common)
    elif isinstance(action, paging.RepeatObservation):
        log.add("repeat_observation", [("news2", action.reasons[0]), ("suspected_artefact", action.reasons[1])],
                priority="urgent", details={"suspect": action.suspect, "repeat_by": action.repeat_by.isoformat(),
                                            "total": action.total, "band": action.band.value}, **common)
    elif isinstance(action, paging.ObservationsOverdue):
        log.add("observations_overdue", [("overdue", r) for r in action.reasons[:2]], role=action.role,
                pager=pager_for(hospital, enc.unit, action.role), priority="urgent",
                details={"due_at": action.due_at.isoformat(), "band": action.band.value, "total": action.total},
                **common)
