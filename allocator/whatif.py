"""What-if: the allocator's policies over simulated days of one hospital, without Kafka, side by side.

A discrete-event simulation in minutes. Decisions to admit arrive with the ED's hour-of-day
profile; patients stay, deteriorate (some ward patients need ICU or a telemetry bed and wait
for a move), step down from ICU, are discharged in the daytime, and their beds are cleaned
before they take anyone again. The matching re-runs whenever a patient starts waiting (a
decision to admit, a deterioration, a step-down) or a bed becomes clean, with the very
`allocator.matching.assign` the stream worker calls. Every placement is refereed on its own
by `allocator.placement.hard_breaches` against the state the earlier placements of the same
run left, and counted if it breaks anything.

Both policies meet the same cases (see `allocator.whatif_cases`): same seed, same report.

Metrics, per policy:
* wait_mean_min / wait_p90_min: decision to admit -> bed, over every decision to admit of the
  run; a patient still waiting at the end counts with the time waited so far.
* off_service_placements: placements (admissions and moves) onto a unit that does not serve
  the patient's label, i.e. reached through overflow.
* isolation_blocked_patient_minutes: the integral over time of the number of waiting patients
  with an isolation need for whom some bed of the kind they need (negative-pressure room for
  airborne, single room for contact/droplet), on a unit they may be placed on (their label's
  units and overflow, right age group), is occupied by a patient who does not need that kind
  (for a single room: has no isolation need and whose sex is F or M).
  isolation_blocked_patients: how many distinct requests were ever in that state.
* breaches: placements breaking a hard constraint or into a bed that was not free (must be 0).
* pages: no_bed escalations to the bed manager, one per request the first time it finds no bed.
* occupancy: hourly share of beds holding a patient; its minimum after the first day, and the
  minimum at midnight (how NHS bed returns count occupancy: afternoon dips are beds emptied by
  the day's discharges and not yet cleaned).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from allocator.hospital import Hospital
from allocator.matching import Policy, assign
from allocator.placement import ADULT_AGE, AVAILABLE, BedSnapshot, candidate_units, hard_breaches
from allocator.waiting import WaitingPatient
from allocator.whatif_cases import (
    ICU_LABEL,
    MINUTES_PER_DAY,
    STEP_DOWN_LABEL,
    Case,
    CaseMix,
    discharge_time,
    draw_arrivals,
    draw_census,
)

__all__ = ["LOADS", "PolicyMetrics", "WhatIfReport", "plot_occupancy", "run_whatif", "simulate_cases"]

Load = Literal["normal", "surge"]
LOADS = ("normal", "surge")
_ISOLATION = {"airborne_isolation": "negative_pressure", "contact_isolation": "single_room",
              "droplet_isolation": "single_room"}
_TELEMETRY_DETERIORATION_EXTRA = MINUTES_PER_DAY  # a monitored patient stays a day longer
_STEP_DOWN_ACUITY = 2  # just out of critical care: high risk, and every hour waiting blocks an ICU bed


@dataclass(frozen=True)
class PolicyMetrics:
    policy: str
    decisions_to_admit: int
    admitted_to_bed: int
    still_waiting_at_end: int
    wait_mean_min: float
    wait_p90_min: float
    off_service_placements: int
    placements: int
    isolation_blocked_patient_minutes: float
    isolation_blocked_patients: int
    breaches: int
    pages: int
    moves_requested: int
    move_wait_mean_min: float
    occupancy_mean: float
    occupancy_min_after_day1: float
    midnight_occupancy_min_after_day1: float  # the NHS KH03 convention counts beds at midnight
    matching_runs: int
    occupancy: tuple[float, ...] = field(repr=False)  # hourly
    waiting: tuple[int, ...] = field(repr=False)  # hourly

    def summary(self) -> dict[str, Any]:
        """The scalar metrics (no time series), rounded for reading."""
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if name in ("policy", "occupancy", "waiting"):
                continue
            out[name] = round(value, 3) if isinstance(value, float) else value
        return out


@dataclass(frozen=True)
class WhatIfReport:
    hospital_id: str
    beds: int
    days: float
    seed: int
    load: str
    ed_arrivals: int
    decisions_to_admit: int
    policies: dict[str, PolicyMetrics]
    seconds: dict[str, float] = field(compare=False)  # wall time per policy: not part of the result

    def to_dict(self) -> dict[str, Any]:
        """Side by side: metric -> {policy: value}, plus the run's parameters."""
        names = list(next(iter(self.policies.values())).summary()) if self.policies else []
        return {
            "hospital_id": self.hospital_id, "beds": self.beds, "days": self.days, "seed": self.seed,
            "load": self.load, "ed_arrivals": self.ed_arrivals, "decisions_to_admit": self.decisions_to_admit,
            "metrics": {n: {p: m.summary()[n] for p, m in self.policies.items()} for n in names},
            "seconds": {p: round(s, 2) for p, s in self.seconds.items()},
        }

    def table(self) -> str:
        """A plain-text side-by-side table for a terminal."""
        policies = list(self.policies)
        rows = [("metric", *policies)]
        for name, by_policy in self.to_dict()["metrics"].items():
            rows.append((name, *(str(by_policy[p]) for p in policies)))
        width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        head = (f"{self.hospital_id}: {self.beds} beds, {self.days:g} days, load {self.load}, seed {self.seed}, "
                f"{self.ed_arrivals} ED arrivals, {self.decisions_to_admit} decisions to admit")
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows]
        return "\n".join(lines)


def run_whatif(
    hospital: Hospital, *, policy: str = "both", days: float = 7.0, seed: int = 0, load: Load = "normal",
) -> WhatIfReport:
    """Simulate `days` of `hospital` under each policy ('optimal', 'greedy' or 'both') on the same cases."""
    if load not in LOADS:
        raise ValueError(f"load must be one of {', '.join(LOADS)}, got {load!r}")
    if days <= 0:
        raise ValueError("days must be positive")
    policies: list[Policy] = ["optimal", "greedy"] if policy == "both" else [_policy(policy)]
    mix = CaseMix(hospital)
    arrivals, ed_arrivals = draw_arrivals(mix, seed=seed, days=days, load=load)
    census = draw_census(mix, seed=seed, load=load)
    results: dict[str, PolicyMetrics] = {}
    seconds: dict[str, float] = {}
    for p in policies:
        started = time.perf_counter()
        results[p] = _Engine(hospital, mix, p, days).run(census, arrivals)
        seconds[p] = time.perf_counter() - started
    return WhatIfReport(hospital.hospital_id, len(hospital.beds), days, seed, load, ed_arrivals, len(arrivals),
                        results, seconds)


def simulate_cases(
    hospital: Hospital, *, policy: str, days: float, census: Sequence[tuple[Case, str]], arrivals: Sequence[Case],
) -> PolicyMetrics:
    """One policy over hand-made cases (census: each case with its bed): crafted scenarios and tests."""
    return _Engine(hospital, CaseMix(hospital), _policy(policy), days).run(census, sorted(arrivals, key=lambda c: c.decision_at))


def plot_occupancy(reports: Sequence[WhatIfReport], path: str) -> None:
    """Occupancy (and patients waiting) over time, every policy of every report on one chart (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for report in reports:
        for name, m in report.policies.items():
            hours = [h / 24 for h in range(len(m.occupancy))]
            label = f"{name} ({report.load})" if len(reports) > 1 else name
            style = "-" if name == "optimal" else "--"
            top.plot(hours, [100 * o for o in m.occupancy], style, label=label, linewidth=1.2)
            bottom.plot(hours, m.waiting, style, label=label, linewidth=1.2)
    first = reports[0]
    top.set_title(f"{first.hospital_id}: {first.beds} beds, seed {first.seed}")
    top.set_ylabel("occupied beds (%)")
    top.axhline(95, color="grey", linewidth=0.6, linestyle=":")
    bottom.set_ylabel("patients waiting")
    bottom.set_xlabel("day")
    top.legend(loc="lower right", fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- the simulation


@dataclass
class _Request:
    """A patient waiting for a bed: an admission or a move (deterioration, step-down)."""

    kind: str  # 'admit' | 'icu' | 'telemetry' | 'step_down'
    since: float
    label: str
    needs: frozenset[str]
    acuity: int
    paged: bool = False
    blocked: bool = False


@dataclass
class _Stay:
    case: Case
    label: str
    needs: frozenset[str]
    acuity: int
    bed: str | None = None
    fit_at: float = 0.0
    version: int = 0
    cleanings_used: int = 0
    request: _Request | None = None


def _policy(name: str) -> Policy:
    if name == "optimal":
        return "optimal"
    if name == "greedy":
        return "greedy"
    raise ValueError(f"policy must be optimal, greedy or both, got {name!r}")


class _Engine:
    def __init__(self, hospital: Hospital, mix: CaseMix, policy: Policy, days: float) -> None:
        self.h = hospital
        self.mix = mix
        self.policy = policy
        self.end = days * MINUTES_PER_DAY
        self.weights = hospital.allocation
        self.beds: dict[str, BedSnapshot] = {}  # only beds that are not available
        self.occupant: dict[str, str] = {}
        self.stays: dict[str, _Stay] = {}
        self.waiting: dict[str, _Request] = {}  # insertion order = order of starting to wait
        self.loads: dict[str, float] = {u.code: 0.0 for u in hospital.units}
        self.events: list[tuple[float, int, str, str, int]] = []
        self.seq = 0
        self.now = 0.0
        self.iso_beds: dict[tuple[str, bool, str], tuple[str, ...]] = {}
        # metrics
        self.admit_waits: list[float] = []
        self.move_waits: list[float] = []
        self.moves_requested = 0
        self.off_service = 0
        self.placements = 0
        self.breaches = 0
        self.pages = 0
        self.runs = 0
        self.blocked_minutes = 0.0
        self.blocked_requests = 0
        self.occupancy: list[float] = []
        self.waiting_series: list[int] = []

    # -------------------------------------------------------------- driving

    def run(self, census: Sequence[tuple[Case, str]], arrivals: Sequence[Case]) -> PolicyMetrics:
        self._fill(census)
        for case in arrivals:
            self._push(case.decision_at, "arrive", case.case_id, 0)
            self.stays[case.case_id] = _Stay(case, case.label, case.needs, case.acuity)
        for hour in range(int(math.ceil(self.end / 60.0))):
            self._push(hour * 60.0, "sample", "", 0)
        handlers = {"arrive": self._arrive, "fit": self._fit, "leave": self._leave, "clean": self._clean,
                    "deteriorate": self._deteriorate, "sample": self._sample}
        while self.events and self.events[0][0] < self.end:
            at, _, kind, key, version = heapq.heappop(self.events)
            self._advance(at)
            handlers[kind](key, version)
        self._advance(self.end)
        return self._metrics(arrivals)

    def _push(self, at: float, kind: str, key: str, version: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, key, version))

    def _advance(self, at: float) -> None:
        blocked = sum(1 for r in self.waiting.values() if r.blocked)
        self.blocked_minutes += blocked * (at - self.now)
        self.now = at

    def _fill(self, census: Sequence[tuple[Case, str]]) -> None:
        """The starting state, the same for every policy: each census patient in its drawn bed."""
        for case, bed_id in census:
            stay = self.stays[case.case_id] = _Stay(case, case.label, case.needs, case.acuity)
            self._occupy(stay, bed_id)
            self._start_stay(stay, case.stay, deteriorate=True)

    # -------------------------------------------------------------- events

    def _arrive(self, case_id: str, _: int) -> None:
        stay = self.stays[case_id]
        self._wait(stay, _Request("admit", self.now, stay.label, stay.needs, stay.acuity))

    def _fit(self, case_id: str, version: int) -> None:
        stay = self.stays.get(case_id)
        if stay is None or stay.version != version:
            return
        if stay.label == ICU_LABEL and stay.case.step_down:  # from ICU, most go to a ward first
            case = stay.case
            needs = case.needs - {"telemetry", "respiratory_support"}
            fits = self.mix.could_ever_fit(STEP_DOWN_LABEL, case.age, case.sex, needs)
            if self.h.units_serving(STEP_DOWN_LABEL) and fits:
                self._wait(stay, _Request("step_down", self.now, STEP_DOWN_LABEL, needs, _STEP_DOWN_ACUITY))
                return
        self._push(discharge_time(self.now, stay.case.discharge_offset), "leave", case_id, stay.version)

    def _leave(self, case_id: str, version: int) -> None:
        stay = self.stays.get(case_id)
        if stay is None or stay.version != version or stay.request is not None:
            return
        self._vacate(stay)
        del self.stays[case_id]
        self._update_blocked()  # the room it left may have been what an isolation patient waited for

    def _clean(self, bed_id: str, _: int) -> None:
        del self.beds[bed_id]
        self._match()

    def _deteriorate(self, case_id: str, version: int) -> None:
        stay = self.stays.get(case_id)
        if stay is None or stay.version != version or stay.request is not None or stay.bed is None:
            return
        case = stay.case
        remaining = max(stay.fit_at - self.now, 0.0)
        if case.deteriorate_to_icu:
            if not self.h.units_serving(ICU_LABEL):
                return
            if not self.mix.could_ever_fit(ICU_LABEL, case.age, case.sex, stay.needs):
                return
            request = _Request("icu", self.now, ICU_LABEL, stay.needs, case.icu_acuity)
        else:
            bed = self.h.bed(stay.bed)
            needs = stay.needs | {"telemetry"}
            if bed is not None and bed.telemetry:
                stay.needs = needs  # already monitored where they lie: a longer stay, no move
                self._start_stay(stay, remaining + _TELEMETRY_DETERIORATION_EXTRA, deteriorate=False)
                return
            if not self.mix.could_ever_fit(stay.label, case.age, case.sex, needs):
                return
            request = _Request("telemetry", self.now, stay.label, needs, 2)
        stay.version += 1  # the pending discharge waits until the move
        stay.fit_at = self.now + remaining
        self._wait(stay, request)

    def _sample(self, _: str, __: int) -> None:
        self.occupancy.append(len(self.occupant) / len(self.h.beds))
        self.waiting_series.append(len(self.waiting))

    # -------------------------------------------------------------- placing

    def _wait(self, stay: _Stay, request: _Request) -> None:
        stay.request = request
        self.waiting[stay.case.case_id] = request
        if request.kind != "admit":
            self.moves_requested += 1
        self._match()

    def _match(self) -> None:
        if not self.waiting:
            return
        self.runs += 1
        waiting = [_waiting(cid, r.label, r.needs, r.acuity, self.stays[cid].case.age, self.stays[cid].case.sex,
                            self.now - r.since) for cid, r in self.waiting.items()]
        result = assign(waiting, self.h, self.beds, policy=self.policy, loads=self.loads,
                        explain=False)
        for placed in result.assignments:
            stay = self.stays[placed.patient.encounter_id]
            self._place(stay, placed.patient, placed.bed_id, placed.assignment.overflow)
        for patient, _ in result.unplaced:
            request = self.waiting[patient.encounter_id]
            if not request.paged:
                request.paged = True
                self.pages += 1
        self._update_blocked()

    def _place(self, stay: _Stay, patient: WaitingPatient, bed_id: str, overflow: bool) -> None:
        bed = self.h.bed(bed_id)
        snap = self.beds.get(bed_id)
        if bed is None or (snap is not None and snap.status != AVAILABLE) or hard_breaches(
                patient.to_place(), bed, self.h, self.beds):
            self.breaches += 1
        request = stay.request
        assert request is not None
        del self.waiting[stay.case.case_id]
        stay.request = None
        self.placements += 1
        self.off_service += overflow
        waited = self.now - request.since
        if request.kind == "admit":
            self.admit_waits.append(waited)
        else:
            self.move_waits.append(waited)
            self._vacate(stay)
        stay.label, stay.needs, stay.acuity = request.label, request.needs, request.acuity
        self._occupy(stay, bed_id)
        if request.kind == "admit":
            self._start_stay(stay, stay.case.stay, deteriorate=True)
        elif request.kind == "icu":
            self._start_stay(stay, stay.case.icu_stay, deteriorate=False)
        elif request.kind == "step_down":
            self._start_stay(stay, stay.case.step_down_stay, deteriorate=False)
        else:  # telemetry
            self._start_stay(stay, max(stay.fit_at - self.now, 0.0) + _TELEMETRY_DETERIORATION_EXTRA, deteriorate=False)

    def _start_stay(self, stay: _Stay, minutes: float, *, deteriorate: bool) -> None:
        stay.version += 1
        stay.fit_at = self.now + minutes
        self._push(stay.fit_at, "fit", stay.case.case_id, stay.version)
        if deteriorate and stay.case.deteriorate_at is not None:
            self._push(self.now + stay.case.deteriorate_at * minutes, "deteriorate", stay.case.case_id, stay.version)

    def _occupy(self, stay: _Stay, bed_id: str) -> None:
        self.beds[bed_id] = BedSnapshot("occupied", occupant_sex=stay.case.sex)
        self.occupant[bed_id] = stay.case.case_id
        stay.bed = bed_id
        self.loads[self.h.bed_unit(bed_id)] += self.weights.acuity_weight(stay.acuity)

    def _vacate(self, stay: _Stay) -> None:
        bed_id = stay.bed
        if bed_id is None:
            return
        self.loads[self.h.bed_unit(bed_id)] -= self.weights.acuity_weight(stay.acuity)
        del self.occupant[bed_id]
        self.beds[bed_id] = BedSnapshot("dirty")
        cleanings = stay.case.cleanings
        minutes = cleanings[min(stay.cleanings_used, len(cleanings) - 1)]
        stay.cleanings_used += 1
        self._push(self.now + minutes, "clean", bed_id, 0)
        stay.bed = None

    # -------------------------------------------------------------- isolation blocking

    def _update_blocked(self) -> None:
        for case_id, request in self.waiting.items():
            kinds = {_ISOLATION[n] for n in request.needs if n in _ISOLATION}
            blocked = False
            if kinds:
                kind = "negative_pressure" if "negative_pressure" in kinds else "single_room"
                stay = self.stays[case_id]
                for bed_id in self._iso_beds(request.label, stay.case.age < ADULT_AGE, kind):
                    other = self.occupant.get(bed_id)
                    if other is not None and other != case_id and not _needs_kind(self.stays[other], kind):
                        blocked = True
                        break
            if blocked and not request.blocked:
                self.blocked_requests += 1
            request.blocked = blocked

    def _iso_beds(self, label: str, child: bool, kind: str) -> tuple[str, ...]:
        key = (label, child, kind)
        if key not in self.iso_beds:
            self.iso_beds[key] = tuple(b.bed_id for u in candidate_units(self.h, label) if u.paediatric == child
                                       for b in self.h.beds_in_unit(u.code) if getattr(b, kind))
        return self.iso_beds[key]

    # -------------------------------------------------------------- the report

    def _metrics(self, arrivals: Sequence[Case]) -> PolicyMetrics:
        censored = [self.end - r.since for r in self.waiting.values() if r.kind == "admit"]
        waits = sorted(self.admit_waits + censored)
        occupancy = tuple(self.occupancy)
        after_day1 = occupancy[24:] or occupancy
        midnights = occupancy[24::24] or occupancy[:1]
        return PolicyMetrics(
            policy=self.policy,
            decisions_to_admit=len(arrivals),
            admitted_to_bed=len(self.admit_waits),
            still_waiting_at_end=len(censored),
            wait_mean_min=sum(waits) / len(waits) if waits else 0.0,
            wait_p90_min=_percentile(waits, 0.9),
            off_service_placements=self.off_service,
            placements=self.placements,
            isolation_blocked_patient_minutes=self.blocked_minutes,
            isolation_blocked_patients=self.blocked_requests,
            breaches=self.breaches,
            pages=self.pages,
            moves_requested=self.moves_requested,
            move_wait_mean_min=sum(self.move_waits) / len(self.move_waits) if self.move_waits else 0.0,
            occupancy_mean=sum(occupancy) / len(occupancy) if occupancy else 0.0,
            occupancy_min_after_day1=min(after_day1) if after_day1 else 0.0,
            midnight_occupancy_min_after_day1=min(midnights) if midnights else 0.0,
            matching_runs=self.runs,
            occupancy=occupancy,
            waiting=tuple(self.waiting_series),
        )


def _waiting(case_id: str, label: str, needs: frozenset[str], acuity: int, age: float, sex: str,
             waited: float) -> WaitingPatient:
    return WaitingPatient(case_id, age, sex, label, needs, acuity, waited, None)


def _needs_kind(stay: _Stay, kind: str) -> bool:
    """Whether the occupant legitimately uses a room of this kind (see the module docstring)."""
    kinds = {_ISOLATION[n] for n in stay.needs if n in _ISOLATION}
    if kind == "negative_pressure":
        return "negative_pressure" in kinds
    return bool(kinds) or stay.case.sex not in ("F", "M")


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a value some patient actually waited)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

