"""The simulated patients of a what-if run, drawn once per seed so every policy meets the same people.

Each case carries every random draw its stay will need (length of stay, discharge hour, the
cleaning after each bed it leaves, whether and when it deteriorates), drawn from its own
`random.Random` seeded by (seed, case number). The policy only decides when and where things
happen, never what happens, so two policies are compared on identical arrivals and stays.

The tables use the default clinical label set (`/work/shared/clinical-taxonomy.md`) because a
simulation needs plausible numbers per service; a hospital label not listed here gets the
DEFAULT rows. The admission mix follows the hospital's own beds: each label's share is its
bed capacity times its usual occupancy divided by its mean stay, and one factor scales every
stay so that the ED rate below fills the hospital to those occupancies at normal load. Any
hospital file thus runs near its normal occupancy; `CaseMix.stay_scale` says how far the
stays were stretched (1.0 = the table as written).

These tables are the hospital's demand for every simulation in the project: the event-stream
simulator (`streams.devtools.simulator`, the demo's, the tests' and the benchmarks' traffic)
draws its ED arrivals, admitted share, service mix, lengths of stay and ICU step-down from them
too, so the what-if and the live demo describe one hospital.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from allocator.hospital import Bed, Hospital
from allocator.placement import ADULT_AGE, NEED_FEATURES, candidate_units

__all__ = ["HOURLY_PROFILE", "Case", "CaseMix", "draw_arrivals", "draw_census"]

MINUTES_PER_DAY = 1440.0
ED_ARRIVALS_PER_BED_PER_DAY = 200 / 300  # ~200 ED arrivals a day for a 300-bed hospital
ADMITTED_SHARE = 1 / 3
# Relative ED arrival rate by hour (mean 1): the shape of NHS England A&E attendances by hour.
HOURLY_PROFILE = (0.62, 0.50, 0.42, 0.36, 0.32, 0.32, 0.38, 0.55, 0.85, 1.15, 1.38, 1.48,
                  1.48, 1.42, 1.40, 1.38, 1.35, 1.33, 1.30, 1.25, 1.15, 1.02, 0.90, 0.75)
ED_WORKUP = (180.0, 0.5)  # minutes from arrival to the decision to admit: (median, lognormal sigma)

# Length of stay by label: (median days, lognormal sigma); the sigma gives the long tail.
LENGTH_OF_STAY: Mapping[str, tuple[float, float]] = {
    "ICU": (3.0, 0.6), "CARDIAC": (3.2, 0.6), "STROKE": (5.5, 0.7), "MEDICINE": (3.8, 0.8),
    "SURGERY": (3.2, 0.7), "ORTHO": (5.5, 0.6), "MATERNITY": (2.0, 0.5), "PAEDIATRICS": (1.5, 0.6),
    "MENTAL_HEALTH": (9.0, 0.6),
}
DEFAULT_LENGTH_OF_STAY = (4.0, 0.7)
# Usual bed occupancy by label at normal load: small specialist units run emptier because
# their demand is lumpier (a labour ward at 95% turns women away every day).
USUAL_OCCUPANCY: Mapping[str, float] = {"ICU": 0.82, "MATERNITY": 0.72, "PAEDIATRICS": 0.72, "MENTAL_HEALTH": 0.88,
                                        "MEDICINE": 0.88}
DEFAULT_USUAL_OCCUPANCY = 0.85
DISCHARGE_DELAY_DAYS = 0.3  # mean wait for the daytime discharge window, added to the stay

# Probability of each need on admission, by label (independent draws).
NEEDS: Mapping[str, Mapping[str, float]] = {
    "ICU": {"respiratory_support": 0.70, "telemetry": 0.95, "airborne_isolation": 0.05, "droplet_isolation": 0.03,
            "contact_isolation": 0.08, "bariatric": 0.04},
    "CARDIAC": {"telemetry": 0.85, "respiratory_support": 0.15, "contact_isolation": 0.03, "bariatric": 0.03,
                "close_observation": 0.02},
    "STROKE": {"telemetry": 0.30, "close_observation": 0.12, "contact_isolation": 0.04, "bariatric": 0.02,
               "respiratory_support": 0.10},
    "MEDICINE": {"respiratory_support": 0.35, "contact_isolation": 0.07, "droplet_isolation": 0.05,
                 "airborne_isolation": 0.02, "telemetry": 0.04, "close_observation": 0.08, "bariatric": 0.02},
    "SURGERY": {"contact_isolation": 0.04, "droplet_isolation": 0.01, "bariatric": 0.03, "telemetry": 0.02,
                "close_observation": 0.02},
    "ORTHO": {"close_observation": 0.06, "contact_isolation": 0.03, "bariatric": 0.02},
    "MATERNITY": {"droplet_isolation": 0.02, "contact_isolation": 0.01, "airborne_isolation": 0.005},
    "PAEDIATRICS": {"droplet_isolation": 0.12, "airborne_isolation": 0.03, "contact_isolation": 0.04,
                    "respiratory_support": 0.30, "close_observation": 0.03},
    "MENTAL_HEALTH": {"close_observation": 0.30},
}
DEFAULT_NEEDS = {"contact_isolation": 0.04, "droplet_isolation": 0.02, "bariatric": 0.02}

# ESI 1..5 distribution by label.
ACUITY: Mapping[str, tuple[float, ...]] = {
    "ICU": (0.45, 0.50, 0.05, 0.0, 0.0), "CARDIAC": (0.05, 0.50, 0.40, 0.05, 0.0),
    "STROKE": (0.05, 0.60, 0.35, 0.0, 0.0), "MEDICINE": (0.02, 0.30, 0.60, 0.08, 0.0),
    "SURGERY": (0.01, 0.25, 0.64, 0.10, 0.0), "ORTHO": (0.0, 0.20, 0.65, 0.15, 0.0),
    "MATERNITY": (0.02, 0.30, 0.55, 0.13, 0.0), "PAEDIATRICS": (0.02, 0.25, 0.55, 0.18, 0.0),
    "MENTAL_HEALTH": (0.0, 0.35, 0.50, 0.15, 0.0),
}
DEFAULT_ACUITY = (0.02, 0.30, 0.55, 0.13, 0.0)

# Age in years by label: (low, high, mode) of a triangular distribution.
AGE: Mapping[str, tuple[float, float, float]] = {
    "PAEDIATRICS": (0.1, 15.9, 2.0), "MATERNITY": (18.0, 44.0, 30.0), "MENTAL_HEALTH": (18.0, 80.0, 32.0),
    "ORTHO": (18.0, 100.0, 84.0), "STROKE": (30.0, 100.0, 76.0), "CARDIAC": (30.0, 98.0, 70.0),
    "MEDICINE": (18.0, 100.0, 78.0),
}
DEFAULT_AGE = (18.0, 95.0, 60.0)
SEX_X_SHARE = 0.005  # recorded sex neither F nor M: needs a single room
FEMALE_ONLY = frozenset({"MATERNITY"})

# Discharges happen in the day: a patient fit outside DISCHARGE_HOURS leaves at a random time
# inside the next window (the afternoon bed crunch the matching runs into).
DISCHARGE_HOURS = (10.0, 19.0)
CLEAN_RESPONSE = (30.0, 0.5)  # minutes until housekeeping starts: (median, sigma)
CLEANING = (45.0, 0.35)  # minutes of cleaning
TERMINAL_CLEAN_EXTRA = 60.0  # after an isolation patient
# Ward patients who deteriorate and must move: share, and of those the share needing ICU
# (the rest need a telemetry bed on their own service), at a uniform point in the first half
# of the stay. ICU patients step down to STEP_DOWN_LABEL when it exists, else leave.
DETERIORATION_SHARE = 0.04
DETERIORATION_TO_ICU = 1 / 3
ICU_LABEL = "ICU"
STEP_DOWN_LABEL = "MEDICINE"
STEP_DOWN_SHARE = 0.65
STEP_DOWN_STAY = (3.0, 0.7)  # ward days after ICU
# At surge every service is asked for more beds than it has: each label's admissions are this
# multiple of what its beds can turn over, so the hospital fills and the queue grows.
SURGE_DEMAND = 1.25
INITIAL_OCCUPANCY = {"normal": 0.88, "surge": 0.97}
_NEEDS_TRIES = 20


@dataclass(frozen=True)
class Case:
    """One simulated admission with every draw its stay needs (times in minutes from the start)."""

    case_id: str
    decision_at: float  # the decision to admit (census cases: 0, already in a bed)
    label: str
    age: float
    sex: str
    needs: frozenset[str]
    acuity: int
    stay: float  # minutes in bed until medically fit (census: what is left of it)
    discharge_offset: float  # 0..1: where in the discharge window a patient fit out of hours leaves
    cleanings: tuple[float, ...]  # minutes from vacating to clean, one per bed the case may leave
    deteriorate_at: float | None  # fraction of `stay` after placement, or None
    deteriorate_to_icu: bool
    icu_acuity: int
    icu_stay: float
    step_down: bool
    step_down_stay: float
    census: bool = False


class CaseMix:
    """Label shares and per-label feasibility for one hospital."""

    def __init__(self, hospital: Hospital) -> None:
        self.hospital = hospital
        capacity: dict[str, float] = {}
        for unit in hospital.units:
            beds = len(hospital.beds_in_unit(unit.code))
            for label in unit.serves:
                capacity[label] = capacity.get(label, 0.0) + beds / len(unit.serves)
        # A unit serving no label (a step-down unit) adds its beds to the labels overflowing into it.
        for unit in hospital.units:
            if not unit.serves:
                feeders = sorted({label for u in hospital.units if unit.code in u.overflow for label in u.serves})
                for label in feeders:
                    capacity[label] = capacity.get(label, 0.0) + len(hospital.beds_in_unit(unit.code)) / len(feeders)
        self.labels = tuple(sorted(capacity))
        turnover = {label: 1.0 / (mean_stay_days(label) + DISCHARGE_DELAY_DAYS) for label in self.labels}
        used = {label: capacity[label] * USUAL_OCCUPANCY.get(label, DEFAULT_USUAL_OCCUPANCY) for label in self.labels}
        normal = {label: used[label] * turnover[label] for label in self.labels}
        admissions = ED_ARRIVALS_PER_BED_PER_DAY * ADMITTED_SHARE * len(hospital.beds)
        # admissions/day x share x (stay + delay) x scale = used beds, for every label at once
        self.stay_scale = sum(normal.values()) / admissions
        surge = {label: SURGE_DEMAND * capacity[label] * turnover[label] for label in self.labels}
        self.admissions_per_day = {
            "normal": {label: v / self.stay_scale for label, v in normal.items()},
            "surge": {label: v / self.stay_scale for label, v in surge.items()},
        }
        self._fits: dict[tuple[str, bool, str, tuple[str, ...]], bool] = {}

    def unit_labels(self, code: str) -> tuple[str, ...]:
        """Labels a unit's patients may have: what it serves, or (serving none) what overflows into it."""
        unit = self.hospital.unit(code)
        if unit.serves:
            return unit.serves
        return tuple(sorted({label for u in self.hospital.units if code in u.overflow for label in u.serves}))

    def could_ever_fit(self, label: str, age: float, sex: str, needs: frozenset[str]) -> bool:
        """Whether some bed of the label's units (and overflow) meets these needs for this patient."""
        required = tuple(sorted({NEED_FEATURES[n][0] for n in needs if n in NEED_FEATURES}))
        key = (label, age < ADULT_AGE, sex if sex in ("F", "M") else "X", required)
        if key not in self._fits:
            child, who = key[1], key[2]
            self._fits[key] = any(
                all(getattr(b, f) for f in required) and (b.single_room or b.bay_sex in (None, who))
                for u in candidate_units(self.hospital, label) if u.paediatric == child
                for b in self.hospital.beds_in_unit(u.code)
            )
        return self._fits[key]


def mean_stay_days(label: str) -> float:
    median, sigma = LENGTH_OF_STAY.get(label, DEFAULT_LENGTH_OF_STAY)
    return median * math.exp(sigma * sigma / 2)


def draw_arrivals(mix: CaseMix, *, seed: int, days: float, load: str) -> tuple[list[Case], int]:
    """Admissions with a decision to admit in [0, days), and the number of ED arrivals behind them."""
    by_label = mix.admissions_per_day[load]
    labels = mix.labels
    weights = [by_label[label] for label in labels]
    per_hour = sum(weights) / ADMITTED_SHARE / 24.0  # ED arrivals an hour, on average
    clock = random.Random(f"whatif-arrivals:{seed}:{load}")
    cases: list[Case] = []
    arrivals = 0
    end = days * MINUTES_PER_DAY
    hour = -12  # arrivals before the start reach a decision after it
    admitted = 0
    while hour * 60.0 < end:
        n = _poisson(clock, per_hour * HOURLY_PROFILE[hour % 24])
        for _ in range(n):
            at = hour * 60.0 + clock.random() * 60.0
            if at >= 0:
                arrivals += 1
            if clock.random() >= ADMITTED_SHARE:
                continue
            # Every draw happens whatever the run length, so a longer run extends a shorter one.
            decision = at + _lognormal(clock, *ED_WORKUP)
            label = clock.choices(labels, weights=weights)[0]
            case_id = f"a{admitted:05d}"
            admitted += 1
            if 0 <= decision < end:
                cases.append(_draw_case(mix, case_id, decision, seed, load, census=False, label=label))
        hour += 1
    cases.sort(key=lambda c: (c.decision_at, c.case_id))
    return cases, arrivals


def draw_census(mix: CaseMix, *, seed: int, load: str) -> list[tuple[Case, str]]:
    """Patients already in beds at the start, each with its bed: the load's initial occupancy.

    Drawn bed by bed so the start is exactly that full: a random share of beds, each holding
    a patient of a label its unit serves (a unit serving none: a label overflowing into it),
    of the bay's sex (a flexible bay takes one sex for the whole room), with only the needs
    that bed meets. The same for every policy.
    """
    rng = random.Random(f"whatif-census:{seed}:{load}")
    hospital = mix.hospital
    chosen = sorted(rng.sample(range(len(hospital.beds)), round(INITIAL_OCCUPANCY[load] * len(hospital.beds))))
    room_sex: dict[str, str] = {}
    out = []
    for n, i in enumerate(chosen):
        bed = hospital.beds[i]
        labels = mix.unit_labels(bed.unit)
        if not labels:
            continue
        label = rng.choice(labels)
        if bed.single_room:
            sex = None
        elif bed.bay_sex is not None:
            sex = bed.bay_sex
        else:
            sex = room_sex.setdefault(bed.room_id, "F" if label in FEMALE_ONLY else rng.choice("FM"))
        case = _draw_case(mix, f"c{n:05d}", 0.0, seed, load, census=True, label=label, sex=sex, bed=bed)
        out.append((case, bed.bed_id))
    return out


def _draw_case(mix: CaseMix, case_id: str, decision: float, seed: int, load: str, *, census: bool,
               label: str, sex: str | None = None, bed: Bed | None = None) -> Case:
    rng = random.Random(f"whatif-case:{seed}:{load}:{case_id}")
    low, high, mode = AGE.get(label, DEFAULT_AGE)
    age = round(rng.triangular(low, high, mode), 1)
    if bed is not None:  # a census patient fits the bed they are in: age group of the unit
        age = min(age, 15.9) if mix.hospital.unit(bed.unit).paediatric else max(age, ADULT_AGE)
    drawn = "F" if label in FEMALE_ONLY else ("X" if rng.random() < SEX_X_SHARE else rng.choice("FM"))
    sex = sex if sex is not None else drawn
    # A combination of needs no bed here can ever meet (a woman needing telemetry where the only
    # monitored surgical beds are in a male bay) is sent elsewhere in life; here it is redrawn.
    needs: frozenset[str] = frozenset()
    for _ in range(_NEEDS_TRIES):
        drawn_needs = frozenset(need for need, p in sorted(NEEDS.get(label, DEFAULT_NEEDS).items()) if rng.random() < p)
        if bed is not None:  # a census patient only has the needs their bed meets
            drawn_needs = frozenset(n for n in drawn_needs
                                    if n not in NEED_FEATURES or getattr(bed, NEED_FEATURES[n][0]))
        if bed is not None or mix.could_ever_fit(label, age, sex, drawn_needs):
            needs = drawn_needs
            break
    acuity = rng.choices((1, 2, 3, 4, 5), weights=ACUITY.get(label, DEFAULT_ACUITY))[0]
    median, sigma = LENGTH_OF_STAY.get(label, DEFAULT_LENGTH_OF_STAY)
    if census:
        # A patient found in a bed is more likely on a long stay (length-biased: the lognormal's
        # median times e^(sigma^2)), and is a uniform part of the way through it.
        stay = _lognormal(rng, median * math.exp(sigma * sigma), sigma) * rng.random()
    else:
        stay = _lognormal(rng, median, sigma)
    stay *= MINUTES_PER_DAY * mix.stay_scale
    iso = bool(needs & {"airborne_isolation", "contact_isolation", "droplet_isolation"})
    cleanings = tuple(_lognormal(rng, *CLEAN_RESPONSE) + _lognormal(rng, *CLEANING)
                      + (TERMINAL_CLEAN_EXTRA if iso else 0.0) for _ in range(3))
    deteriorates = label != ICU_LABEL and rng.random() < DETERIORATION_SHARE
    return Case(
        case_id=case_id, decision_at=decision, label=label, age=age, sex=sex, needs=needs, acuity=acuity,
        stay=stay, discharge_offset=rng.random(), cleanings=cleanings,
        deteriorate_at=rng.uniform(0.05, 0.5) if deteriorates else None,
        deteriorate_to_icu=rng.random() < DETERIORATION_TO_ICU,
        icu_acuity=rng.choice((1, 2)),
        icu_stay=_lognormal(rng, *LENGTH_OF_STAY.get(ICU_LABEL, DEFAULT_LENGTH_OF_STAY)) * MINUTES_PER_DAY
        * mix.stay_scale,
        step_down=rng.random() < STEP_DOWN_SHARE,
        step_down_stay=_lognormal(rng, *STEP_DOWN_STAY) * MINUTES_PER_DAY * mix.stay_scale,
        census=census,
    )


def discharge_time(fit_at: float, offset: float) -> float:
    """When a patient medically fit at `fit_at` leaves: at once inside the day window, else next window."""
    day, minute = divmod(fit_at, MINUTES_PER_DAY)
    start, end = DISCHARGE_HOURS[0] * 60, DISCHARGE_HOURS[1] * 60
    if start <= minute < end:
        return fit_at
    if minute >= end:
        day += 1
    return day * MINUTES_PER_DAY + start + offset * (end - start)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small hourly means here, and reproducible across platforms."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
