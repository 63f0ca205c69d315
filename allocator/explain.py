"""Why the matching chose a bed: the unit, the constraints met, the preferences won, the model's view.

Built from the same cost terms the solver minimised (`ScoringRound.row`) and, for units that
could not take the patient, from v1's first-failing-constraint sentences, so an explanation
states the decision's actual grounds. Every reason is one sentence a bed manager can read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from allocator.hospital import Hospital
from allocator.placement import BedSnapshot, Reason, constraint_reasons, is_available, unit_label, unit_refusal
from allocator.scoring import PatientRow, ScoringRound, needed_features
from allocator.weights import SCARCE_FEATURES, Reserve

__all__ = ["explain_choice", "model_reason", "ordinal"]

_FEATURE_NOUNS = {
    "negative_pressure": ("negative-pressure room", "negative-pressure rooms"),
    "single_room": ("single room", "single rooms"),
    "telemetry": ("telemetry bed", "telemetry beds"),
    "bariatric": ("bariatric bed", "bariatric beds"),
}
_EPS = 1e-9


def explain_choice(
    hospital: Hospital,
    scoring: ScoringRound,
    row: PatientRow,
    feasible: np.ndarray,
    col: int,
    others: Mapping[str, BedSnapshot],
    *,
    rank: int,
    waiting: int,
    short: bool,
) -> tuple[Reason, ...]:
    """Reasons for giving `row.patient` the bed in column `col`.

    `feasible` is the row's final feasibility (the matching may have closed a flexible bay to
    one sex); `others` is the bed snapshot with every other patient's bed of this run held, the
    state in which a target unit "had no bed"; `rank`/`waiting` place the patient in the
    priority order, said only when beds were `short` (someone went without).
    """
    patient = row.patient
    unit = scoring.unit(col)
    bed = scoring.bed(col)
    label = patient.target_unit
    reasons: list[Reason] = []
    unit_rank = int(scoring.unit_rank(label)[scoring.col_unit[col]])
    if unit_rank == 0:
        reasons.append(Reason("target_unit", f"{unit_label(unit)} serves {label}, the patient's target unit."))
    else:
        reasons.append(Reason("overflow_unit", f"{unit_label(unit)} is the {ordinal(unit_rank)} overflow unit for "
                                               f"{label} in the configured order."))
        reasons.extend(_why_not_target(hospital, scoring, row, feasible, col, others))
    reasons.extend(constraint_reasons(patient.to_place(), bed, hospital, others))
    reasons.extend(_preferences(scoring, row, feasible, col))
    if short:
        reasons.append(Reason("priority", f"Ranked {rank} of {waiting} waiting by priority (ESI "
                                          f"{_level_text(scoring, row)}, waited {patient.waited_minutes:.0f} minutes) "
                                          f"when there were not beds for everyone."))
    if (m := model_reason(patient.target_unit, patient.unit_probability)) is not None:
        reasons.append(m)
    return tuple(reasons)


def model_reason(label: str, probability: float | None) -> Reason | None:
    if probability is None:
        return None
    return Reason("model_probability", f"The model's calibrated probability for {label} is {probability:.0%}.")


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _level_text(scoring: ScoringRound, row: PatientRow) -> str:
    acuity = row.patient.acuity
    return f"{acuity}" if acuity is not None else f"unknown, taken as {scoring.weights.unknown_acuity}"


def _why_not_target(
    hospital: Hospital, scoring: ScoringRound, row: PatientRow, feasible: np.ndarray, col: int,
    others: Mapping[str, BedSnapshot],
) -> list[Reason]:
    """For each unit serving the label: v1's refusal sentence, or why its free bed lost."""
    patient = row.patient
    out = []
    cost = row.cost
    for unit in hospital.units_serving(patient.target_unit):
        refusal = unit_refusal(patient.to_place(), unit, hospital, others)
        if refusal is not None:
            out.append(refusal)
            continue
        in_unit = np.flatnonzero((scoring.col_unit == scoring.table.unit_index[unit.code]) & row.feasible)
        free = np.array([is_available(others.get(scoring.bed(int(c)).bed_id)) for c in in_unit], dtype=bool)
        in_unit = in_unit[free] if free.size else in_unit  # beds other patients of this run took are not options
        open_ = in_unit[feasible[in_unit]]
        if open_.size == 0:
            bay = scoring.bed(int(in_unit[0])).room_id if in_unit.size else "?"
            out.append(Reason("bay_closed_this_round", f"{unit_label(unit)}: its suitable bed is in flexible bay "
                                                       f"{bay}, which this run gave to patients of the other sex."))
            continue
        best = int(open_[np.argmin(cost[open_])])
        why = _losing_terms(scoring, row, best, col)
        text = f"{unit_label(unit)} had a suitable bed ({scoring.bed(best).bed_id}) but {why}."
        out.append(Reason("target_unit_passed_over", text))
    return out


def _losing_terms(scoring: ScoringRound, row: PatientRow, alt: int, col: int) -> str:
    """Why column `alt` cost more than the chosen `col`, in words, the costliest difference first."""
    phrases = []
    for term in ("reserve", "scarce", "close_observation", "workload", "flexible_bay"):
        diff = float(row.terms[term][alt] - row.terms[term][col])
        if diff > _EPS:
            phrases.append((diff, _term_phrase(scoring, row, term, alt)))
    if not phrases:
        return "the matching needed it for a patient it suited better"
    phrases.sort(key=lambda p: -p[0])
    return " and ".join(p for _, p in phrases)


def _term_phrase(scoring: ScoringRound, row: PatientRow, term: str, col: int) -> str:
    if term == "reserve":
        names = [f"{_pool(r)} kept for ESI 1 to {r.max_acuity}"
                 for k, r in enumerate(scoring.weights.reserves) if scoring.reserved[k][col]]
        return f"it is {' and '.join(names)}"
    if term == "scarce":
        wasted = _wasted(scoring, row, col)
        return f"it is a {_and([_FEATURE_NOUNS[f][0] for f in wasted]) if wasted else 'bed'} the patient does not need"
    if term == "close_observation":
        return "it is not near the nurses' station"
    if term == "workload":
        return f"{unit_label(scoring.unit(col))} carries a heavier nursing load"
    return "it would commit an empty flexible bay to one sex"


def _wasted(scoring: ScoringRound, row: PatientRow, col: int) -> list[str]:
    needed = needed_features(row.patient)
    costs = dict(zip(SCARCE_FEATURES, scoring.weights.scarce_beds.as_tuple(), strict=True))
    return [f for f in _FEATURE_NOUNS if f not in needed and costs[f] > 0
            and scoring.col_features[SCARCE_FEATURES.index(f), col]]


def _preferences(scoring: ScoringRound, row: PatientRow, feasible: np.ndarray, col: int) -> list[Reason]:
    """The soft preferences this bed wins (or, honestly, concedes)."""
    out: list[Reason] = []
    options = np.flatnonzero(feasible)
    wasted = _wasted(scoring, row, col)
    if wasted:
        what = _and([_FEATURE_NOUNS[f][0] for f in wasted])
        out.append(Reason("uses_scarce_bed", f"Uses a {what} the patient does not need, because every suitable bed "
                                             f"without one was taken or scored worse."))
    else:
        needed = needed_features(row.patient)
        costs = dict(zip(SCARCE_FEATURES, scoring.weights.scarce_beds.as_tuple(), strict=True))
        spared = [f for f in _FEATURE_NOUNS if f not in needed and costs[f] > 0
                  and scoring.col_features[SCARCE_FEATURES.index(f), options].any()]
        if spared:
            what = _and([_FEATURE_NOUNS[f][1] for f in spared])
            out.append(Reason("keeps_scarce_beds", f"Leaves the {what} it could have used to patients who need them."))
    if "close_observation" in row.patient.needs:
        if row.terms["close_observation"][col] <= _EPS:
            out.append(Reason("near_station", "Near the nurses' station, for close observation."))
        else:
            out.append(Reason("far_from_station", "Not near the nurses' station although the patient needs close "
                                                  "observation, because no bed near it was free for them."))
    out.extend(_workload(scoring, options, col))
    out.extend(_reserve(scoring, row, options, col))
    return out


def _workload(scoring: ScoringRound, options: np.ndarray, col: int) -> list[Reason]:
    if scoring.weights.workload <= 0 or not scoring.load_per_nurse.any():
        return []
    units = np.unique(scoring.col_unit[options])
    if units.size < 2:
        return []
    loads = scoring.load_per_nurse[units]
    mine = float(scoring.load_per_nurse[scoring.col_unit[col]])
    lightest = int(units[np.argmin(loads)])
    label = unit_label(scoring.unit(col))
    if mine <= float(loads.min()) + _EPS:
        return [Reason("nurse_workload", f"{label} has the lightest nursing load of the {units.size} units that could "
                                         f"take the patient ({mine:.1f} acuity points per nurse).")]
    other = unit_label(scoring.table.units[lightest])
    return [Reason("nurse_workload", f"{label} carries {mine:.1f} acuity points per nurse against "
                                     f"{float(loads.min()):.1f} on {other}, but its other advantages outweigh that.")]


def _reserve(scoring: ScoringRound, row: PatientRow, options: np.ndarray, col: int) -> list[Reason]:
    out = []
    level = scoring.weights.level(row.patient.acuity)
    for k, r in enumerate(scoring.weights.reserves):
        mask = scoring.reserved[k]
        who = f"ESI 1 to {r.max_acuity} patients"
        if mask[col]:
            if level <= r.max_acuity:
                out.append(Reason("reserve_for_acuity", f"{_capital(_pool(r))}, kept for {who} such as this one."))
            else:
                out.append(Reason("reserve_used", f"Takes {_pool(r)} kept for {who}, because nothing else suitable "
                                                  f"was free for this patient."))
        elif level > r.max_acuity and mask[options].any():
            pool = _pool(r).removeprefix("one of ")
            out.append(Reason("reserve_kept", f"Leaves {pool} to {who}."))
    return out


def _pool(r: Reserve) -> str:
    """'the last free ICU bed' or 'one of the last 3 free telemetry beds'."""
    return f"the last free {r.name} bed" if r.keep == 1 else f"one of the last {r.keep} free {r.name} beds"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
