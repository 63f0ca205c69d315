"""IHTC-2024 planning instances and solutions: read once at the edge into typed, frozen arrays.

The JSON formats are the competition's (`ihtc2024/ihtc2024.github.io`, `index.html`). Reading is
strict: a missing or mistyped field, an unknown room/surgeon/theatre/nurse id, a workload array
shorter than the stay or an admission outside the horizon is refused with `PlanningInputError`
naming the file, the field path (``patients[12].surgeon_id``) and the problem, never half-read.

Indices used everywhere else in `allocator.planning`:

* persons: the instance's patients first (``0 .. P-1``, in file order), then its occupants
  (``P .. P+O-1``), so per-person arrays (gender, age group, workload...) cover both;
* shifts: global index ``day * shifts_per_day + shift_type`` as in the official validator;
* genders: ``A`` is 0, ``B`` is 1; age groups and skill levels: their index in the instance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocator.exceptions import PlanningInputError

__all__ = [
    "COST_PARTS",
    "Instance",
    "Solution",
    "instance_from_dict",
    "load_instance",
    "load_solution",
    "solution_to_json",
    "write_solution",
]

# The soft cost parts in the order of the instance's `weights` object and the validator's report.
COST_PARTS = (
    "room_mixed_age",
    "room_nurse_skill",
    "continuity_of_care",
    "nurse_eccessive_workload",
    "open_operating_theater",
    "surgeon_transfer",
    "patient_delay",
    "unscheduled_optional",
)



class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Weights(_Strict):
    room_mixed_age: int = Field(ge=0)
    room_nurse_skill: int = Field(ge=0)
    continuity_of_care: int = Field(ge=0)
    nurse_eccessive_workload: int = Field(ge=0)
    open_operating_theater: int = Field(ge=0)
    surgeon_transfer: int = Field(ge=0)
    patient_delay: int = Field(ge=0)
    unscheduled_optional: int = Field(ge=0)


class _Occupant(_Strict):
    id: str
    gender: Literal["A", "B"]
    age_group: str
    length_of_stay: int = Field(ge=1)
    workload_produced: list[int]
    skill_level_required: list[int]
    room_id: str


class _Patient(_Strict):
    id: str
    mandatory: bool
    gender: Literal["A", "B"]
    age_group: str
    length_of_stay: int = Field(ge=1)
    surgery_release_day: int = Field(ge=0)
    surgery_due_day: int | None = None
    surgery_duration: int = Field(ge=0)
    surgeon_id: str
    incompatible_room_ids: list[str] = []
    workload_produced: list[int]
    skill_level_required: list[int]


class _Surgeon(_Strict):
    id: str
    max_surgery_time: list[int]


class _Theatre(_Strict):
    id: str
    availability: list[int]


class _Room(_Strict):
    id: str
    capacity: int = Field(ge=0)


class _Shift(_Strict):
    day: int = Field(ge=0)
    shift: str
    max_load: int = Field(ge=0)


class _Nurse(_Strict):
    id: str
    skill_level: int = Field(ge=0)
    working_shifts: list[_Shift]


class _InstanceFile(_Strict):
    days: int = Field(ge=1)
    skill_levels: int = Field(ge=1)
    shift_types: list[str] = Field(min_length=1)
    age_groups: list[str] = Field(min_length=1)
    weights: _Weights
    occupants: list[_Occupant]
    patients: list[_Patient]
    surgeons: list[_Surgeon]
    operating_theaters: list[_Theatre]
    rooms: list[_Room]
    nurses: list[_Nurse]


class _SolPatient(_Strict):
    id: str
    admission_day: int | Literal["none"]
    room: str | None = None
    operating_theater: str | None = None


class _SolAssignment(_Strict):
    day: int
    shift: str
    rooms: list[str]


class _SolNurse(_Strict):
    id: str
    assignments: list[_SolAssignment]


class _SolutionFile(_Strict):
    patients: list[_SolPatient]
    nurses: list[_SolNurse] = []


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_json(path: Path, model: type[BaseModel]) -> Any:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanningInputError(file, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanningInputError(file, None, f"cannot read the file: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanningInputError(file, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise PlanningInputError(file, _loc(tuple(err["loc"])) or None, err["msg"].lower() + more) from None


@dataclass(frozen=True, eq=False)
class Instance:
    """One IHTC-2024 instance as arrays (see the module docstring for the index conventions)."""

    name: str
    days: int
    shift_types: tuple[str, ...]
    age_groups: tuple[str, ...]
    skill_levels: int
    weights: np.ndarray  # int64[8], COST_PARTS order
    room_ids: tuple[str, ...]
    room_capacity: np.ndarray  # [R]
    theatre_ids: tuple[str, ...]
    theatre_availability: np.ndarray  # [OT, D]
    surgeon_ids: tuple[str, ...]
    surgeon_max: np.ndarray  # [S, D]
    nurse_ids: tuple[str, ...]
    nurse_skill: np.ndarray  # [N]
    nurse_works: np.ndarray  # bool [N, T]
    nurse_max_load: np.ndarray  # [N, T], 0 where not working
    person_ids: tuple[str, ...]  # patients then occupants
    n_patients: int
    gender: np.ndarray  # [PP] 0=A 1=B
    age: np.ndarray  # [PP]
    length_of_stay: np.ndarray  # [PP]
    workload: np.ndarray  # [PP, maxlen] padded with 0
    skill_required: np.ndarray  # [PP, maxlen]
    mandatory: np.ndarray  # bool [P]
    release_day: np.ndarray  # [P]
    last_day: np.ndarray  # [P]: due day if mandatory, else days-1
    surgery_duration: np.ndarray  # [P]
    surgeon: np.ndarray  # [P]
    incompatible: np.ndarray  # bool [P, R]
    occupant_room: np.ndarray  # [O]

    @property
    def shifts_per_day(self) -> int:
        return len(self.shift_types)

    @property
    def n_shifts(self) -> int:
        return self.days * len(self.shift_types)

    @property
    def n_occupants(self) -> int:
        return len(self.person_ids) - self.n_patients

    @property
    def n_rooms(self) -> int:
        return len(self.room_ids)

    @property
    def n_nurses(self) -> int:
        return len(self.nurse_ids)

    @property
    def n_theatres(self) -> int:
        return len(self.theatre_ids)


def _index(ids: list[str], file: str, field: str, what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in out:
            raise PlanningInputError(file, f"{field}[{i}].id", f"duplicate {what} id {ident!r}")
        out[ident] = i
    return out


def load_instance(path: str | Path) -> Instance:
    """Read and check an instance file; raise `PlanningInputError` on the first problem."""
    path = Path(path)
    return _build_instance(_read_json(path, _InstanceFile), str(path), path.stem)


def instance_from_dict(data: dict[str, Any], *, name: str, file: str) -> Instance:
    """An instance from an in-memory document in the official format (`file` names it in errors)."""
    try:
        raw = _InstanceFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise PlanningInputError(file, _loc(tuple(err["loc"])) or None, err["msg"].lower()) from None
    return _build_instance(raw, file, name)


def _build_instance(raw: _InstanceFile, file: str, name: str) -> Instance:
    D, spd = raw.days, len(raw.shift_types)
    T = D * spd

    def bad(field: str, problem: str) -> PlanningInputError:
        return PlanningInputError(file, field, problem)

    shift_index = {name: i for i, name in enumerate(raw.shift_types)}
    age_index = {name: i for i, name in enumerate(raw.age_groups)}
    rooms = _index([r.id for r in raw.rooms], file, "rooms", "room")
    _index([t.id for t in raw.operating_theaters], file, "operating_theaters", "theatre")
    surgeons = _index([s.id for s in raw.surgeons], file, "surgeons", "surgeon")
    _index([n.id for n in raw.nurses], file, "nurses", "nurse")
    _index([p.id for p in raw.patients] + [o.id for o in raw.occupants], file, "patients", "patient/occupant")

    for i, s in enumerate(raw.surgeons):
        if len(s.max_surgery_time) != D:
            raise bad(f"surgeons[{i}].max_surgery_time", f"has {len(s.max_surgery_time)} days, the horizon has {D}")
    for i, t in enumerate(raw.operating_theaters):
        if len(t.availability) != D:
            raise bad(f"operating_theaters[{i}].availability", f"has {len(t.availability)} days, the horizon has {D}")

    nurse_skill = np.array([n.skill_level for n in raw.nurses], dtype=np.int64)
    nurse_works = np.zeros((len(raw.nurses), T), dtype=np.bool_)
    nurse_max = np.zeros((len(raw.nurses), T), dtype=np.int64)
    for i, n in enumerate(raw.nurses):
        for k, w in enumerate(n.working_shifts):
            where = f"nurses[{i}].working_shifts[{k}]"
            if w.shift not in shift_index:
                raise bad(f"{where}.shift", f"unknown shift {w.shift!r}; the instance has {', '.join(raw.shift_types)}")
            if w.day >= D:
                raise bad(f"{where}.day", f"day {w.day} is outside the horizon 0..{D - 1}")
            slot = w.day * spd + shift_index[w.shift]
            nurse_works[i, slot] = True
            nurse_max[i, slot] = w.max_load
        if n.skill_level >= raw.skill_levels:
            raise bad(f"nurses[{i}].skill_level", f"{n.skill_level} is not below skill_levels={raw.skill_levels}")

    people: list[tuple[str, Any, str]] = [("patients", p, p.id) for p in raw.patients]
    people += [("occupants", o, o.id) for o in raw.occupants]
    PP = len(people)
    maxlen = max([p.length_of_stay * spd for _, p, _ in people] or [1])
    gender = np.zeros(PP, dtype=np.int64)
    age = np.zeros(PP, dtype=np.int64)
    los = np.zeros(PP, dtype=np.int64)
    workload = np.zeros((PP, maxlen), dtype=np.int64)
    skill = np.zeros((PP, maxlen), dtype=np.int64)
    P = len(raw.patients)
    for k, (section, person, _) in enumerate(people):
        idx = k if section == "patients" else k - P
        where = f"{section}[{idx}]"
        if person.age_group not in age_index:
            raise bad(f"{where}.age_group", f"unknown age group {person.age_group!r}")
        gender[k] = 0 if person.gender == "A" else 1
        age[k] = age_index[person.age_group]
        los[k] = person.length_of_stay
        need = person.length_of_stay * spd
        for name, arr in (("workload_produced", workload), ("skill_level_required", skill)):
            values = getattr(person, name)
            if len(values) < need:
                raise bad(f"{where}.{name}", f"has {len(values)} shifts, the stay needs {need}")
            if any(v < 0 for v in values):
                raise bad(f"{where}.{name}", "has a negative value")
            arr[k, :need] = values[:need]
        if np.any(skill[k, :need] >= raw.skill_levels):
            raise bad(f"{where}.skill_level_required", f"has a level not below skill_levels={raw.skill_levels}")

    mandatory = np.array([p.mandatory for p in raw.patients], dtype=np.bool_)
    release = np.array([p.surgery_release_day for p in raw.patients], dtype=np.int64)
    last = np.full(P, D - 1, dtype=np.int64)
    duration = np.array([p.surgery_duration for p in raw.patients], dtype=np.int64)
    surgeon = np.zeros(P, dtype=np.int64)
    incompatible = np.zeros((P, len(raw.rooms)), dtype=np.bool_)
    for i, p in enumerate(raw.patients):
        where = f"patients[{i}]"
        if p.mandatory:
            if p.surgery_due_day is None:
                raise bad(f"{where}.surgery_due_day", "missing for a mandatory patient")
            last[i] = p.surgery_due_day
        if p.surgeon_id not in surgeons:
            raise bad(f"{where}.surgeon_id", f"unknown surgeon {p.surgeon_id!r}")
        surgeon[i] = surgeons[p.surgeon_id]
        for j, rid in enumerate(p.incompatible_room_ids):
            if rid not in rooms:
                raise bad(f"{where}.incompatible_room_ids[{j}]", f"unknown room {rid!r}")
            incompatible[i, rooms[rid]] = True
    occ_room = np.zeros(len(raw.occupants), dtype=np.int64)
    for i, o in enumerate(raw.occupants):
        if o.room_id not in rooms:
            raise bad(f"occupants[{i}].room_id", f"unknown room {o.room_id!r}")
        occ_room[i] = rooms[o.room_id]

    weights = raw.weights
    return Instance(
        name=name,
        days=D,
        shift_types=tuple(raw.shift_types),
        age_groups=tuple(raw.age_groups),
        skill_levels=raw.skill_levels,
        weights=np.array([getattr(weights, part) for part in COST_PARTS], dtype=np.int64),
        room_ids=tuple(r.id for r in raw.rooms),
        room_capacity=np.array([r.capacity for r in raw.rooms], dtype=np.int64),
        theatre_ids=tuple(t.id for t in raw.operating_theaters),
        theatre_availability=np.array([t.availability for t in raw.operating_theaters], dtype=np.int64).reshape(-1, D),
        surgeon_ids=tuple(s.id for s in raw.surgeons),
        surgeon_max=np.array([s.max_surgery_time for s in raw.surgeons], dtype=np.int64).reshape(-1, D),
        nurse_ids=tuple(n.id for n in raw.nurses),
        nurse_skill=nurse_skill,
        nurse_works=nurse_works,
        nurse_max_load=nurse_max,
        person_ids=tuple(ident for _, _, ident in people),
        n_patients=P,
        gender=gender,
        age=age,
        length_of_stay=los,
        workload=workload,
        skill_required=skill,
        mandatory=mandatory,
        release_day=release,
        last_day=last,
        surgery_duration=duration,
        surgeon=surgeon,
        incompatible=incompatible,
        occupant_room=occ_room,
    )


@dataclass(frozen=True, eq=False)
class Solution:
    """Admission day (-1: not admitted), room and theatre per patient, and the nurse assignments.

    `nurse_assignments` is an int array of rows ``(nurse, room, shift)`` in file order; a room
    listed twice in one shift keeps the last nurse as its carer (as the official validator does)
    while both nurses carry its workload.
    """

    admission: np.ndarray  # [P]
    room: np.ndarray  # [P]
    theatre: np.ndarray  # [P]
    nurse_assignments: np.ndarray  # [K, 3]


def load_solution(path: str | Path, instance: Instance) -> Solution:
    """Read a solution file for `instance`; raise `PlanningInputError` on the first problem."""
    path = Path(path)
    file = str(path)
    raw: _SolutionFile = _read_json(path, _SolutionFile)
    P = instance.n_patients
    patients = {ident: i for i, ident in enumerate(instance.person_ids[:P])}
    rooms = {ident: i for i, ident in enumerate(instance.room_ids)}
    theatres = {ident: i for i, ident in enumerate(instance.theatre_ids)}
    nurses = {ident: i for i, ident in enumerate(instance.nurse_ids)}
    shifts = {name: i for i, name in enumerate(instance.shift_types)}
    adm = np.full(P, -1, dtype=np.int64)
    room = np.full(P, -1, dtype=np.int64)
    theatre = np.full(P, -1, dtype=np.int64)
    seen: set[int] = set()
    for i, sp in enumerate(raw.patients):
        where = f"patients[{i}]"
        if sp.id not in patients:
            raise PlanningInputError(file, f"{where}.id", f"unknown patient {sp.id!r}")
        p = patients[sp.id]
        if p in seen:
            raise PlanningInputError(file, f"{where}.id", f"patient {sp.id!r} listed twice")
        seen.add(p)
        if sp.admission_day == "none":
            continue
        if not 0 <= sp.admission_day < instance.days:
            raise PlanningInputError(file, f"{where}.admission_day",
                                     f"day {sp.admission_day} is outside the horizon 0..{instance.days - 1}")
        if sp.room not in rooms:
            raise PlanningInputError(file, f"{where}.room", f"unknown or missing room {sp.room!r}")
        if sp.operating_theater not in theatres:
            raise PlanningInputError(file, f"{where}.operating_theater",
                                     f"unknown or missing theatre {sp.operating_theater!r}")
        adm[p], room[p], theatre[p] = sp.admission_day, rooms[sp.room], theatres[sp.operating_theater]
    rows: list[tuple[int, int, int]] = []
    spd = instance.shifts_per_day
    for i, sn in enumerate(raw.nurses):
        if sn.id not in nurses:
            raise PlanningInputError(file, f"nurses[{i}].id", f"unknown nurse {sn.id!r}")
        n = nurses[sn.id]
        for k, a in enumerate(sn.assignments):
            where = f"nurses[{i}].assignments[{k}]"
            if a.shift not in shifts:
                raise PlanningInputError(file, f"{where}.shift", f"unknown shift {a.shift!r}")
            if not 0 <= a.day < instance.days:
                raise PlanningInputError(file, f"{where}.day", f"day {a.day} is outside the horizon")
            s = a.day * spd + shifts[a.shift]
            for j, rid in enumerate(a.rooms):
                if rid not in rooms:
                    raise PlanningInputError(file, f"{where}.rooms[{j}]", f"unknown room {rid!r}")
                rows.append((n, rooms[rid], s))
    return Solution(adm, room, theatre, np.array(rows, dtype=np.int64).reshape(-1, 3))


def solution_to_json(instance: Instance, sol: Solution, costs: list[str] | None = None) -> dict[str, Any]:
    """The official solution format; nurses list every shift they work, with the rooms they cover."""
    P, spd = instance.n_patients, instance.shifts_per_day
    patients: list[dict[str, Any]] = []
    for p in range(P):
        ident = instance.person_ids[p]
        if sol.admission[p] < 0:
            patients.append({"id": ident, "admission_day": "none"})
        else:
            patients.append({"id": ident, "admission_day": int(sol.admission[p]),
                             "room": instance.room_ids[sol.room[p]],
                             "operating_theater": instance.theatre_ids[sol.theatre[p]]})
    by_nurse_shift: dict[tuple[int, int], list[str]] = {}
    for n, r, s in sol.nurse_assignments.tolist():
        by_nurse_shift.setdefault((n, s), []).append(instance.room_ids[r])
    nurses = []
    for n, ident in enumerate(instance.nurse_ids):
        # every shift the nurse works (an empty room list when she covers none), and any other
        # shift she was given, so a non-working assignment shows up in validation, never vanishes
        shifts = set(np.flatnonzero(instance.nurse_works[n]).tolist()) | {s for (m, s) in by_nurse_shift if m == n}
        assignments = [{"day": s // spd, "shift": instance.shift_types[s % spd], "rooms": by_nurse_shift.get((n, s), [])}
                       for s in sorted(shifts)]
        nurses.append({"id": ident, "assignments": assignments})
    out: dict[str, Any] = {"patients": patients, "nurses": nurses}
    if costs is not None:
        out["costs"] = costs
    return out


def write_solution(path: str | Path, instance: Instance, sol: Solution, costs: list[str] | None = None) -> None:
    """Write atomically (temp file then rename) so a crash never leaves half a solution."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(solution_to_json(instance, sol, costs), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
