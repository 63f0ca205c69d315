"""Placement over everyone waiting at once: a minimum-cost matching, or v1's first fit as the baseline.

`optimal` prices every feasible (patient, available bed) pair with `allocator.scoring` and solves
the assignment problem (scipy's `linear_sum_assignment`). Infeasible pairs carry a cost larger
than (the dearest feasible pair + 1) x (the most pairs a solution has), so one more feasible
pair always outweighs any difference in real costs: the solver places as many patients as any
matching can, and the infeasible pairs it is left with are dropped, never chosen. Every real
cost is >= 0. The priority term (acuity, time waited) decides who goes without when beds are
short.

Two patients may each fit an empty flexible bay yet not together (one F, one M). The solver
cannot see that, so a mixed bay is closed to the sex with less priority in it and the problem is
solved again; patients left over are then matched against what is left, until no more fit.

`greedy` is v1: in order of arrival, each patient gets `place()`'s first fit, earlier
placements of the same run holding their beds. Both are deterministic: rows are ordered by a
total key, and equal beds are split by config order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from allocator.explain import explain_choice, model_reason
from allocator.hospital import Hospital
from allocator.overlay import with_changes
from allocator.placement import Assignment, BedSnapshot, NoBed, Reason, place
from allocator.scoring import PatientRow, ScoringRound
from allocator.waiting import WaitingPatient
from allocator.weights import AllocationWeights

__all__ = ["POLICIES", "MatchResult", "PlacedPatient", "Policy", "WaitingPatient", "assign", "with_holds"]

Policy = Literal["optimal", "greedy"]
POLICIES: tuple[str, ...] = ("optimal", "greedy")
HELD = "held"


@dataclass(frozen=True)
class PlacedPatient:
    """A patient and the bed the run gives them (with the reasons), in the order they were ranked."""

    patient: WaitingPatient
    assignment: Assignment

    @property
    def bed_id(self) -> str:
        return self.assignment.bed_id


@dataclass(frozen=True)
class MatchResult:
    policy: str
    assignments: list[PlacedPatient]
    unplaced: list[tuple[WaitingPatient, NoBed]]

    def holds(self) -> dict[str, BedSnapshot]:
        """bed_id -> the 'held' snapshot each assignment implies (for the caller's bed state)."""
        return {p.bed_id: BedSnapshot(HELD, occupant_sex=p.patient.sex) for p in self.assignments}


def with_holds(beds: Mapping[str, BedSnapshot], held: Mapping[str, BedSnapshot]) -> Mapping[str, BedSnapshot]:
    """A read-only view of `beds` with `held` on top (what the next decision must see)."""
    return with_changes(beds, held)


def assign(
    waiting: Sequence[WaitingPatient],
    hospital: Hospital,
    beds: Mapping[str, BedSnapshot],
    *,
    policy: Policy = "optimal",
    loads: Mapping[str, float] | None = None,
    weights: AllocationWeights | None = None,
    explain: bool = True,
    explain_unplaced: Collection[str] | None = None,
) -> MatchResult:
    """Beds for everyone waiting who can have one, and for the rest why not.

    `beds`: bed_id -> BedSnapshot, missing = available (as for `place`). `loads`: unit code ->
    the sum of the acuity weights of its current patients (nurse workload; missing = 0).
    `weights`: defaults to `hospital.allocation`. Greedy ignores loads and weights.
    `explain=False` leaves the optimal policy's reasons empty, for callers that only count
    (the what-if simulator); the decisions are the same. `explain_unplaced`: the encounters whose
    refusals the caller will show (None: everyone's); the others' `NoBed` has no reasons. Explaining a
    refusal re-runs the single-patient placement, so a worker that tells only the new arrival asks for
    that one alone.
    """
    if len({p.encounter_id for p in waiting}) != len(waiting):
        raise ValueError("each waiting patient must appear once (duplicate encounter_id)")
    if policy == "greedy":
        return _greedy(waiting, hospital, beds)
    if policy != "optimal":
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    return _optimal(waiting, hospital, beds, loads, weights if weights is not None else hospital.allocation, explain,
                    explain_unplaced)


# ---------------------------------------------------------------------------- greedy (v1)


def arrival_order(waiting: Sequence[WaitingPatient]) -> list[WaitingPatient]:
    """First come first: longest wait first, ties in the order given."""
    return [p for _, p in sorted(enumerate(waiting), key=lambda ip: (-ip[1].waited_minutes, ip[0]))]


def _greedy(waiting: Sequence[WaitingPatient], hospital: Hospital, beds: Mapping[str, BedSnapshot]) -> MatchResult:
    held: dict[str, BedSnapshot] = {}
    placed: list[PlacedPatient] = []
    unplaced: list[tuple[WaitingPatient, NoBed]] = []
    for patient in arrival_order(waiting):
        result = place(patient.to_place(), hospital, with_holds(beds, held))
        if isinstance(result, NoBed):
            unplaced.append((patient, result))
            continue
        held[result.bed_id] = BedSnapshot(HELD, occupant_sex=patient.sex)
        if (m := model_reason(patient.target_unit, patient.unit_probability)) is not None:
            result = Assignment(result.bed_id, result.unit, result.overflow, (*result.reasons, m))
        placed.append(PlacedPatient(patient, result))
    return MatchResult("greedy", placed, unplaced)


# ---------------------------------------------------------------------------- optimal


@dataclass
class _Pass:
    """One solved matching over one snapshot: who got which column."""

    scoring: ScoringRound
    rows: list[PatientRow]
    feasible: np.ndarray  # (rows, cols), after closing mixed flexible bays
    pairs: list[tuple[int, int]]  # (row, col)


def _optimal(
    waiting: Sequence[WaitingPatient],
    hospital: Hospital,
    beds: Mapping[str, BedSnapshot],
    loads: Mapping[str, float] | None,
    weights: AllocationWeights,
    explain: bool,
    explain_unplaced: Collection[str] | None = None,
) -> MatchResult:
    order = sorted(enumerate(waiting), key=lambda ip: (-weights.priority(ip[1].acuity, ip[1].waited_minutes),
                                                       -ip[1].waited_minutes, ip[0]))
    ranked = [p for _, p in order]
    rank_of = {p.encounter_id: i + 1 for i, p in enumerate(ranked)}
    held: dict[str, BedSnapshot] = {}
    passes: list[_Pass] = []
    left = ranked
    first_feasible: dict[str, int] = {}
    while left:
        scoring = ScoringRound(hospital, with_holds(beds, held), {p.target_unit for p in left},
                               loads=loads, weights=weights)
        rows = [scoring.row(p) for p in left]
        if not passes:
            first_feasible = {r.patient.encounter_id: int(r.feasible.sum()) for r in rows}
        solved = _solve(scoring, rows)
        if not solved.pairs:
            break
        passes.append(solved)
        for r, c in solved.pairs:
            held[scoring.bed(c).bed_id] = BedSnapshot(HELD, occupant_sex=rows[r].patient.sex)
        done = {rows[r].patient.encounter_id for r, _ in solved.pairs}
        left = [p for p in left if p.encounter_id not in done]

    final = with_holds(beds, held)
    short = bool(left)
    placed: list[PlacedPatient] = []
    for solved in passes:
        for r, c in solved.pairs:
            row = solved.rows[r]
            bed = solved.scoring.bed(c)
            reasons: tuple[Reason, ...] = ()
            if explain:
                others = with_holds(beds, {k: v for k, v in held.items() if k != bed.bed_id})
                reasons = explain_choice(hospital, solved.scoring, row, solved.feasible[r], c, others,
                                         rank=rank_of[row.patient.encounter_id], waiting=len(ranked), short=short)
            overflow = row.patient.target_unit not in solved.scoring.unit(c).serves
            placed.append(PlacedPatient(row.patient, Assignment(bed.bed_id, bed.unit, overflow, reasons)))
    placed.sort(key=lambda pp: rank_of[pp.patient.encounter_id])
    unplaced = [(p, _no_bed(p, hospital, final, first_feasible.get(p.encounter_id, 0))
                  if explain and (explain_unplaced is None or p.encounter_id in explain_unplaced) else NoBed(()))
                 for p in left]
    return MatchResult("optimal", placed, unplaced)


def _solve(scoring: ScoringRound, rows: list[PatientRow]) -> _Pass:
    """Minimum-cost matching of rows to columns, re-solved until no flexible bay mixes sexes."""
    if not rows or len(scoring.cols) == 0:
        return _Pass(scoring, rows, np.zeros((len(rows), len(scoring.cols)), dtype=bool), [])
    feasible = np.vstack([r.feasible for r in rows])
    cost = np.vstack([r.cost for r in rows]) + scoring.tie_break
    sexes = np.array([r.patient.sex for r in rows])
    priority = np.array([r.priority for r in rows])
    room = scoring.table.room_of[scoring.cols]
    flexible = scoring.flexible_empty  # only a bay nobody is in yet can receive both sexes at once
    while True:
        live_rows = np.flatnonzero(feasible.any(axis=1))
        live_cols = np.flatnonzero(feasible.any(axis=0))
        if live_rows.size == 0:
            return _Pass(scoring, rows, feasible, [])
        sub_feasible = feasible[np.ix_(live_rows, live_cols)]
        sub_cost = cost[np.ix_(live_rows, live_cols)]
        infeasible = (float(sub_cost[sub_feasible].max()) + 1.0) * (min(sub_cost.shape) + 1)
        sub = np.where(sub_feasible, sub_cost, infeasible)
        r_idx, c_idx = linear_sum_assignment(sub)
        pairs = [(int(live_rows[r]), int(live_cols[c])) for r, c in zip(r_idx, c_idx, strict=True) if sub_feasible[r, c]]
        mixed = _mixed_bays(pairs, sexes, room, flexible, priority)
        if not mixed:
            return _Pass(scoring, rows, feasible, sorted(pairs))
        for bay, loser in mixed:
            feasible[np.ix_(sexes == loser, room == bay)] = False


def _mixed_bays(
    pairs: list[tuple[int, int]], sexes: np.ndarray, room: np.ndarray, flexible: np.ndarray, priority: np.ndarray
) -> list[tuple[int, str]]:
    """(room, sex to close it to) for every empty flexible bay the solution fills with both sexes.

    The sex whose patients there carry more priority keeps the bay; a tie goes to the sex of
    the highest-ranked row there (rows are in priority order).
    """
    by_room: dict[int, dict[str, list[int]]] = {}
    for r, c in pairs:
        if flexible[c]:
            by_room.setdefault(int(room[c]), {}).setdefault(str(sexes[r]), []).append(r)
    out: list[tuple[int, str]] = []
    for bay, groups in sorted(by_room.items()):
        if len(groups) < 2:
            continue
        keep = max(groups, key=lambda s: (sum(priority[r] for r in groups[s]), -min(groups[s])))
        out.extend((bay, s) for s in sorted(groups) if s != keep)
    return out


def _no_bed(patient: WaitingPatient, hospital: Hospital, beds: Mapping[str, BedSnapshot], had: int) -> NoBed:
    """v1's per-unit refusals in the state after this run, led by 'outranked' when beds went to others."""
    result = place(patient.to_place(), hospital, beds)
    if not isinstance(result, NoBed):  # the passes stop only when no left-over row has a feasible bed
        raise AssertionError(f"matching left {patient.encounter_id} without a bed while {result.bed_id} fits")
    if not had:
        return result
    lead = Reason("outranked", f"{had} suitable bed{'s were' if had != 1 else ' was'} free but went to patients "
                               f"ranked ahead by acuity and time waited.")
    return NoBed((lead, *result.reasons), escalate_to=result.escalate_to)
