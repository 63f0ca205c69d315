"""The IHTC-2024 cost of a solution, recomputed from scratch, part by part.

This is the planner's reference: it follows the definitions of the official validator
(`IHTP_Validator.cc` on the competition's site) for every hard constraint and every soft cost,
and is checked in the tests against the published cost of every best-known and test solution.
The search keeps its own incremental counts (`allocator.planning.search`); the planner only
ever reports what this module computes on the solution it writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from allocator.planning.model import COST_PARTS, Instance, Solution

__all__ = ["VIOLATION_PARTS", "Evaluation", "evaluate"]

VIOLATION_PARTS = (
    "room_gender_mix",
    "patient_room_compatibility",
    "surgeon_overtime",
    "operating_theater_overtime",
    "mandatory_unscheduled",
    "admission_day",
    "room_capacity",
    "nurse_presence",
    "uncovered_room",
)

# The short names the competition's test solutions use in their `costs` line.
COST_LABELS = {
    "room_mixed_age": "AgeMix",
    "room_nurse_skill": "Skill",
    "continuity_of_care": "Continuity",
    "nurse_eccessive_workload": "Excess",
    "open_operating_theater": "OpenOT",
    "surgeon_transfer": "SurgeonTransfer",
    "patient_delay": "Delay",
    "unscheduled_optional": "Unscheduled",
}


@dataclass(frozen=True)
class Evaluation:
    violations: dict[str, int]  # VIOLATION_PARTS -> count (validator units)
    counts: dict[str, int]  # COST_PARTS -> unweighted count
    costs: dict[str, int]  # COST_PARTS -> weight x count

    @property
    def total_violations(self) -> int:
        return sum(self.violations.values())

    @property
    def feasible(self) -> bool:
        return self.total_violations == 0

    @property
    def total_cost(self) -> int:
        return sum(self.costs.values())

    def cost_line(self) -> str:
        """The one-line summary in the format of the competition's test solutions."""
        parts = ", ".join(f"{COST_LABELS[k]}: {v}" for k, v in self.costs.items())
        return f"Cost: {self.total_cost}, {parts}"

    def to_dict(self) -> dict[str, object]:
        return {"total_cost": self.total_cost, "total_violations": self.total_violations,
                "costs": dict(self.costs), "violations": dict(self.violations)}


def evaluate(inst: Instance, sol: Solution) -> Evaluation:
    D, spd, T = inst.days, inst.shifts_per_day, inst.n_shifts
    P, PP, R = inst.n_patients, len(inst.person_ids), inst.n_rooms
    adm = np.concatenate([sol.admission, np.zeros(PP - P, dtype=np.int64)])
    room = np.concatenate([sol.room, inst.occupant_room])
    present = adm >= 0

    # Who is in which room on which day (occupants from day 0, stays clipped at the horizon).
    room_day: list[list[list[int]]] = [[[] for _ in range(D)] for _ in range(R)]
    for p in np.flatnonzero(present).tolist():
        for d in range(adm[p], min(D, adm[p] + inst.length_of_stay[p])):
            room_day[room[p]][d].append(p)

    # Nurses: the room's carer is the last one listed; every listing carries the room's load.
    room_nurse = np.full((R, T), -1, dtype=np.int64)
    nurse_rooms: dict[tuple[int, int], list[int]] = {}
    presence = 0
    for n, r, s in sol.nurse_assignments.tolist():
        room_nurse[r, s] = n
        nurse_rooms.setdefault((n, s), []).append(r)
    for r in range(R):
        for s in range(T):
            n = room_nurse[r, s]
            if n >= 0 and not inst.nurse_works[n, s]:
                presence += 1

    gender_mix = capacity = age_mix = skill = uncovered = 0
    for r in range(R):
        for d in range(D):
            members = room_day[r][d]
            if not members:
                continue
            genders = inst.gender[members]
            gender_mix += int(min(np.sum(genders == 0), np.sum(genders == 1)))
            capacity += max(0, len(members) - int(inst.room_capacity[r]))
            ages = inst.age[members]
            age_mix += int(ages.max() - ages.min())
            for s in range(d * spd, (d + 1) * spd):
                n = room_nurse[r, s]
                if n < 0:
                    uncovered += 1
                    continue
                offsets = s - adm[members] * spd
                need = inst.skill_required[members, offsets]
                skill += int(np.maximum(need - inst.nurse_skill[n], 0).sum())

    excess = 0
    for (n, s), rooms in nurse_rooms.items():
        if not inst.nurse_works[n, s]:
            continue  # the validator only sums the load of working shifts
        d = s // spd
        load = 0
        for r in rooms:
            members = room_day[r][d]
            if members:
                load += int(inst.workload[members, s - adm[members] * spd].sum())
        excess += max(0, load - int(inst.nurse_max_load[n, s]))

    continuity = 0
    for p in np.flatnonzero(present).tolist():
        seen = set()
        for d in range(adm[p], min(D, adm[p] + inst.length_of_stay[p])):
            for s in range(d * spd, (d + 1) * spd):
                if room_nurse[room[p], s] >= 0:
                    seen.add(int(room_nurse[room[p], s]))
        continuity += len(seen)

    scheduled = np.flatnonzero(sol.admission >= 0)
    a, t = sol.admission[scheduled], sol.theatre[scheduled]
    dur, surg = inst.surgery_duration[scheduled], inst.surgeon[scheduled]
    ot_load = np.zeros((inst.n_theatres, D), dtype=np.int64)
    np.add.at(ot_load, (t, a), dur)
    s_load = np.zeros((len(inst.surgeon_ids), D), dtype=np.int64)
    np.add.at(s_load, (surg, a), dur)
    s_ot = np.zeros((len(inst.surgeon_ids), D, inst.n_theatres), dtype=np.int64)
    np.add.at(s_ot, (surg, a, t), 1)
    ot_count = np.zeros((inst.n_theatres, D), dtype=np.int64)
    np.add.at(ot_count, (t, a), 1)
    n_ot = (s_ot > 0).sum(axis=2)

    rel = inst.release_day[scheduled]
    violations = {
        "room_gender_mix": gender_mix,
        "patient_room_compatibility": int(inst.incompatible[scheduled, sol.room[scheduled]].sum()),
        "surgeon_overtime": int(np.maximum(s_load - inst.surgeon_max, 0).sum()),
        "operating_theater_overtime": int(np.maximum(ot_load - inst.theatre_availability, 0).sum()),
        "mandatory_unscheduled": int(np.sum(inst.mandatory & (sol.admission < 0))),
        "admission_day": int(np.sum((a < rel) | (a > inst.last_day[scheduled]))),
        "room_capacity": capacity,
        "nurse_presence": presence,
        "uncovered_room": uncovered,
    }
    counts = {
        "room_mixed_age": age_mix,
        "room_nurse_skill": skill,
        "continuity_of_care": continuity,
        "nurse_eccessive_workload": excess,
        "open_operating_theater": int((ot_count > 0).sum()),
        "surgeon_transfer": int(np.maximum(n_ot - 1, 0).sum()),
        "patient_delay": int(np.maximum(a - rel, 0).sum()),
        "unscheduled_optional": int(np.sum(~inst.mandatory & (sol.admission < 0))),
    }
    costs = {k: int(inst.weights[i]) * counts[k] for i, k in enumerate(COST_PARTS)}
    return Evaluation(violations, counts, costs)
