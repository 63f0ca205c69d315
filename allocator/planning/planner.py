"""Plan an IHTC-2024 instance: greedy construction, then simulated annealing, then the evaluator.

Determinism: the annealing runs a fixed budget of moves, ``time_limit x moves_per_second``
(`DEFAULT_MOVES_PER_SECOND`, set below what this code does on a free core of the development
machine), with its temperature a function of the move number, and a seeded generator. The same
instance, seed and time limit therefore give the same plan on any machine that completes the
budget in time. On a slower or busier machine the cooling follows the clock instead (so the run
still ends cold and within the limit), `PlanResult.stopped_by` says "clock", and the plan may
then differ from run to run. A little of the limit is kept back for the final polish.

The cost reported is always `evaluate()` on the solution that is returned, never the search's
own running count (the two are compared, and a difference is a bug that stops the run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from allocator.planning import search
from allocator.planning.evaluate import Evaluation, evaluate
from allocator.planning.model import COST_PARTS, Instance, Solution

__all__ = ["DEFAULT_MOVES_PER_SECOND", "PlanResult", "Progress", "plan"]

DEFAULT_MOVES_PER_SECOND = 300_000
CHUNK = 100_000
REPAIR_TRIES = 200_000
REPAIR_MIN_TRIES = 20_000
POLISH_PASSES = 3  # descent passes over the best plan at the end
T0_FACTOR = 2.0  # starting temperature: this times the largest weight
# Move mix: patient moves, patient room swaps, single nurse changes/swaps, nurse runs (sum 1).
MOVE_PROBS = np.array([0.55, 0.20, 0.15, 0.10, 0.03])  # last: chance of an ejection move
# Ejection moves: chance of trying an optional patient left out; re-place those taken out at their best slot (1) or
# the first feasible one (0).
KNOBS = np.array([0.0, 0.0, 1.0])
T1 = 0.5  # final temperature


@dataclass(frozen=True)
class Progress:
    moves_done: int
    moves_total: int
    elapsed_s: float
    best_cost: int
    best_parts: dict[str, int]  # COST_PARTS -> weighted cost
    mandatory_missing: int


@dataclass(frozen=True)
class PlanResult:
    solution: Solution
    evaluation: Evaluation
    greedy_solution: Solution
    greedy_evaluation: Evaluation
    moves: int  # annealing moves tried (fewer than the budget when the clock cut or sped up the schedule)
    moves_budget: int
    elapsed_s: float
    greedy_s: float
    stopped_by: str  # "moves" (deterministic) or "clock" (the clock cut or sped up the schedule)
    seed: int


def _solution(pb: search.Problem, adm: np.ndarray, room: np.ndarray, ot: np.ndarray, nurse_of: np.ndarray,
              inst: Instance) -> Solution:
    """Nurse rows only for rooms someone occupies in that shift (an empty room needs no nurse)."""
    D, spd, P = pb.D, pb.spd, pb.P
    occupied = np.zeros((pb.R, D), dtype=bool)
    for p in range(pb.PP):
        d = adm[p] if p < P else 0
        r = room[p] if p < P else inst.occupant_room[p - P]
        if d >= 0:
            occupied[r, d : min(D, d + pb.los[p])] = True
    rows = [(int(nurse_of[r, s]), r, s) for r in range(pb.R) for s in range(pb.T)
            if occupied[r, s // spd] and nurse_of[r, s] >= 0]
    rows.sort(key=lambda x: (x[0], x[2], x[1]))
    return Solution(adm.copy(), room.copy(), ot.copy(), np.array(rows, dtype=np.int64).reshape(-1, 3))


def _order(inst: Instance) -> np.ndarray:
    """Mandatory patients by due day (tightest first, longer surgery first), then optional ones by release."""
    P = inst.n_patients
    key_m = [(0, int(inst.last_day[p]), int(inst.last_day[p] - inst.release_day[p]), -int(inst.surgery_duration[p]), p)
             for p in range(P) if inst.mandatory[p]]
    key_o = [(1, int(inst.release_day[p]), 0, -int(inst.surgery_duration[p]), p) for p in range(P) if not inst.mandatory[p]]
    return np.array([k[-1] for k in sorted(key_m) + sorted(key_o)], dtype=np.int64)


def _check(ev: Evaluation, comp: np.ndarray, what: str) -> None:
    ours = {part: int(comp[i]) for i, part in enumerate(COST_PARTS)}
    if ours != ev.counts or int(comp[8]) != ev.violations["mandatory_unscheduled"]:
        raise RuntimeError(f"planner bug: the search's {what} counts {ours} differ from the evaluator's {ev.counts}")


def plan(inst: Instance, *, time_limit: float, seed: int, moves_per_second: int | None = None,
         progress: Callable[[Progress], None] | None = None) -> PlanResult:
    start = time.perf_counter()
    deadline = start + time_limit
    pb = search.make_problem(inst)
    occ = np.zeros((pb.R, pb.D), dtype=np.int64)
    for o, r in enumerate(inst.occupant_room.tolist()):
        occ[r, : min(pb.D, int(inst.length_of_stay[inst.n_patients + o]))] += 1
    st = search.new_state(pb, int(occ.max(initial=0)))
    ej = [np.zeros(pb.P + 1, dtype=np.int64) for _ in range(5)]
    search.construct(pb, st, inst.occupant_room, _order(inst), 0)
    construct_s = time.perf_counter() - start
    # kept back for the polish, which costs about what the construction did per pass
    sa_deadline = deadline - min(0.1 * time_limit, POLISH_PASSES * construct_s)
    if st.comp[8] > 0:
        search.seed_rng(0)  # the greedy's repair is seeded on its own: one greedy per instance
        for i in range(REPAIR_TRIES // 5_000):
            # feasibility first: at least REPAIR_MIN_TRIES whatever the clock, then up to half the limit
            if st.comp[8] == 0 or (i * 5_000 >= REPAIR_MIN_TRIES and time.perf_counter() >= start + time_limit / 2):
                break
            search.repair(pb, st, 5_000, *ej)
    greedy = _solution(pb, st.adm[: pb.P], st.room[: pb.P], st.ot, st.nurse_of, inst)
    greedy_ev = evaluate(inst, greedy)
    _check(greedy_ev, st.comp, "greedy")
    greedy_s = time.perf_counter() - start

    budget = max(1, int(time_limit * (moves_per_second or DEFAULT_MOVES_PER_SECOND)))
    best_adm, best_room, best_ot = st.adm[: pb.P].copy(), st.room[: pb.P].copy(), st.ot.copy()
    best_nurse, best_comp = st.nurse_of.copy(), st.comp.copy()
    best_cost = int(search.total_cost(pb, st))
    log_s = np.zeros(pb.T, dtype=np.int64)
    log_n = np.zeros(pb.T, dtype=np.int64)
    # Hot enough to give up an optional admission early on, cold enough at the end to be a descent.
    t0 = float(max(1, inst.weights.max())) * T0_FACTOR
    t1 = T1
    search.seed_rng(seed)
    done = executed = 0
    stopped_by = "moves"
    sa_start = time.perf_counter()
    while done < budget:
        now = time.perf_counter()
        if now >= sa_deadline:
            stopped_by = "clock"
            break
        # Behind schedule (slow or busy machine): jump the cooling ahead to where the clock is,
        # so the run still ends cold; the plan then depends on timing (stopped_by = "clock").
        on_clock = int(budget * (now - sa_start) / max(1e-9, sa_deadline - sa_start))
        if on_clock > done + CHUNK:
            done = on_clock
            stopped_by = "clock"
            continue
        n = min(CHUNK, budget - done)
        executed += n
        best_cost = int(search.anneal(pb, st, n, done, budget, t0, t1, MOVE_PROBS, KNOBS, best_adm, best_room, best_ot,
                                      best_nurse, best_comp, best_cost, log_s, log_n, *ej))
        done += n
        if progress is not None:
            progress(Progress(done, budget, time.perf_counter() - start, best_cost,
                              {part: int(inst.weights[i] * best_comp[i]) for i, part in enumerate(COST_PARTS)},
                              int(best_comp[8])))
    # Polish the best plan found: best re-insertion of each patient and best nurse per room-shift.
    final = search.new_state(pb, int(occ.max(initial=0)))
    search.load_plan(pb, final, inst.occupant_room, best_adm, best_room, best_ot, best_nurse)
    for _ in range(POLISH_PASSES if final.comp[8] == 0 else 0):
        if time.perf_counter() >= deadline:
            stopped_by = "clock"
            break
        before = int(search.total_cost(pb, final))
        search.polish(pb, final, 1)
        if int(search.total_cost(pb, final)) >= before:
            break
    if int(search.total_cost(pb, final)) < best_cost:
        best_adm, best_room, best_ot = final.adm[: pb.P].copy(), final.room[: pb.P].copy(), final.ot.copy()
        best_nurse, best_comp = final.nurse_of.copy(), final.comp.copy()
    sol = _solution(pb, best_adm, best_room, best_ot, best_nurse, inst)
    ev = evaluate(inst, sol)
    _check(ev, best_comp, "best")
    return PlanResult(sol, ev, greedy, greedy_ev, executed, budget, time.perf_counter() - start, greedy_s, stopped_by, seed)
