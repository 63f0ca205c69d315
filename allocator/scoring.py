"""What a (patient, bed) pair costs beyond feasibility, as numpy rows the matching can minimise.

Hard constraints decide feasibility (the same rules as `allocator.placement`); the soft
preferences of `AllocationWeights` price every feasible pair. One `ScoringRound` is built per
matching run from the bed snapshot, so each row costs a handful of vector operations over the
available beds instead of a Python loop per pair (50 patients x 1,000 beds in a few ms).

The matrix entries and the explanations come from the same `PatientRow.terms`, so a reason can
never disagree with the number the solver saw.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from allocator.hospital import Bed, Hospital, Unit
from allocator.placement import ADULT_AGE, NEED_FEATURES, BedSnapshot, candidate_units, is_available
from allocator.waiting import WaitingPatient
from allocator.weights import SCARCE_FEATURES, AllocationWeights, Reserve

__all__ = ["TERMS", "BedTable", "PatientRow", "ScoringRound", "bed_table", "needed_features"]

# Cost terms in the order explanations list them; their sum plus the tie-break is the entry.
TERMS = ("unit", "scarce", "close_observation", "flexible_bay", "workload", "reserve", "priority")
TIE_BREAK = 1e-6  # per position in config order: among equal beds, the first (as first fit would)

_OCCUPYING = ("occupied", "held")
_SEX_BIT = {"F": 1, "M": 2}
_OTHER_BIT = 4  # an occupant whose sex is X or unrecorded: a flexible bay then takes no one new
_SINGLE, _BAY_F, _BAY_M, _BAY_FLEX = 0, 1, 2, 3


def needed_features(patient: WaitingPatient) -> frozenset[str]:
    """Bed features the patient legitimately uses: those their needs require, plus what they imply.

    A negative-pressure room is a single room, and a patient whose sex is not F or M needs a
    single room because bays are single-sex, so neither wastes the single room.
    """
    out = {NEED_FEATURES[n][0] for n in patient.needs if n in NEED_FEATURES}
    if "negative_pressure" in out or patient.sex not in _SEX_BIT:
        out.add("single_room")
    if "close_observation" in patient.needs:
        out.add("near_station")
    return frozenset(out)


def _required_features(patient: WaitingPatient) -> tuple[str, ...]:
    return tuple(sorted({NEED_FEATURES[n][0] for n in patient.needs if n in NEED_FEATURES}))


# ---------------------------------------------------------------------------- per hospital


@dataclass(frozen=True)
class BedTable:
    """The hospital's beds as arrays in config order (built once per hospital, then cached)."""

    beds: tuple[Bed, ...]
    index: Mapping[str, int]
    units: tuple[Unit, ...]
    unit_index: Mapping[str, int]
    unit_of: np.ndarray  # int, per bed
    room_of: np.ndarray  # int, per bed
    rooms: tuple[str, ...]
    layout: np.ndarray  # int8 per bed: single room, F bay, M bay, flexible bay
    features: np.ndarray  # bool (len(SCARCE_FEATURES), beds)
    paediatric: np.ndarray  # bool per unit
    nurses: np.ndarray  # float per unit


_TABLES: dict[int, tuple[weakref.ref[Hospital], BedTable]] = {}


def bed_table(hospital: Hospital) -> BedTable:
    """The hospital's `BedTable`, cached by identity for as long as the hospital lives."""
    hit = _TABLES.get(id(hospital))
    if hit is not None and hit[0]() is hospital:
        return hit[1]
    table = _build_table(hospital)
    key = id(hospital)
    _TABLES[key] = (weakref.ref(hospital, lambda _ref: _TABLES.pop(key, None)), table)
    return table


def _build_table(hospital: Hospital) -> BedTable:
    units = hospital.units
    unit_index = {u.code: i for i, u in enumerate(units)}
    rooms: dict[str, int] = {}
    for bed in hospital.beds:
        rooms.setdefault(bed.room_id, len(rooms))
    layout = [
        _SINGLE if b.single_room else _BAY_FLEX if b.bay_sex is None else _BAY_F if b.bay_sex == "F" else _BAY_M
        for b in hospital.beds
    ]
    return BedTable(
        beds=hospital.beds,
        index={b.bed_id: i for i, b in enumerate(hospital.beds)},
        units=units,
        unit_index=unit_index,
        unit_of=np.array([unit_index[b.unit] for b in hospital.beds], dtype=np.int64),
        room_of=np.array([rooms[b.room_id] for b in hospital.beds], dtype=np.int64),
        rooms=tuple(rooms),
        layout=np.array(layout, dtype=np.int8),
        features=np.array([[bool(getattr(b, f)) for b in hospital.beds] for f in SCARCE_FEATURES], dtype=bool)
        .reshape(len(SCARCE_FEATURES), len(hospital.beds)),
        paediatric=np.array([u.paediatric for u in units], dtype=bool),
        nurses=np.array([float(u.nurses_on_duty) for u in units]),
    )


# ---------------------------------------------------------------------------- per matching run


@dataclass(frozen=True)
class PatientRow:
    """One patient's view of the round's columns: which beds are feasible and what each costs."""

    patient: WaitingPatient
    feasible: np.ndarray  # bool per column
    terms: Mapping[str, np.ndarray]  # term -> float per column (meaningful where feasible)
    priority: float

    @property
    def cost(self) -> np.ndarray:
        return np.asarray(sum(self.terms.values()))


class ScoringRound:
    """The available beds of one matching run, as columns, with everything rows are priced from.

    `beds` maps bed_id -> BedSnapshot (missing = available, as for `place`); `loads` maps unit
    code -> the sum of the acuity weights of the patients now on it (missing = 0).
    """

    def __init__(
        self,
        hospital: Hospital,
        beds: Mapping[str, BedSnapshot],
        labels: Iterable[str],
        *,
        loads: Mapping[str, float] | None = None,
        weights: AllocationWeights | None = None,
    ) -> None:
        self.hospital = hospital
        self.weights = weights if weights is not None else hospital.allocation
        self.table = table = bed_table(hospital)
        self._ranks: dict[str, np.ndarray] = {}
        self._kinds: dict[tuple[object, ...], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        wanted = np.zeros(len(table.units), dtype=bool)
        for label in sorted(set(labels)):
            wanted |= self.unit_rank(label) >= 0
        statuses = [beds.get(b.bed_id) for b in table.beds]
        available = np.fromiter((is_available(s) for s in statuses), dtype=bool, count=len(statuses))
        self.available = available  # over every bed: reserves count hospital-wide
        self.cols = np.flatnonzero(available & wanted[table.unit_of])
        self.col_unit = table.unit_of[self.cols]
        self.col_layout = table.layout[self.cols]
        self.col_features = table.features[:, self.cols]
        room_bits = self._room_bits(statuses)
        col_bits = room_bits[table.room_of[self.cols]]
        flexible = self.col_layout == _BAY_FLEX
        self.flexible_empty = flexible & (col_bits == 0)
        single = self.col_layout == _SINGLE
        designated = {"F": self.col_layout == _BAY_F, "M": self.col_layout == _BAY_M}
        self._sex_ok = {sex: single | designated[sex] | (flexible & ((col_bits & ~bit) == 0))
                        for sex, bit in _SEX_BIT.items()}
        self._sex_ok_other = single
        load = np.zeros(len(table.units))
        for code, value in (loads or {}).items():
            if code in table.unit_index:
                load[table.unit_index[code]] = float(value)
        self.load_per_nurse = load / table.nurses
        self.reserve_cost, self.reserved = self._reserves()
        self.tie_break = TIE_BREAK * np.arange(len(self.cols), dtype=float)

    # -------------------------------------------------------------- hospital-wide facts

    def _room_bits(self, statuses: Sequence[BedSnapshot | None]) -> np.ndarray:
        """Per room: which sexes occupy or hold a bed in it (bits F=1, M=2, other or unrecorded=4)."""
        bits = np.zeros(len(self.table.rooms), dtype=np.int64)
        room_of = self.table.room_of
        for i, snap in enumerate(statuses):
            if snap is not None and snap.status in _OCCUPYING:
                bits[room_of[i]] |= _SEX_BIT.get(snap.occupant_sex or "", _OTHER_BIT)
        return bits

    def _reserves(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per reserve, the cost each column pays (0 unless reserved) and the mask of reserved columns.

        The reserved beds are the last `keep` free beds of the pool in config order, so at most
        (free - keep) beds of the pool go to less urgent patients without the reserve's cost.
        """
        costs = np.zeros((len(self.weights.reserves), len(self.cols)))
        masks: list[np.ndarray] = []
        for k, reserve in enumerate(self.weights.reserves):
            pool = self._pool(reserve)
            free = np.flatnonzero(pool & self.available)
            reserved_beds = free[-reserve.keep:]
            mask = np.isin(self.cols, reserved_beds)
            costs[k, mask] = reserve.cost
            masks.append(mask)
        return costs, masks

    def _pool(self, reserve: Reserve) -> np.ndarray:
        table = self.table
        if reserve.unit is not None:
            if reserve.unit not in table.unit_index:
                return np.zeros(len(table.beds), dtype=bool)
            return table.unit_of == table.unit_index[reserve.unit]
        return table.features[SCARCE_FEATURES.index(reserve.feature)]

    def unit_rank(self, label: str) -> np.ndarray:
        """Per unit: -1 if not a candidate for the label, 0 if it serves it, k for the k-th overflow unit."""
        if label not in self._ranks:
            rank = np.full(len(self.table.units), -1, dtype=np.int64)
            k = 0
            for unit in candidate_units(self.hospital, label):
                if label in unit.serves:
                    rank[self.table.unit_index[unit.code]] = 0
                else:
                    k += 1
                    rank[self.table.unit_index[unit.code]] = k
            self._ranks[label] = rank
        return self._ranks[label]

    # -------------------------------------------------------------- rows

    def row(self, patient: WaitingPatient) -> PatientRow:
        """Feasibility and the cost terms of every column for one patient.

        Everything but the priority depends only on the patient's kind (label, age group, sex,
        needs, acuity), so it is computed once per kind and shared, read-only, between rows.
        """
        w = self.weights
        key = (patient.target_unit, patient.age < ADULT_AGE, patient.sex if patient.sex in _SEX_BIT else "X",
               patient.needs, w.level(patient.acuity))
        base = self._kinds.get(key)
        if base is None:
            base = self._kinds[key] = self._kind(patient)
        feasible, shared = base
        priority = w.priority(patient.acuity, patient.waited_minutes)
        terms = {**shared, "priority": np.full(len(self.cols), w.max_priority - priority)}
        return PatientRow(patient, feasible, terms, priority)

    def _kind(self, patient: WaitingPatient) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        w = self.weights
        rank = self.unit_rank(patient.target_unit)[self.col_unit]
        child = patient.age < ADULT_AGE
        feasible = (rank >= 0) & (self.table.paediatric[self.col_unit] == child)
        for feature in _required_features(patient):
            feasible &= self.col_features[SCARCE_FEATURES.index(feature)]
        feasible &= self._sex_ok.get(patient.sex, self._sex_ok_other)

        needed = needed_features(patient)
        scarce_costs = np.array([0.0 if f in needed else c for f, c in zip(SCARCE_FEATURES, w.scarce_beds.as_tuple(), strict=True)])
        near = self.col_features[SCARCE_FEATURES.index("near_station")]
        level = w.level(patient.acuity)
        workload = w.workload * w.acuity_weight(patient.acuity) * self.load_per_nurse[self.col_unit]
        if feasible.any():
            workload = workload - workload[feasible].min()
        reserve = np.zeros(len(self.cols))
        for k, r in enumerate(w.reserves):
            if level > r.max_acuity:
                reserve += self.reserve_cost[k]
        terms = {
            "unit": np.where(rank > 0, w.overflow + w.overflow_step * (rank - 1), 0.0),
            "scarce": scarce_costs @ self.col_features,
            "close_observation": (~near) * w.close_observation_far if "close_observation" in patient.needs
            else np.zeros(len(self.cols)),
            "flexible_bay": self.flexible_empty * w.flexible_bay_open,
            "workload": workload,
            "reserve": reserve,
        }
        for array in (feasible, *terms.values()):
            array.setflags(write=False)
        return feasible, terms

    def bed(self, col: int) -> Bed:
        return self.table.beds[int(self.cols[col])]

    def unit(self, col: int) -> Unit:
        return self.table.units[int(self.col_unit[col])]
