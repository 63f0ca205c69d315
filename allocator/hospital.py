"""Hospital configuration: the units, beds and pagers one WardFlow worker places patients into.

A hospital is read once from YAML at start-up and then only read, so everything here is frozen
and every lookup the placement hot path makes is a precomputed dict access. The loader is strict
on purpose: a typo in a bed file would otherwise put a patient in the wrong bed, so every problem
is reported as one line naming the file, the field path and what is wrong.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from allocator.exceptions import HospitalConfigError
from allocator.locations import EncounterSource, Hl7Profile, LocationRule, TextSource, template_problem
from allocator.surge import LevelThresholds, SurgeConfig
from allocator.weights import ESI_LEVELS, AllocationWeights, Reserve, ReserveFeature, ScarceBedCosts

__all__ = [
    "DEMO_HOSPITAL_PATH",
    "HOSPITAL_ROLES",
    "UNIT_ROLES",
    "AllocationWeights",
    "Bed",
    "Hospital",
    "HospitalConfigError",
    "PlanningConfig",
    "PlanningNurse",
    "PlanningResource",
    "PlanningWeights",
    "Unit",
    "WEEKDAYS",
    "load_hospitals",
]

DEMO_HOSPITAL_PATH = Path(__file__).parent / "hospitals" / "demo.yaml"

# Pagers the rest of WardFlow escalates to; a hospital may list more roles than these.
HOSPITAL_ROLES = ("bed_manager", "critical_care_outreach", "rapid_response")
UNIT_ROLES = ("nurse_in_charge", "ward_doctor")

_BED_LETTERS = string.ascii_uppercase
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------------------- the plain data


@dataclass(frozen=True)
class Bed:
    """One bed with the features the hard placement constraints look at."""

    bed_id: str
    unit: str
    room_id: str
    single_room: bool
    negative_pressure: bool
    telemetry: bool
    bariatric: bool
    bay_sex: str | None  # 'F'/'M' for a designated bay; None for a single room or a flexible bay
    near_station: bool


@dataclass(frozen=True)
class Unit:
    """A ward or department: which labels it takes, where it overflows, who to page."""

    code: str
    name: str
    serves: tuple[str, ...]
    overflow: tuple[str, ...]
    paediatric: bool
    nurses_on_duty: int
    roster: Mapping[str, str] = field(hash=False)
    obstetric: bool = False  # pregnant patients: an obstetric early warning chart applies, not NEWS2

    def __post_init__(self) -> None:
        object.__setattr__(self, "roster", MappingProxyType(dict(self.roster)))

    def __reduce__(self) -> tuple[Any, ...]:
        # mappingproxy cannot be pickled or deep-copied; rebuild from a plain dict instead.
        return (Unit, (self.code, self.name, self.serves, self.overflow, self.paediatric,
                       self.nurses_on_duty, dict(self.roster), self.obstetric))


@dataclass(frozen=True)
class PlanningResource:
    """An operating theatre or a surgeon: minutes of surgery per weekday (Monday first)."""

    id: str
    minutes: tuple[int, ...]  # 7 values, WEEKDAYS order


@dataclass(frozen=True)
class PlanningNurse:
    """A nurse of the planned units: skill level, load per shift, and the shifts worked per weekday."""

    id: str
    skill_level: int
    max_load: int
    shifts: tuple[tuple[str, ...], ...]  # 7 entries, WEEKDAYS order: the shift names worked that day


@dataclass(frozen=True)
class PlanningWeights:
    """Cost of each soft part of the elective plan (the IHTC-2024 parts; defaults: a typical instance's)."""

    room_mixed_age: int = 5
    room_nurse_skill: int = 10
    continuity_of_care: int = 1
    nurse_excessive_workload: int = 10
    open_operating_theatre: int = 40
    surgeon_transfer: int = 5
    patient_delay: int = 10
    unscheduled_optional: int = 250


@dataclass(frozen=True)
class PlanningConfig:
    """What `wardflow plan --hospital-config` needs beyond beds: theatres, surgeons, nurses and their rota.

    Optional in the YAML (`planning:`); the rooms come from `units` (their beds give the capacity,
    their type and sex the single-sex rule), the rota is weekly and maps onto the plan's dates.
    """

    units: tuple[str, ...]
    shifts: tuple[str, ...]
    age_groups: tuple[str, ...]
    skill_levels: int
    weights: PlanningWeights
    theatres: tuple[PlanningResource, ...]
    surgeons: tuple[PlanningResource, ...]
    nurses: tuple[PlanningNurse, ...]


@dataclass(frozen=True)
class Hospital:
    """A whole hospital with O(1) lookups precomputed at construction."""

    hospital_id: str
    name: str
    units: tuple[Unit, ...]
    beds: tuple[Bed, ...]
    roster: Mapping[str, str] = field(hash=False)
    clinicians: tuple[str, ...] = ()
    allocation: AllocationWeights = AllocationWeights()
    surge: SurgeConfig = SurgeConfig()
    hl7: Hl7Profile | None = None  # the HL7 v2 / FHIR gateway's mapping table (streams.gateway); optional
    planning: PlanningConfig | None = None  # theatres, surgeons, nurses for `wardflow plan`; optional
    _unit_by_code: Mapping[str, Unit] = field(init=False, repr=False, compare=False, hash=False)
    _bed_by_id: Mapping[str, Bed] = field(init=False, repr=False, compare=False, hash=False)
    _beds_by_unit: Mapping[str, tuple[Bed, ...]] = field(init=False, repr=False, compare=False, hash=False)
    _beds_by_room: Mapping[str, tuple[Bed, ...]] = field(init=False, repr=False, compare=False, hash=False)
    _units_by_label: Mapping[str, tuple[Unit, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_unit: dict[str, list[Bed]] = {}
        by_room: dict[str, list[Bed]] = {}
        for bed in self.beds:
            by_unit.setdefault(bed.unit, []).append(bed)
            by_room.setdefault(bed.room_id, []).append(bed)
        by_label: dict[str, list[Unit]] = {}
        for unit in self.units:
            for label in unit.serves:
                by_label.setdefault(label, []).append(unit)
        derived = {
            "roster": MappingProxyType(dict(self.roster)),
            "_unit_by_code": MappingProxyType({u.code: u for u in self.units}),
            "_bed_by_id": MappingProxyType({b.bed_id: b for b in self.beds}),
            "_beds_by_unit": MappingProxyType({k: tuple(v) for k, v in by_unit.items()}),
            "_beds_by_room": MappingProxyType({k: tuple(v) for k, v in by_room.items()}),
            "_units_by_label": MappingProxyType({k: tuple(v) for k, v in by_label.items()}),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Hospital, (self.hospital_id, self.name, self.units, self.beds, dict(self.roster), self.clinicians,
                           self.allocation, self.surge, self.hl7, self.planning))

    def unit(self, code: str) -> Unit:
        """The unit with this code; KeyError if there is none."""
        return self._unit_by_code[code]

    def bed(self, bed_id: str) -> Bed | None:
        return self._bed_by_id.get(bed_id)

    def bed_unit(self, bed_id: str) -> str:
        """The unit of a bed this hospital has (a KeyError naming the bed otherwise)."""
        bed = self._bed_by_id.get(bed_id)
        if bed is None:
            raise KeyError(f"bed {bed_id!r} is not in hospital {self.hospital_id}")
        return bed.unit

    def beds_in_unit(self, code: str) -> tuple[Bed, ...]:
        """Beds of a unit in config order (the order first-fit placement walks); () if unknown."""
        return self._beds_by_unit.get(code, ())

    def beds_in_room(self, room_id: str) -> tuple[Bed, ...]:
        return self._beds_by_room.get(room_id, ())

    def units_serving(self, label: str) -> tuple[Unit, ...]:
        return self._units_by_label.get(label, ())


# ---------------------------------------------------------------------------- the YAML schema


def _nonblank(value: str) -> str:
    if not value or value != value.strip():
        raise PydanticCustomError("blank_string", "must be a non-empty string without leading or trailing spaces")
    return value


def _bay_sex(value: str) -> str:
    if value not in ("F", "M", "flexible"):
        raise PydanticCustomError("bay_sex", "must be F, M or flexible")
    return value


Text = Annotated[str, AfterValidator(_nonblank)]
BaySex = Annotated[str, AfterValidator(_bay_sex)]


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _BedSpec(_Spec):
    id: Text | None = None
    negative_pressure: bool | None = None
    telemetry: bool | None = None
    bariatric: bool | None = None
    near_station: bool | None = None


def _beds_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "~count"
    if isinstance(value, list):
        return "~list"
    return None


# `beds: 4` or `beds: [ {...}, ... ]`; the tags start with "~" so error paths can drop them.
_Beds = Annotated[
    Annotated[Annotated[int, Field(ge=1)], Tag("~count")] | Annotated[list[_BedSpec], Tag("~list")],
    Discriminator(
        _beds_kind,
        custom_error_type="beds_type",
        custom_error_message="must be a number of beds or a list of beds",
    ),
]


class _RoomSpec(_Spec):
    id: Text
    type: Literal["single", "bay"]
    sex: BaySex | None = None
    count: Annotated[int, Field(ge=1)] = 1
    beds: _Beds | None = None
    negative_pressure: bool = False
    telemetry: bool = False
    bariatric: bool = False
    near_station: bool = False


class _UnitSpec(_Spec):
    code: Text
    name: Text
    serves: list[Text] = []
    overflow: list[Text] = []
    paediatric: bool = False
    obstetric: bool = False
    nurses_on_duty: Annotated[int, Field(ge=1)]
    roster: dict[Text, Text]
    rooms: Annotated[list[_RoomSpec], Field(min_length=1)]


Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Level = Annotated[int, Field(ge=1, le=5)]
_DEFAULT = AllocationWeights()


class _ScarceSpec(_Spec):
    negative_pressure: Cost = _DEFAULT.scarce_beds.negative_pressure
    single_room: Cost = _DEFAULT.scarce_beds.single_room
    telemetry: Cost = _DEFAULT.scarce_beds.telemetry
    bariatric: Cost = _DEFAULT.scarce_beds.bariatric
    near_station: Cost = _DEFAULT.scarce_beds.near_station


class _ReserveSpec(_Spec):
    unit: Text | None = None
    feature: ReserveFeature | None = None
    keep: Annotated[int, Field(ge=1)]
    max_acuity: Annotated[int, Field(ge=1, le=4)]
    cost: Cost


class _AllocationSpec(_Spec):
    overflow: Cost = _DEFAULT.overflow
    overflow_step: Cost = _DEFAULT.overflow_step
    scarce_beds: _ScarceSpec = _ScarceSpec()
    close_observation_far: Cost = _DEFAULT.close_observation_far
    flexible_bay_open: Cost = _DEFAULT.flexible_bay_open
    workload: Cost = _DEFAULT.workload
    acuity_weights: dict[Level, Cost] | None = None
    unknown_acuity: Level = _DEFAULT.unknown_acuity
    priority_acuity: dict[Level, Cost] | None = None
    priority_per_hour: Cost = _DEFAULT.priority_per_hour
    priority_max_hours: Cost = _DEFAULT.priority_max_hours
    reserves: list[_ReserveSpec] = []
    transfer_correction_hours: Annotated[float, Field(gt=0, allow_inf_nan=False)] = _DEFAULT.transfer_correction_hours


_SURGE = SurgeConfig()
Ratio = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]


class _LevelSpec(_Spec):
    occupancy: Ratio
    waiting: Count
    arrivals_per_hour: Count


def _level_spec(t: LevelThresholds) -> _LevelSpec:
    return _LevelSpec(occupancy=t.occupancy, waiting=t.waiting, arrivals_per_hour=t.arrivals_per_hour)


class _SurgeSpec(_Spec):
    opel2: _LevelSpec = _level_spec(_SURGE.thresholds[0])
    opel3: _LevelSpec = _level_spec(_SURGE.thresholds[1])
    opel4: _LevelSpec = _level_spec(_SURGE.thresholds[2])
    occupancy_margin: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = _SURGE.occupancy_margin
    waiting_margin: Annotated[int, Field(ge=0)] = _SURGE.waiting_margin
    arrivals_margin: Annotated[int, Field(ge=0)] = _SURGE.arrivals_margin
    min_dwell_minutes: Annotated[float, Field(ge=0, allow_inf_nan=False)] = _SURGE.min_dwell_minutes


class _LocationSpec(_Spec):
    point_of_care: Text
    room: Text | None = None
    bed: Text | None = None
    facility: Text | None = None
    unit: Text
    bed_id: Text | None = None


class _Hl7Spec(_Spec):
    timezone: Text
    locations: list[_LocationSpec] = []
    free_text: list[TextSource] = ["PV2-3", "NTE", "DG1-4"]
    encounter_id: Annotated[list[EncounterSource], Field(min_length=1)] = ["PV1-19", "PID-18"]
    patient_id_types: list[Text] = ["MR"]
    inpatient_classes: list[Text] = ["I"]


Weekday = Literal[WEEKDAYS]  # type: ignore[valid-type]
Minutes = Annotated[int, Field(ge=0, le=24 * 60)]


def _minutes_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    return "~every-day" if isinstance(value, int) else "~per-weekday" if isinstance(value, dict) else None


# `minutes: 480` (every day) or `minutes: {mon: 480, wed: 240}` (a missing weekday: 0)
_Minutes = Annotated[
    Annotated[Minutes, Tag("~every-day")] | Annotated[dict[Weekday, Minutes], Tag("~per-weekday")],
    Discriminator(_minutes_kind, custom_error_type="minutes_type",
                  custom_error_message="must be minutes every day (a number) or minutes per weekday "
                                       "({mon: 480, ...}, a missing day: 0)"),
]


class _ResourceSpec(_Spec):
    id: Text
    minutes: _Minutes


class _NurseSpec(_Spec):
    id: Text
    skill_level: Annotated[int, Field(ge=0)]
    max_load: Annotated[int, Field(ge=0)]
    shifts: dict[Weekday, list[Text]]


class _WeightsSpec(_Spec):
    room_mixed_age: Annotated[int, Field(ge=0)] = PlanningWeights.room_mixed_age
    room_nurse_skill: Annotated[int, Field(ge=0)] = PlanningWeights.room_nurse_skill
    continuity_of_care: Annotated[int, Field(ge=0)] = PlanningWeights.continuity_of_care
    nurse_excessive_workload: Annotated[int, Field(ge=0)] = PlanningWeights.nurse_excessive_workload
    open_operating_theatre: Annotated[int, Field(ge=0)] = PlanningWeights.open_operating_theatre
    surgeon_transfer: Annotated[int, Field(ge=0)] = PlanningWeights.surgeon_transfer
    patient_delay: Annotated[int, Field(ge=0)] = PlanningWeights.patient_delay
    unscheduled_optional: Annotated[int, Field(ge=0)] = PlanningWeights.unscheduled_optional


class _PlanningSpec(_Spec):
    units: Annotated[list[Text], Field(min_length=1)]
    shifts: Annotated[list[Text], Field(min_length=1)] = ["early", "late", "night"]
    age_groups: Annotated[list[Text], Field(min_length=1)] = ["child", "adult", "elderly"]
    skill_levels: Annotated[int, Field(ge=1, le=10)] = 3
    weights: _WeightsSpec = _WeightsSpec()
    theatres: Annotated[list[_ResourceSpec], Field(min_length=1)]
    surgeons: Annotated[list[_ResourceSpec], Field(min_length=1)]
    nurses: Annotated[list[_NurseSpec], Field(min_length=1)]


class _HospitalSpec(_Spec):
    hospital_id: Text
    name: Text
    roster: dict[Text, Text]
    clinicians: list[Text] = []
    allocation: _AllocationSpec | None = None
    surge: _SurgeSpec | None = None
    units: Annotated[list[_UnitSpec], Field(min_length=1)]
    hl7: _Hl7Spec | None = None
    planning: _PlanningSpec | None = None


class _FileSpec(_Spec):
    hospitals: Annotated[list[_HospitalSpec], Field(min_length=1)]


# ---------------------------------------------------------------------------- reading YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key instead of silently keeping the last one."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable keys are reported by construct_mapping below
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(file: str, path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HospitalConfigError(file, None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise HospitalConfigError(file, None, f"cannot read the file: {reason}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = " ".join(part for part in (exc.problem, exc.context) if part) or "unreadable"
        raise HospitalConfigError(file, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise HospitalConfigError(file, None, f"invalid YAML: {exc}") from None


# ---------------------------------------------------------------------------- errors


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and (part.startswith("~") or part == "[key]"):
            continue  # a union tag of ours, or pydantic's marker of a bad mapping key: not a field
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field (check the spelling)"
    if kind == "too_short":
        n = error.get("ctx", {}).get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    value = error.get("input")
    if not isinstance(value, (dict, list)):
        message += f", got {_short(value)}"
    return message


class _Problems:
    """Collects problems so the error can say how many there are, while showing the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append((where, problem))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        where, problem = self.items[0]
        more = len(self.items) - 1
        if more:
            problem += f" (and {more} more problem{'s' if more != 1 else ''})"
        raise HospitalConfigError(self.file, where, problem)


# ---------------------------------------------------------------------------- building


def load_hospitals(path: str | Path) -> dict[str, Hospital]:
    """Read and validate a hospital file (`hospitals: [...]`); hospital_id -> Hospital."""
    file = str(path)
    raw = _read_yaml(file, Path(path))
    if raw is None:
        raise HospitalConfigError(file, None, "the file is empty; it should hold `hospitals: [...]`")
    if not isinstance(raw, dict):
        raise HospitalConfigError(file, "top level", "must be a mapping with a `hospitals` list")
    problems = _Problems(file)
    try:
        spec = _FileSpec.model_validate(raw)
    except ValidationError as exc:
        # A misspelt key usually explains a missing one, so unknown fields are reported first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        for error in errors:
            problems.add(_path(error["loc"]), _problem(error))
        problems.raise_if_any()
        raise  # unreachable: a ValidationError always has errors

    hospitals: dict[str, Hospital] = {}
    first_seen: dict[str, str] = {}
    for h_index, h_spec in enumerate(spec.hospitals):
        where = f"hospitals[{h_index}]"
        if h_spec.hospital_id in first_seen:
            problems.add(f"{where}.hospital_id",
                         f"duplicate hospital_id {h_spec.hospital_id!r} (also {first_seen[h_spec.hospital_id]})")
        first_seen.setdefault(h_spec.hospital_id, where)
        hospital = _build_hospital(h_spec, where, problems)
        hospitals.setdefault(hospital.hospital_id, hospital)
    problems.raise_if_any()
    return hospitals


def _missing_roles(roster: Mapping[str, str], roles: tuple[str, ...]) -> str | None:
    missing = [role for role in roles if role not in roster]
    return f"needs a pager for {', '.join(missing)}" if missing else None


def _check_unique(items: list[str], where: str, what: str, problems: _Problems) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item in seen:
            problems.add(f"{where}[{i}]", f"{what} {item!r} is listed twice")
        seen.add(item)


def _build_hospital(spec: _HospitalSpec, where: str, problems: _Problems) -> Hospital:
    if missing := _missing_roles(spec.roster, HOSPITAL_ROLES):
        problems.add(f"{where}.roster", missing)
    _check_unique(spec.clinicians, f"{where}.clinicians", "clinician", problems)

    unit_where: dict[str, str] = {}
    for u_index, u_spec in enumerate(spec.units):
        if u_spec.code in unit_where:
            problems.add(f"{where}.units[{u_index}].code",
                         f"duplicate unit code {u_spec.code!r} (also {unit_where[u_spec.code]})")
        unit_where.setdefault(u_spec.code, f"{where}.units[{u_index}]")

    units: list[Unit] = []
    beds: list[Bed] = []
    room_where: dict[str, str] = {}
    bed_where: dict[str, str] = {}
    for u_index, u_spec in enumerate(spec.units):
        u_where = f"{where}.units[{u_index}]"
        units.append(_build_unit(u_spec, u_where, set(unit_where), problems))
        for r_index, r_spec in enumerate(u_spec.rooms):
            r_where = f"{u_where}.rooms[{r_index}]"
            for room_id, room_beds in _expand_room(r_spec, u_spec.code, r_where, problems):
                if room_id in room_where:
                    problems.add(f"{r_where}.id", f"room id {room_id!r} is already used by {room_where[room_id]}")
                room_where.setdefault(room_id, r_where)
                for bed, b_where in room_beds:
                    if bed.bed_id in bed_where:
                        problems.add(b_where, f"bed id {bed.bed_id!r} is already used by {bed_where[bed.bed_id]}")
                    bed_where.setdefault(bed.bed_id, b_where)
                    beds.append(bed)
    return Hospital(
        hospital_id=spec.hospital_id,
        name=spec.name,
        units=tuple(units),
        beds=tuple(beds),
        roster=dict(spec.roster),
        clinicians=tuple(spec.clinicians),
        allocation=_build_allocation(spec.allocation, f"{where}.allocation", set(unit_where), problems),
        surge=_build_surge(spec.surge, f"{where}.surge", problems),
        hl7=_build_hl7(spec.hl7, f"{where}.hl7", {u.code: u for u in units}, {b.bed_id: b for b in beds}, problems),
        planning=_build_planning(spec.planning, f"{where}.planning", set(unit_where), problems),
    )


def _build_planning(spec: _PlanningSpec | None, where: str, codes: set[str], problems: _Problems) -> PlanningConfig | None:
    """The planner's resources, checked: known units, unique ids and shift names, skills below skill_levels."""
    if spec is None:
        return None
    _check_unique(spec.units, f"{where}.units", "unit", problems)
    for i, code in enumerate(spec.units):
        if code not in codes:
            problems.add(f"{where}.units[{i}]", f"unknown unit code {code!r}; known: {', '.join(sorted(codes))}")
    _check_unique(spec.shifts, f"{where}.shifts", "shift", problems)
    _check_unique(spec.age_groups, f"{where}.age_groups", "age group", problems)

    def per_weekday(minutes: int | dict[str, int]) -> tuple[int, ...]:
        return tuple(minutes.get(day, 0) for day in WEEKDAYS) if isinstance(minutes, dict) else (minutes,) * 7

    resources: dict[str, tuple[PlanningResource, ...]] = {}
    for section in ("theatres", "surgeons"):
        specs = getattr(spec, section)
        _check_unique([r.id for r in specs], f"{where}.{section}", "id", problems)
        resources[section] = tuple(PlanningResource(r.id, per_weekday(r.minutes)) for r in specs)
    nurses = []
    _check_unique([n.id for n in spec.nurses], f"{where}.nurses", "nurse id", problems)
    for i, n in enumerate(spec.nurses):
        n_where = f"{where}.nurses[{i}]"
        if n.skill_level >= spec.skill_levels:
            problems.add(f"{n_where}.skill_level",
                         f"must be below skill_levels ({spec.skill_levels}: levels 0 to {spec.skill_levels - 1}), "
                         f"got {n.skill_level}")
        for day, shifts in n.shifts.items():
            _check_unique(shifts, f"{n_where}.shifts.{day}", "shift", problems)
            for k, name in enumerate(shifts):
                if name not in spec.shifts:
                    problems.add(f"{n_where}.shifts.{day}[{k}]",
                                 f"unknown shift {name!r}; planning.shifts has {', '.join(spec.shifts)}")
        worked = tuple(tuple(sorted(set(n.shifts.get(day, [])), key=lambda s: spec.shifts.index(s)
                                    if s in spec.shifts else 0)) for day in WEEKDAYS)
        nurses.append(PlanningNurse(n.id, n.skill_level, n.max_load, worked))
    return PlanningConfig(units=tuple(spec.units), shifts=tuple(spec.shifts), age_groups=tuple(spec.age_groups),
                          skill_levels=spec.skill_levels, weights=PlanningWeights(**spec.weights.model_dump()),
                          theatres=resources["theatres"], surgeons=resources["surgeons"], nurses=tuple(nurses))


def _build_hl7(spec: _Hl7Spec | None, where: str, units: Mapping[str, Unit], beds: Mapping[str, Bed],
               problems: _Problems) -> Hl7Profile | None:
    """The HL7 mapping table, checked against this hospital's units and beds so a typo cannot misplace anyone."""
    if spec is None:
        return None
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(spec.timezone)
    except (ValueError, KeyError, OSError):
        problems.add(f"{where}.timezone", f"is not an IANA time zone (e.g. Europe/London), got {spec.timezone!r}")
    rules: list[LocationRule] = []
    seen: dict[tuple[Any, ...], str] = {}
    for i, loc in enumerate(spec.locations):
        l_where = f"{where}.locations[{i}]"
        if loc.bed is not None and loc.room is None:
            problems.add(f"{l_where}.bed", "needs `room` too (HL7 names a bed within a room)")
        ident = (loc.point_of_care, loc.room, loc.bed, loc.facility)
        if ident in seen:
            problems.add(l_where, f"matches the same locations as {seen[ident]}")
        seen.setdefault(ident, l_where)
        if loc.unit not in units:
            problems.add(f"{l_where}.unit", f"names no unit of this hospital, got {loc.unit!r}")
        rule = LocationRule(point_of_care=loc.point_of_care, unit=loc.unit, room=loc.room, bed=loc.bed,
                            facility=loc.facility, bed_id=loc.bed_id)
        if loc.bed_id is not None:
            if rule.is_template or "{" in loc.bed_id:
                if (problem := template_problem(loc.bed_id)) is not None:
                    problems.add(f"{l_where}.bed_id", problem)
            elif loc.bed_id not in beds:
                problems.add(f"{l_where}.bed_id", f"names no bed of this hospital, got {loc.bed_id!r}")
            elif loc.unit in units and beds[loc.bed_id].unit != loc.unit:
                problems.add(f"{l_where}.bed_id", f"bed {loc.bed_id!r} is on unit {beds[loc.bed_id].unit!r}, not {loc.unit!r}")
        rules.append(rule)
    return Hl7Profile(timezone=spec.timezone, locations=tuple(rules), free_text=tuple(spec.free_text),
                      encounter_id=tuple(spec.encounter_id), patient_id_types=tuple(spec.patient_id_types),
                      inpatient_classes=tuple(spec.inpatient_classes))


def _build_surge(spec: _SurgeSpec | None, where: str, problems: _Problems) -> SurgeConfig:
    """OPEL 2-4 entry thresholds and the margins a level must fall below before it steps down."""
    if spec is None:
        return SurgeConfig()
    levels = tuple(LevelThresholds(occupancy=lv.occupancy, waiting=lv.waiting, arrivals_per_hour=lv.arrivals_per_hour)
                   for lv in (spec.opel2, spec.opel3, spec.opel4))
    try:
        return SurgeConfig(thresholds=levels, occupancy_margin=spec.occupancy_margin, waiting_margin=spec.waiting_margin,
                           arrivals_margin=spec.arrivals_margin, min_dwell_minutes=spec.min_dwell_minutes)
    except ValueError as exc:
        problems.add(where, str(exc))
        return SurgeConfig()


def _by_level(
    values: dict[int, float] | None, default: tuple[float, ...], where: str, problems: _Problems
) -> tuple[float, ...]:
    """ESI 1..5 -> cost as a tuple; all five levels, never rising from ESI 1 to 5 (sicker counts more)."""
    if values is None:
        return default
    missing = [level for level in ESI_LEVELS if level not in values]
    if missing:
        problems.add(where, f"must give every ESI level 1 to 5; missing {', '.join(map(str, missing))}")
        return default
    out = tuple(values[level] for level in ESI_LEVELS)
    for level in ESI_LEVELS[1:]:
        if out[level - 1] > out[level - 2]:
            problems.add(f"{where}.{level}", f"must not exceed ESI {level - 1}'s value ({out[level - 2]:g}): "
                                             "a less urgent patient cannot count for more")
    return out


def _build_allocation(
    spec: _AllocationSpec | None, where: str, codes: set[str], problems: _Problems
) -> AllocationWeights:
    if spec is None:
        return AllocationWeights()
    reserves: list[Reserve] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(spec.reserves):
        r_where = f"{where}.reserves[{i}]"
        if (r.unit is None) == (r.feature is None):
            problems.add(r_where, "must name exactly one of unit (a unit code) and feature (a bed feature)")
            continue
        if r.unit is not None and r.unit not in codes:
            problems.add(f"{r_where}.unit", f"unknown unit code {r.unit!r}; known: {', '.join(sorted(codes))}")
            continue
        key = r.unit or r.feature or ""
        if key in seen:
            problems.add(r_where, f"{key!r} already has a reserve (reserves[{seen[key]}])")
            continue
        seen[key] = i
        reserves.append(Reserve(keep=r.keep, max_acuity=r.max_acuity, cost=r.cost, unit=r.unit, feature=r.feature))
    return AllocationWeights(
        overflow=spec.overflow,
        overflow_step=spec.overflow_step,
        scarce_beds=ScarceBedCosts(**spec.scarce_beds.model_dump()),
        close_observation_far=spec.close_observation_far,
        flexible_bay_open=spec.flexible_bay_open,
        workload=spec.workload,
        acuity_weights=_by_level(spec.acuity_weights, _DEFAULT.acuity_weights, f"{where}.acuity_weights", problems),
        unknown_acuity=spec.unknown_acuity,
        priority_acuity=_by_level(spec.priority_acuity, _DEFAULT.priority_acuity, f"{where}.priority_acuity", problems),
        priority_per_hour=spec.priority_per_hour,
        priority_max_hours=spec.priority_max_hours,
        reserves=tuple(reserves),
        transfer_correction_hours=spec.transfer_correction_hours,
    )


def _build_unit(spec: _UnitSpec, where: str, codes: set[str], problems: _Problems) -> Unit:
    if missing := _missing_roles(spec.roster, UNIT_ROLES):
        problems.add(f"{where}.roster", missing)
    _check_unique(spec.serves, f"{where}.serves", "label", problems)
    _check_unique(spec.overflow, f"{where}.overflow", "unit", problems)
    for i, code in enumerate(spec.overflow):
        if code == spec.code:
            problems.add(f"{where}.overflow[{i}]", f"unit {code!r} cannot overflow into itself")
        elif code not in codes:
            problems.add(f"{where}.overflow[{i}]", f"unknown unit code {code!r}; known: {', '.join(sorted(codes))}")
    return Unit(
        code=spec.code,
        name=spec.name,
        serves=tuple(spec.serves),
        overflow=tuple(spec.overflow),
        paediatric=spec.paediatric,
        nurses_on_duty=spec.nurses_on_duty,
        roster=dict(spec.roster),
        obstetric=spec.obstetric,
    )


def _expand_room(
    spec: _RoomSpec, unit: str, where: str, problems: _Problems
) -> list[tuple[str, list[tuple[Bed, str]]]]:
    """The rooms one entry stands for (several with `count`), each with its beds and their paths."""
    single = spec.type == "single"
    if single and spec.sex is not None:
        problems.add(f"{where}.sex", "a single room takes any sex; sex applies only to a bay")
    if not single and spec.sex is None:
        problems.add(f"{where}.sex", "a bay must say its sex: F, M or flexible")
    if not single and spec.beds is None:
        problems.add(f"{where}.beds", "a bay must say its beds: a number or a list")

    bed_specs: list[_BedSpec]
    if isinstance(spec.beds, list):
        bed_specs = list(spec.beds)
    else:
        bed_specs = [_BedSpec() for _ in range(spec.beds or 1)]
    if single and len(bed_specs) != 1:
        problems.add(f"{where}.beds", f"a single room has exactly 1 bed, got {len(bed_specs)}")
    if not single and len(bed_specs) > len(_BED_LETTERS) and any(b.id is None for b in bed_specs):
        problems.add(f"{where}.beds",
                     f"at most {len(_BED_LETTERS)} beds get generated ids (A to Z); give the beds explicit ids")
    if spec.count > 1:
        for b_index, bed_spec in enumerate(bed_specs):
            if bed_spec.id is not None:
                problems.add(f"{where}.beds[{b_index}].id",
                             "explicit bed ids cannot repeat with `count`; leave them out to generate them")

    if not single:
        flagged = [f"{where}.negative_pressure"] if spec.negative_pressure else []
        flagged += [f"{where}.beds[{i}].negative_pressure" for i, b in enumerate(bed_specs) if b.negative_pressure]
        for field_where in flagged:
            problems.add(field_where, "only a single room can be negative-pressure; airborne isolation needs a room of its own")

    bay_sex = None if single or spec.sex == "flexible" else spec.sex
    rooms = []
    for n in range(1, spec.count + 1):
        room_id = spec.id if spec.count == 1 else f"{spec.id}{n:02d}"
        room_beds = []
        for b_index, bed_spec in enumerate(bed_specs):
            if bed_spec.id is not None:
                bed_id = bed_spec.id
            elif single:
                bed_id = room_id
            else:
                bed_id = f"{room_id}-{_BED_LETTERS[b_index % len(_BED_LETTERS)]}"
            bed = Bed(
                bed_id=bed_id,
                unit=unit,
                room_id=room_id,
                single_room=single,
                negative_pressure=_inherit(bed_spec.negative_pressure, spec.negative_pressure),
                telemetry=_inherit(bed_spec.telemetry, spec.telemetry),
                bariatric=_inherit(bed_spec.bariatric, spec.bariatric),
                bay_sex=bay_sex,
                near_station=_inherit(bed_spec.near_station, spec.near_station),
            )
            if bed_spec.id is not None:
                b_where = f"{where}.beds[{b_index}].id"
            else:
                b_where = f"{where}.id" if single else f"{where}.beds"
            room_beds.append((bed, b_where))
        rooms.append((room_id, room_beds))
    return rooms


def _inherit(bed_value: bool | None, room_value: bool) -> bool:
    return room_value if bed_value is None else bed_value
