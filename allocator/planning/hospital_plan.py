"""The hospital's own elective plan: the IHTC-2024 problem built from the hospital YAML and a list
of elective patients, and the plan read back as planned admissions.

The hospital file's optional `planning:` section (`allocator.hospital.PlanningConfig`) names the
units whose rooms take elective patients, the operating theatres and surgeons with their minutes
per weekday, and the nurses with their skill, load and weekly rota. The electives file (YAML or
JSON, format in docs/planning.md) gives the plan's first date and length, the patients waiting
(surgeon, surgery minutes, stay, earliest and latest dates, age group, sex, nursing workload and
skill per shift) and the patients already in the planned rooms. The rooms keep the hospital's
rules: a room's beds are its capacity, a designated bay takes only its sex, nobody shares a
room with the other sex (the IHTC gender rule), and sex `X` is planned into single rooms only.

Everything is checked here, once, and a problem is refused as `PlanningInputError` naming the
file, the field path (``electives[3].surgeon``) and the problem; the IHTC document built from it
then goes through the same reader as the competition's instances.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocator.exceptions import HospitalConfigError, PlanningInputError
from allocator.hospital import WEEKDAYS, Hospital, Text, _path, _problem, _read_yaml
from allocator.planning.model import Instance, Solution, instance_from_dict

__all__ = [
    "Electives",
    "HospitalProblem",
    "PlannedAdmission",
    "build_problem",
    "load_electives",
    "not_planned",
    "planned_admissions",
]

MAX_DAYS = 56  # eight weeks: longer horizons are re-planned, not planned once


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Day = Annotated[date, Field(strict=False)]  # YAML gives a date, JSON an ISO string
PerShift = Annotated[int, Field(ge=0)] | list[Annotated[int, Field(ge=0)]]


class _PersonSpec(_Spec):
    patient_id: Text
    age_group: Text
    sex: Literal["F", "M", "X"]
    workload: PerShift
    skill: PerShift = 0


class _ElectiveSpec(_PersonSpec):
    surgeon: Text
    surgery_minutes: Annotated[int, Field(ge=1, le=24 * 60)]
    length_of_stay: Annotated[int, Field(ge=1)]
    earliest: Day
    latest: Day | None = None
    mandatory: bool = False
    unit: Text | None = None


class _OccupantSpec(_PersonSpec):
    room: Text
    days_left: Annotated[int, Field(ge=1)]


class Electives(_Spec):
    """An electives file as read (typed and checked for types; references are checked by `build_problem`)."""

    hospital_id: Text | None = None
    plan_id: Text | None = None
    start_date: Day
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 14
    electives: Annotated[list[_ElectiveSpec], Field(min_length=1)]
    occupants: list[_OccupantSpec] = []


def load_electives(path: str | Path) -> Electives:
    """Read an electives file (`.json` as JSON, anything else as YAML); `PlanningInputError` on a problem."""
    path = Path(path)
    file = str(path)
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PlanningInputError(file, None, "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanningInputError(file, None, f"cannot read the file: {exc}") from None
        except json.JSONDecodeError as exc:
            raise PlanningInputError(file, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}") from None
    else:
        try:
            raw = _read_yaml(file, path)
        except HospitalConfigError as exc:
            raise PlanningInputError(exc.file, exc.field, exc.problem) from None
    if not isinstance(raw, dict):
        raise PlanningInputError(file, "top level", "must be a mapping with start_date and an electives list")
    try:
        return Electives.model_validate(raw)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise PlanningInputError(file, _path(first["loc"]), _problem(first) + more) from None


@dataclass(frozen=True)
class PlannedAdmission:
    """One elective patient's place in the plan: what a `planned_admission` decision carries."""

    patient_id: str
    day: int  # 0 = the plan's start_date
    date: date
    unit: str
    room: str
    theatre: str
    surgeon: str
    length_of_stay: int
    mandatory: bool
    delay_days: int  # days after the earliest date (the planner's patient_delay)


@dataclass(frozen=True)
class HospitalProblem:
    """The IHTC instance of a hospital's electives, and what it takes to read a plan of it back."""

    instance: Instance
    hospital_id: str
    plan_id: str
    start_date: date
    room_unit: tuple[str, ...]  # per instance room
    mandatory: tuple[bool, ...]  # per instance patient, as the electives file says
    outside_horizon: tuple[str, ...]  # electives whose earliest date is after the plan's last day
    due_after_horizon: tuple[str, ...]  # mandatory electives due after the last day: optional in this plan

    def day_date(self, day: int) -> date:
        return self.start_date + timedelta(days=day)


def _per_shift(value: int | list[int], need: int, where: str, file: str, what: str) -> list[int]:
    if isinstance(value, int):
        return [value] * need
    if len(value) != need:
        raise PlanningInputError(file, where, f"has {len(value)} values; the stay needs one per shift ({need}), "
                                              f"or give one number for every shift of the {what}")
    return list(value)


def _plan_id(hospital_id: str, electives: Electives) -> str:
    digest = hashlib.sha256(f"{hospital_id}\n{electives.model_dump_json()}".encode()).hexdigest()
    return f"plan-{electives.start_date.isoformat()}-{digest[:12]}"


def build_problem(hospital: Hospital, electives: Electives, *, hospital_file: str, electives_file: str) -> HospitalProblem:
    """The IHTC-2024 instance for `hospital`'s planning section and `electives`; every problem named."""
    file = electives_file
    cfg = hospital.planning
    if cfg is None:
        raise HospitalConfigError(hospital_file, f"hospital {hospital.hospital_id!r}",
                                  "has no `planning:` section; `wardflow plan --electives` needs its units, "
                                  "theatres, surgeons and nurses (see docs/planning.md)")
    if electives.hospital_id is not None and electives.hospital_id != hospital.hospital_id:
        raise PlanningInputError(file, "hospital_id", f"is {electives.hospital_id!r}, but the plan is for "
                                                      f"{hospital.hospital_id!r} (choose it with --hospital)")
    D, spd, start = electives.days, len(cfg.shifts), electives.start_date
    weekday = [WEEKDAYS[(start + timedelta(days=d)).weekday()] for d in range(D)]
    wd = [WEEKDAYS.index(w) for w in weekday]

    # rooms of the planned units, in config order: capacity = beds, the bay's sex, single or not
    rooms: list[tuple[str, str, int, bool, str | None]] = []  # id, unit, capacity, single, bay sex
    for code in cfg.units:
        seen: dict[str, list[Any]] = {}
        for bed in hospital.beds_in_unit(code):
            seen.setdefault(bed.room_id, []).append(bed)
        for room_id, beds in seen.items():
            rooms.append((room_id, code, len(beds), beds[0].single_room, beds[0].bay_sex))
    room_index = {r[0]: i for i, r in enumerate(rooms)}

    def incompatible_for(sex: str, unit: str | None) -> list[str]:
        out = []
        for room_id, code, _capacity, single, bay_sex in rooms:
            if unit is not None and code != unit:
                out.append(room_id)
            elif sex == "X" and not single:
                out.append(room_id)  # X: a single room (the IHTC gender rule knows two sexes)
            elif bay_sex is not None and bay_sex != sex:
                out.append(room_id)
        return out

    ages = set(cfg.age_groups)
    surgeons = {s.id for s in cfg.surgeons}
    ids: dict[str, str] = {}
    patients: list[dict[str, Any]] = []
    mandatory: list[bool] = []
    outside: list[str] = []
    due_after: list[str] = []
    for i, e in enumerate(electives.electives):
        where = f"electives[{i}]"
        if e.patient_id in ids:
            raise PlanningInputError(file, f"{where}.patient_id", f"patient {e.patient_id!r} is also {ids[e.patient_id]}")
        ids[e.patient_id] = where
        if e.surgeon not in surgeons:
            raise PlanningInputError(file, f"{where}.surgeon", f"unknown surgeon {e.surgeon!r}; planning.surgeons in "
                                                               f"{hospital_file} has {', '.join(sorted(surgeons))}")
        if e.age_group not in ages:
            raise PlanningInputError(file, f"{where}.age_group", f"unknown age group {e.age_group!r}; "
                                                                 f"planning.age_groups has {', '.join(cfg.age_groups)}")
        if e.unit is not None and e.unit not in cfg.units:
            raise PlanningInputError(file, f"{where}.unit", f"{e.unit!r} is not a planned unit; planning.units has "
                                                            f"{', '.join(cfg.units)}")
        if e.mandatory and e.latest is None:
            raise PlanningInputError(file, f"{where}.latest", "is required for a mandatory patient (the last date "
                                                              "the surgery may take place)")
        if e.latest is not None and e.latest < e.earliest:
            raise PlanningInputError(file, f"{where}.latest", f"{e.latest} is before earliest ({e.earliest})")
        if e.mandatory and e.latest is not None and e.latest < start:
            raise PlanningInputError(file, f"{where}.latest", f"{e.latest} is before start_date ({start}): the patient "
                                                              "is overdue; book them by hand or plan from an earlier date")
        release = max(0, (e.earliest - start).days)
        if release > D - 1:
            outside.append(e.patient_id)
            continue
        need = e.length_of_stay * spd
        workload = _per_shift(e.workload, need, f"{where}.workload", file, "stay")
        skill = _per_shift(e.skill, need, f"{where}.skill", file, "stay")
        if any(s >= cfg.skill_levels for s in skill):
            raise PlanningInputError(file, f"{where}.skill", f"must be below skill_levels ({cfg.skill_levels}) in "
                                                             f"{hospital_file}")
        incompatible = incompatible_for(e.sex, e.unit)
        if len(incompatible) == len(rooms):
            need_room = "a single room" if e.sex == "X" else f"a room for sex {e.sex}"
            raise PlanningInputError(file, where, f"no planned room can take this patient ({need_room}"
                                                  f"{' on unit ' + e.unit if e.unit else ''})")
        due = (e.latest - start).days if e.mandatory and e.latest is not None else None
        is_mandatory = e.mandatory and due is not None and due <= D - 1
        if e.mandatory and not is_mandatory:
            due_after.append(e.patient_id)
        patient: dict[str, Any] = {
            "id": e.patient_id, "mandatory": is_mandatory, "gender": "B" if e.sex == "M" else "A",
            "age_group": e.age_group, "length_of_stay": e.length_of_stay, "surgery_release_day": release,
            "surgery_duration": e.surgery_minutes, "surgeon_id": e.surgeon, "incompatible_room_ids": incompatible,
            "workload_produced": workload, "skill_level_required": skill}
        if is_mandatory:
            patient["surgery_due_day"] = due
        patients.append(patient)
        mandatory.append(e.mandatory)

    occupants: list[dict[str, Any]] = []
    in_room: dict[str, list[tuple[str, str]]] = {}  # room -> (sex, where)
    for i, o in enumerate(electives.occupants):
        where = f"occupants[{i}]"
        if o.patient_id in ids:
            raise PlanningInputError(file, f"{where}.patient_id", f"patient {o.patient_id!r} is also {ids[o.patient_id]}")
        ids[o.patient_id] = where
        if o.room not in room_index:
            raise PlanningInputError(file, f"{where}.room", f"{o.room!r} is not a room of the planned units "
                                                            f"({', '.join(cfg.units)})")
        if o.age_group not in ages:
            raise PlanningInputError(file, f"{where}.age_group", f"unknown age group {o.age_group!r}; "
                                                                 f"planning.age_groups has {', '.join(cfg.age_groups)}")
        _, _, capacity, single, bay_sex = rooms[room_index[o.room]]
        if o.sex == "X" and not single:
            raise PlanningInputError(file, f"{where}.sex", f"X in the bay {o.room!r}: the planner keeps sex X to single "
                                                           "rooms; give the sex the bay is managed as, or move the patient")
        if bay_sex is not None and o.sex != bay_sex:
            raise PlanningInputError(file, f"{where}.sex", f"{o.sex} in {o.room!r}, a designated {bay_sex} bay")
        for other_sex, other in in_room.get(o.room, []):
            if other_sex != o.sex:
                raise PlanningInputError(file, f"{where}.sex", f"{o.sex} in {o.room!r} with {other} ({other_sex}): "
                                                               "a room holds one sex")
        in_room.setdefault(o.room, []).append((o.sex, where))
        if len(in_room[o.room]) > capacity:
            raise PlanningInputError(file, f"{where}.room", f"{o.room!r} has {capacity} bed{'s' if capacity != 1 else ''} "
                                                            f"and more occupants")
        stay = min(o.days_left, D)  # the plan sees the stay up to its last day
        need = o.days_left * spd
        occupants.append({
            "id": o.patient_id, "gender": "B" if o.sex == "M" else "A", "age_group": o.age_group,
            "length_of_stay": stay, "room_id": o.room,
            "workload_produced": _per_shift(o.workload, need, f"{where}.workload", file, "days left")[: stay * spd],
            "skill_level_required": _per_shift(o.skill, need, f"{where}.skill", file, "days left")[: stay * spd]})
        if any(s >= cfg.skill_levels for s in occupants[-1]["skill_level_required"]):
            raise PlanningInputError(file, f"{where}.skill", f"must be below skill_levels ({cfg.skill_levels})")
    if not patients:
        raise PlanningInputError(file, "electives", f"every elective's earliest date is after the plan's last day "
                                                    f"({start + timedelta(days=D - 1)}): nothing to plan")

    w = cfg.weights
    doc = {
        "days": D, "skill_levels": cfg.skill_levels, "shift_types": list(cfg.shifts), "age_groups": list(cfg.age_groups),
        "weights": {"room_mixed_age": w.room_mixed_age, "room_nurse_skill": w.room_nurse_skill,
                    "continuity_of_care": w.continuity_of_care, "nurse_eccessive_workload": w.nurse_excessive_workload,
                    "open_operating_theater": w.open_operating_theatre, "surgeon_transfer": w.surgeon_transfer,
                    "patient_delay": w.patient_delay, "unscheduled_optional": w.unscheduled_optional},
        "occupants": occupants, "patients": patients,
        "surgeons": [{"id": s.id, "max_surgery_time": [s.minutes[k] for k in wd]} for s in cfg.surgeons],
        "operating_theaters": [{"id": t.id, "availability": [t.minutes[k] for k in wd]} for t in cfg.theatres],
        "rooms": [{"id": r[0], "capacity": r[2]} for r in rooms],
        "nurses": [{"id": n.id, "skill_level": n.skill_level,
                    "working_shifts": [{"day": d, "shift": s, "max_load": n.max_load}
                                       for d in range(D) for s in n.shifts[wd[d]]]} for n in cfg.nurses],
    }
    plan_id = electives.plan_id or _plan_id(hospital.hospital_id, electives)
    instance = instance_from_dict(doc, name=plan_id, file=file)
    return HospitalProblem(instance=instance, hospital_id=hospital.hospital_id, plan_id=plan_id, start_date=start,
                           room_unit=tuple(r[1] for r in rooms), mandatory=tuple(mandatory),
                           outside_horizon=tuple(outside), due_after_horizon=tuple(due_after))


def planned_admissions(problem: HospitalProblem, solution: Solution) -> list[PlannedAdmission]:
    """The admitted electives in plan order (day, then room, then patient id)."""
    inst = problem.instance
    out = []
    for p in range(inst.n_patients):
        day = int(solution.admission[p])
        if day < 0:
            continue
        room = int(solution.room[p])
        out.append(PlannedAdmission(
            patient_id=inst.person_ids[p], day=day, date=problem.day_date(day), unit=problem.room_unit[room],
            room=inst.room_ids[room], theatre=inst.theatre_ids[int(solution.theatre[p])],
            surgeon=inst.surgeon_ids[int(inst.surgeon[p])], length_of_stay=int(inst.length_of_stay[p]),
            mandatory=problem.mandatory[p], delay_days=day - int(inst.release_day[p])))
    out.sort(key=lambda a: (a.day, a.room, a.patient_id))
    return out


def not_planned(problem: HospitalProblem, solution: Solution) -> list[str]:
    """Electives left out of this plan (optional ones the planner chose not to admit in the horizon)."""
    inst = problem.instance
    return [inst.person_ids[p] for p in range(inst.n_patients) if solution.admission[p] < 0]
