"""A seeded discrete-event simulation of one hospital that speaks the event contract.

Why it exists: the demo, the benchmarks and the integration tests need a believable day of
traffic (arrivals that peak in the afternoon, patients who stay days, beds cleaned between
them, a few broken messages) without a real EHR. Pure: no Kafka, no clock, no I/O.

Why a shadow of the hospital: discharges, transfers and cleaning must name real beds. The
simulator keeps its own bed state and mirrors the worker's handlers (`streams.state.handlers`):
a patient with `requested_unit` is placed by the very `allocator.placement.place` call the
worker makes (target = the requested label, needs = only what the worker knows, i.e.
bariatric from `weight_kg`), waits when there is no bed, and the waiting list is retried in
order whenever a bed is cleaned. Everything else moves by `transfers` the simulated bed
manager records. The shadow mirrors a worker that holds no beds for unrequested patients
(no model, or a model whose proposals a clinician has not confirmed); with auto-assignment
the worker's beds and the shadow's can drift apart.

Case mix: every arrival's text, age, sex and labels come from `inference.corpus.sample_case`.
The corpus admits most of its cases (it is built for training, not for an ED's mix), so the
simulator first draws whether an arrival is admitted (a third are) and, if so, which service
(in proportion to the hospital's capacity, see `_admitting_labels`), then samples the corpus
until a case with that label comes up. The ED arrival rate, the admitted share, the service mix
and the lengths of stay are the what-if's (`allocator.whatif_cases`): one set of distributions
for both simulations. An admission event is sent for every arrival; a
`DISCHARGE` case goes home from the ED a few hours later.

Same (hospital, seed, start) -> the same events, byte for byte. Malformed messages and vitals
draw from their own random streams and id series, so toggling them leaves the other events'
bytes unchanged.

Vitals and the truth about them (for the paging report, `streams.devtools.paging_report`): each reading
is the patient's true physiology plus measurement noise. The physiology on admission follows
the triage acuity and settles towards normal with treatment; some patients deteriorate for a
few hours; 1% of SpO2 readings are probe artefacts. The simulator keeps the truth
(`true_episodes`: deteriorations and patients unwell on admission, with when their true
physiology reached a band the NEWS2 chart pages for) and the occupied bed-days. The nurses
observe by acuity and keep to the chart's frequency for the last full set. The ward's staff in
reply to the worker's decisions (`SimulatedClinicians`: acks when a page is read, repeat sets
when asked, an extra set when the board asks for one sooner) join the stream through
`acknowledge`, `repeat_observations` and `observe_sooner`, at their own event times, with their
own id series and a random stream of their own per reply (per page; per patient and time for
sets), so the rest of the stream is the same whatever the worker decides, and two rule sets on
one seed differ only where their decisions differ (common random numbers).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from allocator.hospital import Bed, Hospital
from allocator.matching import Policy, assign
from allocator.news2 import DEFAULT_RESPONSES, Vitalset, score
from allocator.placement import Assignment, BedSnapshot, PatientToPlace, place
from allocator.waiting import WaitingPatient
from allocator.whatif_cases import (  # the hospital's demand, one set of tables with the what-if
    ADMITTED_SHARE,
    DEFAULT_LENGTH_OF_STAY,
    ED_ARRIVALS_PER_BED_PER_DAY,
    HOURLY_PROFILE,
    LENGTH_OF_STAY,
    STEP_DOWN_LABEL,
    STEP_DOWN_SHARE,
    STEP_DOWN_STAY,
    CaseMix,
)
from inference.corpus import ClinicalCase, sample_case
from streams.state.handlers import BARIATRIC_WEIGHT_KG  # the worker's own threshold: the shadow must not drift

DISCHARGE_LABEL = "DISCHARGE"
# Malformed-message mix (weights): what broken EHR feeds send in practice.
MALFORMED_MIX = {
    "broken_json": 0.15, "not_utf8": 0.10, "missing_field": 0.18, "wrong_type": 0.17,
    "naive_timestamp": 0.14, "unknown_bed": 0.09, "unknown_hospital": 0.08, "discharge_never_admitted": 0.09,
}
_REQUIRED = {  # required fields per topic that a missing_field message may lack
    "admissions": ("patient_id", "encounter_id", "age", "sex", "text", "occurred_at"),
    "vitals": ("patient_id", "encounter_id", "occurred_at"),
    "transfers": ("patient_id", "encounter_id", "to_bed_id"),
    "discharges": ("patient_id", "encounter_id", "event_id"),
    "bed-status": ("bed_id", "status", "hospital_id"),
}
_DISPOSITIONS = (("home", 0.84), ("care_home", 0.07), ("other_hospital", 0.03), ("died", 0.03),
                 ("self_discharge", 0.03))
_ICU_DISPOSITIONS = (("died", 0.45), ("other_hospital", 0.35), ("home", 0.2))  # ICU without step-down
_MAINTENANCE = ("maintenance: bed rail repair", "maintenance: mattress replacement",
                "maintenance: call bell fault", "maintenance: oxygen outlet check", "estates: leak in ceiling")
_MAINTENANCE_PER_DAY_PER_BED = 3 / 300
# Measurement noise (one standard deviation per reading, around the true physiology). Published variation is as
# large or larger: resp rate counted twice in 245 adults differed by SD 3/min (95% limits +-4.9 same observer,
# +-5.7 different observers; Lim et al., Respir Med 2002;96:31-3), i.e. about 2/min per count; automated BP
# devices pass validation with an SD of up to 8 mmHg against the reference (ISO 81060-2); pulse oximeters are
# accurate to an RMS error of 2-4% against arterial blood (ISO 80601-2-61), repeatable to about 1%. Scale with
# `measurement_noise` (`--measurement-noise`) to see how the paging figures depend on it (docs/paging.md).
MEASUREMENT_SD = {"resp_rate": 1.5, "spo2": 1.0, "systolic_bp": 8.0, "heart_rate": 6.0, "temperature_c": 0.3}
RECOVERY_HOURS = 12.0  # time constant of an admission's abnormal physiology settling with treatment
ARTEFACT_RATE = 0.01  # share of SpO2 readings that are probe artefacts (40-84% with the rest true)


@dataclass(frozen=True)
class SimEvent:
    """One message to publish: contract topic name (no prefix), key and JSON value as bytes.

    `malformed` names the defect when the message is deliberately broken (None otherwise), so
    tests and the demo know which dead letters to expect; it is not published.
    """

    at: datetime
    topic: str
    key: bytes
    value: bytes
    malformed: str | None = None


@dataclass(frozen=True)
class SimStats:
    """What the simulation produced so far: messages by topic, happenings by kind, defects."""

    by_topic: dict[str, int]
    by_kind: dict[str, int]
    malformed: dict[str, int]
    arrivals_by_hour: tuple[int, ...]
    beds: int
    occupied_beds: int
    waiting: int

    @property
    def arrivals(self) -> int:
        return sum(self.arrivals_by_hour)

    @property
    def admitted_share(self) -> float:
        return self.by_kind.get("admitted", 0) / self.arrivals if self.arrivals else 0.0

    @property
    def malformed_share(self) -> float:
        total = sum(self.by_topic.values())
        return sum(self.malformed.values()) / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"by_topic": self.by_topic, "by_kind": self.by_kind, "malformed": self.malformed,
                "arrivals": self.arrivals, "admitted_share": round(self.admitted_share, 3),
                "malformed_share": round(self.malformed_share, 4),
                "arrivals_by_hour": list(self.arrivals_by_hour), "beds": self.beds,
                "occupied_beds": self.occupied_beds, "patients_waiting": self.waiting}


@dataclass
class _Patient:
    """The shadow's view of one encounter; `needs` are the case's (the bed manager knows them)."""

    patient_id: str
    encounter_id: str
    case: ClinicalCase
    label: str
    requested: bool
    spo2_scale2: bool
    needs: frozenset[str]
    acuity: int
    bed_id: str | None = None
    deteriorating_until: datetime | None = None
    deterioration_started: datetime | None = None
    admitted_at: datetime | None = None  # physiology settles from the acuity's towards normal from here
    chart_minutes: int | None = None  # the observation interval the chart gave the last complete set
    next_vitals_at: datetime | None = None  # the nurse's own next set
    episode: _Episode | None = None  # the deterioration under way, for the truth

    @property
    def worker_needs(self) -> frozenset[str]:
        """What the worker places a requested patient on: only the structured weight."""
        return frozenset({"bariatric"}) if (self.case.weight_kg or 0) >= BARIATRIC_WEIGHT_KG else frozenset()


@dataclass(frozen=True)
class TrueEpisode:
    """A time when a patient truly needed a clinician, as only the simulator knows it.

    `kind` "deterioration": the physiology worsens from `started` until treated or the patient
    leaves (`ended`). `kind` "unwell_on_admission": the patient arrived with a true (noise-free)
    physiology the NEWS2 chart pages for, from admission until treatment settles it below the
    paging bands. `onset`: when the true physiology first reached a band the chart pages for (a
    3 in one parameter, or 5 or more); None if it never did. `onset_role`: the role the chart
    pages at `onset`.
    """

    kind: str
    encounter_id: str
    patient_id: str
    started: datetime
    ended: datetime
    onset: datetime | None
    onset_role: str | None


@dataclass
class _Episode:
    started: datetime
    until: datetime


@dataclass(order=True)
class _Action:
    at: datetime
    seq: int
    kind: str = field(compare=False)
    arg: str | None = field(compare=False, default=None)


class HospitalSimulator:
    """Deterministic day(s) of one hospital's events; call `events(until)` to advance."""

    def __init__(self, hospital: Hospital, *, seed: int, start: datetime, initial_occupancy: float = 0.85,
                 requested_unit_rate: float = 0.85, malformed_rate: float = 0.01,
                 arrivals_per_day: float | None = None, vitals: bool = False, policy: Policy = "optimal",
                 measurement_noise: float = 1.0) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (e.g. 2026-11-24T08:00:00+00:00)")
        for name, value in (("initial_occupancy", initial_occupancy), ("requested_unit_rate", requested_unit_rate),
                            ("malformed_rate", malformed_rate)):
            if not 0.0 <= value <= (0.5 if name == "malformed_rate" else 1.0):
                raise ValueError(f"{name} out of range: {value}")
        if not 0.0 <= measurement_noise <= 5.0:
            raise ValueError(f"measurement_noise must be between 0 (exact readings) and 5, got {measurement_noise}")
        self.measurement_noise = measurement_noise  # scales MEASUREMENT_SD (1: the published figures)
        self.hospital = hospital
        self.seed = seed
        self.start = start.replace(microsecond=0)
        self.initial_occupancy = initial_occupancy
        self.requested_unit_rate = requested_unit_rate
        self.malformed_rate = malformed_rate
        self.vitals = vitals
        self.policy = policy  # the worker's allocation policy, mirrored by the shadow
        self.arrivals_per_day = (ED_ARRIVALS_PER_BED_PER_DAY * len(hospital.beds)
                                 if arrivals_per_day is None else float(arrivals_per_day))
        self._mix = CaseMix(hospital)  # the service mix and the stay scale the what-if uses too
        tag = f"{seed}|{hospital.hospital_id}|{self.start.isoformat()}"
        self._rng = random.Random(f"sim|{tag}")       # the clinical story
        self._vrng = random.Random(f"vitals|{tag}")   # observations
        self._mrng = random.Random(f"malformed|{tag}")  # broken messages
        self._arng = random.Random(f"artefacts|{tag}")  # probe artefacts in otherwise true readings
        self._tag = tag  # sets taken in reply to decisions draw from their own stream per (patient, time)
        self.artefact_rate = ARTEFACT_RATE if vitals else 0.0
        self._episodes: list[TrueEpisode] = []
        self._unwell: dict[str, TrueEpisode] = {}  # encounter -> unwell on admission
        self._facts: dict[str, tuple[float, bool, bool]] = {}  # encounter -> (age, scale2, obstetric as the worker sees it)
        self._occupied_s = 0.0  # occupied bed-seconds so far
        self._occupied_since: datetime | None = None
        self._id_prefix = f"sim-{seed}-{self.start:%Y%m%d%H%M}"
        self._key = hospital.hospital_id.encode("utf-8")
        self._serial = {"": 0, "v": 0, "m": 0, "r": 0, "a": 0, "o": 0}
        self._encounter_no = self._rng.randrange(10_000_000, 90_000_000) * 10
        self._patient_ids: set[str] = set()
        self._labels = self._admitting_labels()
        self._beds: dict[str, BedSnapshot] = {}  # beds that are not available (absent = available)
        self._occupant: dict[str, str] = {}      # bed_id -> encounter_id
        self._patients: dict[str, _Patient] = {}
        self._waiting: list[str] = []            # the worker's FIFO of requested patients with no bed
        self._waiting_since: dict[str, datetime] = {}  # when each of them joined it
        self._queue: list[_Action] = []
        self._seq = 0
        self._out: list[SimEvent] = []
        self._by_topic: Counter[str] = Counter()
        self._by_kind: Counter[str] = Counter()
        self._malformed: Counter[str] = Counter()
        self._arrivals_by_hour = [0] * 24
        self._started = False
        self._peak_rate = max(HOURLY_PROFILE) / sum(HOURLY_PROFILE) * 24 * self.arrivals_per_day  # per day

    # ------------------------------------------------------------------ public

    def events(self, until: datetime) -> Iterator[SimEvent]:
        """Events in simulated-time order up to `until`; a later call continues from there."""
        if not self._started:
            self._started = True
            self._initial_census()
            self._schedule(self._next_arrival(self.start), "arrival")
            self._schedule(self._next_maintenance(self.start), "maintenance")
        actions = {"census": self._on_census, "arrival": self._on_arrival, "ed_discharge": self._on_ed_discharge,
                   "manual_place": self._on_manual_place, "discharge": self._on_discharge,
                   "step_down": self._on_step_down, "repatriate": self._on_repatriate,
                   "isolation": self._on_isolation, "cleaning": self._on_cleaning, "clean": self._on_clean,
                   "maintenance": self._on_maintenance, "vitals": self._on_vitals,
                   "repeat_vitals": self._on_repeat_vitals, "extra_vitals": self._on_extra_vitals,
                   "ack": self._on_ack}
        while self._queue and self._queue[0].at <= until:
            action = heapq.heappop(self._queue)
            self._count_occupied(action.at)
            actions[action.kind](action.at, action.arg)
            yield from self._drain()
        self._count_occupied(until)

    def acknowledge(self, page_id: str, at: datetime, clinician_id: str) -> None:
        """A clinician reads page `page_id` at `at` (event time): a `page-acks` event at that time."""
        self._schedule(at, "ack", f"{page_id}\n{clinician_id}")

    def repeat_observations(self, encounter_id: str, at: datetime) -> None:
        """The bedside nurse repeats the observations at `at`: a full set of the patient's true physiology."""
        self._schedule(at, "repeat_vitals", encounter_id)

    def observe_sooner(self, encounter_id: str, at: datetime) -> bool:
        """The nurse takes an extra full set at `at` because the board asked for one sooner than the patient's own
        next set (a rising score); nothing when that set comes first anyway. Returns whether one was scheduled."""
        p = self._patients.get(encounter_id)
        if p is None or (p.next_vitals_at is not None and p.next_vitals_at <= at):
            return False
        self._schedule(at, "extra_vitals", encounter_id)
        return True

    def true_episodes(self, until: datetime) -> list[TrueEpisode]:
        """Every deterioration that started before `until`; ones still under way end at `until`."""
        open_ = [self._close_episode(p, min(until, p.episode.until), keep=False)
                 for p in self._patients.values() if p.episode is not None]
        unwell = [replace(e, ended=min(e.ended, until)) for e in self._unwell.values() if e.started < until]
        return sorted([*self._episodes, *open_, *unwell], key=lambda e: (e.started, e.kind, e.encounter_id))

    def occupied_bed_days(self) -> float:
        """Occupied beds integrated over the simulated time so far, in bed-days."""
        return self._occupied_s / 86400

    def worker_facts(self, encounter_id: str) -> tuple[float, bool, bool] | None:
        """(age, SpO2 scale 2, obstetric) as a worker without a model knows them, for a replica of its rules."""
        p = self._patients.get(encounter_id)
        if p is not None:
            self._facts[encounter_id] = (p.case.age, p.spo2_scale2, self._obstetric(p))
        return self._facts.get(encounter_id)

    def stats(self) -> SimStats:
        return SimStats(by_topic=dict(sorted(self._by_topic.items())), by_kind=dict(sorted(self._by_kind.items())),
                        malformed=dict(sorted(self._malformed.items())), arrivals_by_hour=tuple(self._arrivals_by_hour),
                        beds=len(self.hospital.beds), occupied_beds=len(self._occupant), waiting=len(self._waiting))

    def occupied_beds(self) -> dict[str, str]:
        """The shadow's bed_id -> encounter_id, for checks against a real worker's state."""
        return dict(self._occupant)

    # ------------------------------------------------------------------ the story

    def _initial_census(self) -> None:
        """Fill ~initial_occupancy of every unit with patients admitted before `start`."""
        planned: list[str] = []
        for unit in self.hospital.units:
            labels = [lb for lb in unit.serves if lb in self._labels]
            if labels:
                count = round(self.initial_occupancy * len(self.hospital.beds_in_unit(unit.code)))
                planned += [self._rng.choice(labels) for _ in range(count)]
        self._rng.shuffle(planned)
        window = timedelta(minutes=15)  # just before start, so a paced replay begins promptly
        for i, label in enumerate(planned):  # through the queue, so their vitals interleave in time order
            self._schedule(self.start - window + window * i / max(1, len(planned)), "census", label)

    def _on_census(self, at: datetime, label: str | None) -> None:
        self._admit(at, self._new_patient(self._case_for(label or ""), requested=True), census=True)

    def _on_arrival(self, at: datetime, _: str | None) -> None:
        self._schedule(self._next_arrival(at), "arrival")
        self._arrivals_by_hour[at.astimezone(self.start.tzinfo).hour] += 1
        self._by_kind["arrival"] += 1
        admitted = self._rng.random() < ADMITTED_SHARE
        label = self._pick_label() if admitted else DISCHARGE_LABEL
        case = self._case_for(label)
        requested = admitted and self._rng.random() < self.requested_unit_rate
        self._admit(at, self._new_patient(case, requested=requested), census=False)

    def _admit(self, at: datetime, p: _Patient, *, census: bool) -> None:
        body: dict[str, Any] = {"patient_id": p.patient_id, "encounter_id": p.encounter_id, "age": p.case.age,
                                "sex": p.case.sex, "text": p.case.text, "arrival": self._arrival_mode(p.case)}
        if p.requested:
            body["requested_unit"] = p.label
        if p.case.weight_kg is not None:
            body["weight_kg"] = p.case.weight_kg
        if p.spo2_scale2:
            body["spo2_scale2"] = True
        self._emit(at, "admissions", body)
        self._patients[p.encounter_id] = p
        self._by_kind["initial_census" if census else ("admitted" if p.label != DISCHARGE_LABEL else "not_admitted")] += 1
        if p.label == DISCHARGE_LABEL:
            self._schedule(at + self._hours(2, 5), "ed_discharge", p.encounter_id)
            return
        p.admitted_at = at
        self._schedule_stay(at, p, census=census)
        if self.vitals:
            self._unwell_on_admission(p)
        if p.requested:
            self._by_kind["requested_unit"] += 1
            if not self._worker_match(at, arrived=p):
                self._by_kind["waiting_for_bed"] += 1
        else:
            self._schedule(at + self._hours(1, 4), "manual_place", p.encounter_id)
        if self.vitals:
            self._schedule(at + timedelta(minutes=self._vrng.uniform(5, 30)), "vitals", p.encounter_id)

    def _on_ed_discharge(self, at: datetime, encounter_id: str | None) -> None:
        p = self._patients.get(encounter_id or "")
        if p is not None:
            self._close(at, p, "home", kind="ed_discharge")

    def _on_manual_place(self, at: datetime, encounter_id: str | None) -> None:
        """The bed manager places an unrequested admission by hand: a recorded transfer."""
        p = self._patients.get(encounter_id or "")
        if p is None or p.bed_id:
            return
        bed = self._choose_bed(p, p.label, p.needs)
        if bed is None:
            self._schedule(at + self._hours(0.5, 1.5), "manual_place", p.encounter_id)
            return
        self._transfer(at, p, bed.bed_id, kind="manual_placement")
        if bed.overflow:
            self._schedule(at + self._hours(4, 12), "repatriate", p.encounter_id)

    def _on_discharge(self, at: datetime, encounter_id: str | None) -> None:
        p = self._patients.get(encounter_id or "")
        if p is not None:
            mix = _ICU_DISPOSITIONS if p.label == "ICU" else _DISPOSITIONS
            self._close(at, p, _weighted(self._rng, mix), kind="discharge")

    def _on_step_down(self, at: datetime, encounter_id: str | None) -> None:
        p = self._patients.get(encounter_id or "")
        if p is None:
            return
        label = STEP_DOWN_LABEL if STEP_DOWN_LABEL in self._labels else self._pick_label(exclude="ICU")
        bed = self._choose_bed(p, label, p.needs - {"respiratory_support"})
        if bed is None:  # no ward bed: the patient stays in ICU for now (a "delayed discharge")
            self._schedule(at + self._hours(1, 3), "step_down", p.encounter_id)
            return
        self._transfer(at, p, bed.bed_id, kind="step_down")
        p.label, p.acuity, p.needs = label, max(p.acuity, 3), p.needs - {"respiratory_support"}
        median, sigma = STEP_DOWN_STAY  # ward days after ICU, as the what-if has them
        ward_stay = timedelta(days=self._rng.lognormvariate(math.log(median), sigma) * self._mix.stay_scale)
        self._schedule(self._discharge_time(at + ward_stay), "discharge", p.encounter_id)

    def _on_repatriate(self, at: datetime, encounter_id: str | None) -> None:
        """An outlier (overflow bed) goes back to their own service once it has room."""
        p = self._patients.get(encounter_id or "")
        if p is None or not p.bed_id:
            return
        bed = self._choose_bed(p, p.label, p.needs)
        if bed is not None and not bed.overflow:
            self._transfer(at, p, bed.bed_id, kind="repatriation")
        elif self._rng.random() < 0.7:
            self._schedule(at + self._hours(6, 12), "repatriate", p.encounter_id)

    def _on_isolation(self, at: datetime, encounter_id: str | None) -> None:
        """A new infection (C. difficile, norovirus) is found: move to a side room if one is free."""
        p = self._patients.get(encounter_id or "")
        if p is None or not p.bed_id or self._bed(p.bed_id).single_room:
            return
        needs = p.needs | {"contact_isolation"}
        bed = self._choose_bed(p, p.label, needs)
        if bed is not None and self._bed(bed.bed_id).single_room:
            p.needs = needs
            self._transfer(at, p, bed.bed_id, kind="isolation_move")

    def _on_cleaning(self, at: datetime, bed_id: str | None) -> None:
        self._set_bed(bed_id or "", "cleaning")
        self._emit(at, "bed-status", {"bed_id": bed_id, "status": "cleaning"})
        self._by_kind["cleaning"] += 1
        self._schedule(at + self._lognormal_minutes(55, 0.4, 30, 120), "clean", bed_id)

    def _on_clean(self, at: datetime, bed_id: str | None) -> None:
        self._set_bed(bed_id or "", "available")
        self._emit(at, "bed-status", {"bed_id": bed_id, "status": "clean"})
        self._by_kind["clean"] += 1
        self._worker_match(at)

    def _on_maintenance(self, at: datetime, _: str | None) -> None:
        self._schedule(self._next_maintenance(at), "maintenance")
        free = [b.bed_id for b in self.hospital.beds if b.bed_id not in self._beds]
        if not free:
            return
        bed_id = self._rng.choice(free)
        self._set_bed(bed_id, "blocked")
        self._emit(at, "bed-status", {"bed_id": bed_id, "status": "blocked", "reason": self._rng.choice(_MAINTENANCE)})
        self._by_kind["blocked"] += 1
        self._schedule(at + self._lognormal_minutes(240, 0.5, 60, 720), "clean", bed_id)

    # ------------------------------------------------------------------ shadow moves

    def _worker_match(self, at: datetime, arrived: _Patient | None = None) -> bool:
        """Exactly the worker's matching of its waiting list (plus a new arrival); occupies the beds it gives.

        Mirrors `streams.state.handlers.place_waiting` for requested-unit patients, whose acuity the
        worker does not know without a model (so none here either). Returns whether `arrived` got a bed.
        """
        if arrived is not None:
            self._waiting.append(arrived.encounter_id)
            self._waiting_since[arrived.encounter_id] = at
        if not self._waiting:
            return False
        unknown = self.hospital.allocation.acuity_weight(None)
        loads = {u.code: 0.0 for u in self.hospital.units}
        for bed_id in self._occupant:
            loads[self._bed(bed_id).unit] += unknown
        waiting = [WaitingPatient(encounter_id=p.encounter_id, age=p.case.age, sex=p.case.sex, target_unit=p.label,
                                  needs=p.worker_needs,
                                  waited_minutes=max(0.0, (at - self._waiting_since[p.encounter_id]).total_seconds() / 60))
                   for p in (self._patients[e] for e in self._waiting)]
        result = assign(waiting, self.hospital, self._beds, policy=self.policy, loads=loads, explain=False)
        placed = set()
        for match in result.assignments:
            p = self._patients[match.patient.encounter_id]
            self._occupy(match.bed_id, p)
            placed.add(p.encounter_id)
            if arrived is None or p.encounter_id != arrived.encounter_id:
                self._by_kind["placed_from_waiting"] += 1
            if match.assignment.overflow:
                self._schedule(at + self._hours(4, 12), "repatriate", p.encounter_id)
        self._waiting = [e for e in self._waiting if e not in placed]
        for e in placed:
            self._waiting_since.pop(e, None)
        return arrived is not None and arrived.encounter_id in placed

    def _choose_bed(self, p: _Patient, label: str, needs: frozenset[str]) -> Assignment | None:
        """The simulated bed manager's pick: the allocator's best bed for the true needs."""
        placed = place(PatientToPlace(encounter_id=p.encounter_id, age=p.case.age, sex=p.case.sex,
                                      target_unit=label, needs=needs), self.hospital, self._beds)
        return placed if isinstance(placed, Assignment) else None

    def _schedule_stay(self, at: datetime, p: _Patient, *, census: bool) -> None:
        """Discharge (or ICU step-down) counted from the decision to admit, bed or no bed:
        a patient who waits is treated in the emergency department meanwhile."""
        if census:  # already part-way through a stay: the remaining part of a length-biased stay
            median, sigma = LENGTH_OF_STAY.get(p.label, DEFAULT_LENGTH_OF_STAY)
            total = timedelta(days=self._rng.lognormvariate(math.log(median) + sigma**2, sigma) * self._mix.stay_scale)
            stay = total * self._rng.random()
            p.admitted_at = at - (total - stay)  # part-way through: their physiology has settled as much
        else:
            stay = self._length_of_stay(p.label)
        if p.label == "ICU" and self._rng.random() < STEP_DOWN_SHARE:
            self._schedule(self._discharge_time(at + min(stay, self._hours(24, 72))), "step_down", p.encounter_id)
        else:
            self._schedule(self._discharge_time(at + stay), "discharge", p.encounter_id)
        if self._rng.random() < 0.02:
            self._schedule(at + stay * self._rng.uniform(0.1, 0.5), "isolation", p.encounter_id)

    def _transfer(self, at: datetime, p: _Patient, bed_id: str, *, kind: str) -> None:
        self._emit(at, "transfers", {"patient_id": p.patient_id, "encounter_id": p.encounter_id, "to_bed_id": bed_id})
        self._by_kind[kind] += 1
        if p.bed_id:
            self._vacate(at, p.bed_id, terminal=bool(p.needs & {"contact_isolation", "airborne_isolation"}))
        self._occupy(bed_id, p)
        if p.encounter_id in self._waiting:  # the worker drops a moved patient from its waiting list
            self._waiting.remove(p.encounter_id)

    def _close(self, at: datetime, p: _Patient, disposition: str, *, kind: str) -> None:
        self._emit(at, "discharges", {"patient_id": p.patient_id, "encounter_id": p.encounter_id,
                                      "disposition": disposition})
        self._by_kind[kind] += 1
        if p.episode is not None:
            self._close_episode(p, min(at, p.episode.until))
        unwell = self._unwell.get(p.encounter_id)
        if unwell is not None and unwell.ended > at:
            self._unwell[p.encounter_id] = replace(unwell, ended=at)
        self.worker_facts(p.encounter_id)
        del self._patients[p.encounter_id]  # closed: pending actions for it find nothing and do nothing
        if p.bed_id:
            self._vacate(at, p.bed_id, terminal=bool(p.needs & {"contact_isolation", "airborne_isolation"}))
        if p.encounter_id in self._waiting:
            self._waiting.remove(p.encounter_id)

    def _occupy(self, bed_id: str, p: _Patient) -> None:
        self._beds[bed_id] = BedSnapshot(status="occupied", occupant_sex=p.case.sex)
        self._occupant[bed_id] = p.encounter_id
        p.bed_id = bed_id

    def _vacate(self, at: datetime, bed_id: str, *, terminal: bool) -> None:
        """The worker marks a vacated bed dirty; housekeeping starts within the hour."""
        self._set_bed(bed_id, "dirty")
        delay = self._rng.uniform(10, 45) + (30 if terminal else 0)  # a terminal clean takes longer
        self._schedule(at + timedelta(minutes=delay), "cleaning", bed_id)

    def _set_bed(self, bed_id: str, status: str) -> None:
        self._occupant.pop(bed_id, None)
        if status == "available":
            self._beds.pop(bed_id, None)
        else:
            self._beds[bed_id] = BedSnapshot(status=status, occupant_sex=None)

    # ------------------------------------------------------------------ vitals

    def _on_vitals(self, at: datetime, encounter_id: str | None) -> None:
        p = self._patients.get(encounter_id or "")
        if p is None:
            return
        rng = self._vrng
        if p.deteriorating_until is None and rng.random() < 0.012:  # ~1 in 10 over a stay's sets
            p.deterioration_started, p.deteriorating_until = at, at + timedelta(hours=rng.uniform(4, 12))
            p.episode = _Episode(at, p.deteriorating_until)
        severity = 0.0
        if p.deteriorating_until is not None and p.deterioration_started is not None:
            if at >= p.deteriorating_until:  # treated (or escalated): back to the baseline
                p.deteriorating_until = p.deterioration_started = None
                if p.episode is not None:
                    self._close_episode(p, p.episode.until)
            else:
                severity = _severity(p, at)
        obs = _observations(rng, p, severity, self._settling(p, at), noise=self.measurement_noise)
        if "spo2" in obs and self._arng.random() < self.artefact_rate:  # a probe off the finger; the rest is true
            obs["spo2"] = self._arng.randint(40, 84)
            self._by_kind["probe_artefact"] += 1
        body = {"patient_id": p.patient_id, "encounter_id": p.encounter_id, **obs}
        self._emit(at, "vitals", body, series="v")
        self._by_kind["vitals"] += 1
        unit = self._bed(p.bed_id).unit if p.bed_id else None
        if severity > 0 or p.acuity <= 2 or (unit and "ICU" in self.hospital.unit(unit).serves):
            gap = timedelta(minutes=rng.uniform(50, 70))
        elif p.acuity == 3:
            gap = timedelta(minutes=rng.uniform(220, 260))
        else:
            gap = timedelta(hours=rng.uniform(6, 12))
        p.chart_minutes = _chart_minutes(obs, p) or p.chart_minutes
        if p.chart_minutes:  # the nurse also keeps to the frequency the e-obs chart shows for the last full set
            gap = min(gap, timedelta(minutes=0.9 * p.chart_minutes))
        self._schedule(at + gap, "vitals", p.encounter_id)
        p.next_vitals_at = (at + gap).replace(microsecond=0)

    def _on_repeat_vitals(self, at: datetime, encounter_id: str | None) -> None:
        """A repeat the worker asked for: a full set of the true physiology (no artefact), off the regular round."""
        self._off_round(at, encounter_id, "r", "repeat_vitals")

    def _on_extra_vitals(self, at: datetime, encounter_id: str | None) -> None:
        """A set the board asked for sooner than the nurse's own next one: like a repeat, from its own draws."""
        self._off_round(at, encounter_id, "o", "extra_vitals")

    def _off_round(self, at: datetime, encounter_id: str | None, series: str, kind: str) -> None:
        """A set taken in reply to a decision. Its noise is drawn from a stream of its own for this patient and
        time (common random numbers): two rule sets that ask for the same set get the same readings, however
        many other replies either of them asked for before."""
        p = self._patients.get(encounter_id or "")
        if p is None:
            return
        rng = random.Random(f"{series}|{self._tag}|{p.encounter_id}|{at.isoformat()}")
        severity = _severity(p, at) if p.deteriorating_until is not None and at < p.deteriorating_until else 0.0
        obs = _observations(rng, p, severity, self._settling(p, at), partial=False, noise=self.measurement_noise)
        self._emit(at, "vitals", {"patient_id": p.patient_id, "encounter_id": p.encounter_id, **obs}, series=series,
                   malformable=False)
        self._by_kind[kind] += 1

    def _on_ack(self, at: datetime, arg: str | None) -> None:
        page_id, clinician_id = (arg or "\n").split("\n")
        self._emit(at, "page-acks", {"page_id": page_id, "clinician_id": clinician_id}, series="a", malformable=False)
        self._by_kind["page_ack"] += 1

    def _settling(self, p: _Patient, at: datetime) -> float:
        """How much of the acuity's abnormal physiology is left (1 on admission, towards 0 with treatment)."""
        if p.admitted_at is None:
            return 1.0
        return math.exp(-max(0.0, (at - p.admitted_at).total_seconds()) / (RECOVERY_HOURS * 3600))

    def _bed(self, bed_id: str) -> Bed:
        bed = self.hospital.bed(bed_id)
        if bed is None:
            raise KeyError(f"bed {bed_id!r} is not in {self.hospital.hospital_id}")
        return bed

    def _true_response(self, p: _Patient, at: datetime, severity: float) -> str | None:
        """The role the chart pages for the patient's true (noise-free) physiology at `at` (None: no page)."""
        true = _true_physiology(p, severity, self._settling(p, at))
        result = score(Vitalset(resp_rate=true[0], spo2=min(100.0, true[1]), on_oxygen=true[5], systolic_bp=true[2],
                                heart_rate=true[3], consciousness="A", temperature_c=true[4]), scale2=p.spo2_scale2)
        return DEFAULT_RESPONSES[result.band].role

    def _close_episode(self, p: _Patient, ended: datetime, *, keep: bool = True) -> TrueEpisode:
        """The truth about `p`'s deterioration: when its noise-free physiology first called for a page."""
        ep = p.episode
        if ep is None:
            raise ValueError(f"{p.encounter_id} has no deterioration episode to close")
        onset: datetime | None = None
        role: str | None = None
        t = ep.started
        while t <= ended:
            role = self._true_response(p, t, _severity_at(ep.started, ep.until, t))
            if role is not None:
                onset = t
                break
            t += timedelta(minutes=1)
        episode = TrueEpisode(kind="deterioration", encounter_id=p.encounter_id, patient_id=p.patient_id,
                              started=ep.started, ended=ended, onset=onset, onset_role=role)
        if keep:
            self._episodes.append(episode)
            p.episode = None
        return episode

    def _unwell_on_admission(self, p: _Patient) -> None:
        """A patient admitted with a true physiology the chart pages for: a true episode until it settles."""
        at = p.admitted_at
        if at is None:
            raise ValueError(f"{p.encounter_id} is not admitted yet")
        role = self._true_response(p, at, 0.0)
        if role is None:
            return
        t = at
        while self._true_response(p, t, 0.0) is not None and t < at + timedelta(days=3):
            t += timedelta(minutes=5)
        self._unwell[p.encounter_id] = TrueEpisode(kind="unwell_on_admission", encounter_id=p.encounter_id,
                                                   patient_id=p.patient_id, started=at, ended=t, onset=at,
                                                   onset_role=role)

    def _obstetric(self, p: _Patient) -> bool:
        """Whether the worker (without a model) judges the patient to be on an obstetric unit's chart."""
        if p.bed_id:
            units = [self.hospital.unit(self._bed(p.bed_id).unit)]
        elif p.requested:
            units = list(self.hospital.units_serving(p.label))
        else:
            units = []
        return bool(units) and all(u.obstetric for u in units)

    def _count_occupied(self, at: datetime) -> None:
        at = max(at, self.start)
        if self._occupied_since is not None and at > self._occupied_since:
            self._occupied_s += len(self._occupant) * (at - self._occupied_since).total_seconds()
        if self._occupied_since is None or at > self._occupied_since:
            self._occupied_since = at

    # ------------------------------------------------------------------ helpers

    def _admitting_labels(self) -> dict[str, float]:
        """Labels this hospital admits to, weighted by their admissions a day at normal load.

        Why: the corpus's unit mix is tuned for training, not for this hospital. `CaseMix` (shared
        with the what-if, `allocator.whatif_cases`) gives each service the admissions that keep
        its beds at their usual occupancy with the stays below, so the bed pressure the demo shows
        is the hospital's, not an artefact of the corpus. The text and labels still come from the
        corpus itself.
        """
        return {lb: n for lb, n in self._mix.admissions_per_day["normal"].items() if lb != DISCHARGE_LABEL and n > 0}

    def _pick_label(self, exclude: str | None = None) -> str:
        labels = [lb for lb in self._labels if lb != exclude]
        return self._rng.choices(labels, weights=[self._labels[lb] for lb in labels])[0]

    def _case_for(self, label: str) -> ClinicalCase:
        """A corpus case whose label is `label` (rejection sampling keeps the corpus's own text).

        A label the corpus never produces (a hospital's own service) gets the last admitted
        case relabelled, so the hospital is still exercised.
        """
        last_admitted = None
        for _ in range(2000):
            case = sample_case(self._rng)
            if case.target_unit == label:
                return case
            if case.target_unit != DISCHARGE_LABEL:
                last_admitted = case
        if last_admitted is None:
            raise ValueError(f"the corpus produced no case for {label!r}")
        return replace(last_admitted, target_unit=label)

    def _new_patient(self, case: ClinicalCase, *, requested: bool) -> _Patient:
        self._encounter_no += self._rng.randint(1, 9)
        while True:
            patient_id = f"P{self._rng.randrange(1_000_000, 10_000_000)}"
            if patient_id not in self._patient_ids:
                self._patient_ids.add(patient_id)
                break
        return _Patient(patient_id=patient_id, encounter_id=f"E{self._encounter_no}", case=case,
                        label=case.target_unit, requested=requested, spo2_scale2=self._scale2(case),
                        needs=frozenset(case.needs), acuity=case.acuity)

    def _scale2(self, case: ClinicalCase) -> bool:
        """NEWS2 scale 2 for hypercapnic respiratory failure: most COPD cases, a few other chests."""
        if "copd" in case.presentation.lower():
            return self._rng.random() < 0.7
        return case.target_unit == "MEDICINE" and "respiratory_support" in case.needs and self._rng.random() < 0.08

    def _arrival_mode(self, case: ClinicalCase) -> str:
        if case.register == "ambulance":
            return "ambulance"
        if case.register == "referral":
            return "referral"
        if case.register == "admission":
            return _weighted(self._rng, (("ambulance", 0.45), ("walk_in", 0.35), ("transfer", 0.2)))
        if case.acuity <= 2 and self._rng.random() < 0.6:
            return "ambulance"
        return "walk_in"

    def _next_arrival(self, after: datetime) -> datetime:
        """Non-homogeneous Poisson arrivals by thinning against the peak hourly rate."""
        t = after
        while True:
            t += timedelta(days=self._rng.expovariate(self._peak_rate))
            hour = t.astimezone(self.start.tzinfo).hour
            if self._rng.random() * max(HOURLY_PROFILE) < HOURLY_PROFILE[hour]:
                return t.replace(microsecond=0)

    def _next_maintenance(self, after: datetime) -> datetime:
        rate = _MAINTENANCE_PER_DAY_PER_BED * len(self.hospital.beds)
        return (after + timedelta(days=self._rng.expovariate(max(rate, 1e-6)))).replace(microsecond=0)

    def _length_of_stay(self, label: str) -> timedelta:
        median, sigma = LENGTH_OF_STAY.get(label, DEFAULT_LENGTH_OF_STAY)
        return timedelta(days=self._rng.lognormvariate(math.log(median), sigma) * self._mix.stay_scale)

    def _discharge_time(self, t: datetime) -> datetime:
        """Most discharges happen 10-19h (ward rounds, pharmacy, transport); night ones move on."""
        local = t.astimezone(self.start.tzinfo)
        if 9 <= local.hour < 20 or self._rng.random() < 0.1:
            return t.replace(microsecond=0)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1 if local.hour >= 20 else 0)
        return (day + timedelta(hours=self._rng.triangular(10, 19, 13))).replace(microsecond=0)

    def _hours(self, low: float, high: float) -> timedelta:
        return timedelta(hours=self._rng.uniform(low, high))

    def _lognormal_minutes(self, median: float, sigma: float, low: float, high: float) -> timedelta:
        return timedelta(minutes=min(high, max(low, self._rng.lognormvariate(math.log(median), sigma))))

    def _schedule(self, at: datetime, kind: str, arg: str | None = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Action(at.replace(microsecond=0), self._seq, kind, arg))

    def _emit(self, at: datetime, topic: str, fields: dict[str, Any], series: str = "",
              malformable: bool = True) -> None:
        body = {"event_id": self._next_id(series), "hospital_id": self.hospital.hospital_id,
                "occurred_at": at.isoformat(timespec="seconds"), **fields}
        self._out.append(SimEvent(at, topic, self._key, orjson.dumps(body)))
        self._by_topic[topic] += 1
        rate = self.malformed_rate
        if malformable and rate and self._mrng.random() < rate / (1 - rate):  # so that ~rate of all messages are broken
            kind = _weighted(self._mrng, tuple(MALFORMED_MIX.items()))
            self._out.append(self._malformed_event(kind, at, topic, body))
            self._by_topic[self._out[-1].topic] += 1
            self._malformed[kind] += 1

    def _next_id(self, series: str) -> str:
        self._serial[series] += 1
        return f"{self._id_prefix}-{series}{self._serial[series]}"

    def _drain(self) -> Iterator[SimEvent]:
        out, self._out = self._out, []
        yield from out

    def _malformed_event(self, kind: str, at: datetime, topic: str, body: dict[str, Any]) -> SimEvent:
        """A broken sibling of a valid message (own event_id): the shadow never applies it."""
        rng, body = self._mrng, {**body, "event_id": self._next_id("m")}
        key = self._key
        if kind == "broken_json":  # cut off mid-message (a producer died mid-write)
            raw = orjson.dumps(body)
            value = raw[: rng.randint(len(raw) // 3, len(raw) - 2)]
        elif kind == "not_utf8":  # a Latin-1 export: 0xE9 is not valid UTF-8 on its own
            value = orjson.dumps({**body, "source_system": "H\u00f4pital EHR"}).replace("\u00f4".encode(), b"\xf4")
        elif kind == "missing_field":
            body.pop(rng.choice(_REQUIRED.get(topic, ("occurred_at",))), None)
            value = orjson.dumps(body)
        elif kind == "wrong_type":
            value = orjson.dumps(_wrong_type(rng, topic, body))
        elif kind == "naive_timestamp":  # local time with no offset: ambiguous across DST
            body["occurred_at"] = at.replace(tzinfo=None).isoformat(timespec="seconds")
            value = orjson.dumps(body)
        elif kind == "unknown_bed":
            topic, bed_id = "bed-status", self._unknown_bed_id()
            value = orjson.dumps({k: body[k] for k in ("event_id", "hospital_id", "occurred_at")}
                                 | {"bed_id": bed_id, "status": "clean"})
        elif kind == "unknown_hospital":  # a feed configured for the sister hospital
            body["hospital_id"] = f"{self.hospital.hospital_id}-annexe"
            key, value = body["hospital_id"].encode(), orjson.dumps(body)
        else:  # discharge_never_admitted: the EHR discharged someone it never told us about
            topic = "discharges"
            value = orjson.dumps({k: body[k] for k in ("event_id", "hospital_id", "occurred_at")}
                                 | {"patient_id": f"P{rng.randrange(1_000_000, 10_000_000)}",
                                    "encounter_id": f"E{rng.randrange(10**8, 10**9)}", "disposition": "home"})
        return SimEvent(at, topic, key, value, malformed=kind)

    def _unknown_bed_id(self) -> str:
        while True:
            bed_id = f"{self._mrng.choice(('AMU', 'WARD-9', 'OLD-SDU', 'X'))}-{self._mrng.randint(1, 40):02d}"
            if self.hospital.bed(bed_id) is None:
                return bed_id


def _weighted(rng: random.Random, items: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


def _wrong_type(rng: random.Random, topic: str, body: dict[str, Any]) -> dict[str, Any]:
    """Type mistakes real integrations make: numbers as strings, ids as numbers, yes/no flags."""
    body = dict(body)
    if topic == "admissions":
        body["age"] = f"{body['age']:g}" if rng.random() < 0.7 else f"{body['age']:g} years"
    elif topic == "vitals":
        body["spo2"] = f"{rng.randint(88, 99)}%"
    elif topic == "bed-status":
        body["reason"] = ["housekeeping", "terminal clean"]
    else:
        body["patient_id"] = int(body["patient_id"].lstrip("P"))
    return body


_BASELINES = {  # (resp_rate, spo2, systolic_bp, heart_rate, temperature_c) by acuity, on admission
    1: (24, 92, 100, 112, 37.9), 2: (21, 94, 112, 100, 37.6), 3: (18, 96, 124, 88, 37.1),
    4: (16, 97, 128, 78, 36.9), 5: (15, 98, 126, 74, 36.8),
}
_SETTLED = _BASELINES[4]  # where treatment takes an admission's physiology


def _severity_at(started: datetime, until: datetime, at: datetime) -> float:
    span = (until - started).total_seconds()
    return min(1.0, max(0.0, 1.5 * (at - started).total_seconds() / span))


def _severity(p: _Patient, at: datetime) -> float:
    if p.deterioration_started is None or p.deteriorating_until is None:
        raise ValueError(f"{p.encounter_id} is not deteriorating")
    return _severity_at(p.deterioration_started, p.deteriorating_until, at)


def _true_physiology(p: _Patient, severity: float, settling: float) -> tuple[float, float, float, float, float, bool]:
    """Noise-free (resp_rate, spo2, systolic_bp, heart_rate, temperature_c, on_oxygen).

    The acuity's physiology on admission settles towards normal with treatment (`settling` 1 -> 0)
    and worsens with a deterioration's `severity` (0..1). Oxygen follows the true saturation (or
    the patient's need), as prescribed, not one noisy reading.
    """
    base = _BASELINES.get(p.acuity, _BASELINES[3])
    rr, spo2, sbp, hr, temp = (n + (b - n) * settling for b, n in zip(base, _SETTLED, strict=True))
    if p.spo2_scale2:
        spo2 = 90  # target 88-92% for hypercapnic patients
    rr, spo2, sbp = rr + 10 * severity, spo2 - 7 * severity, sbp - 35 * severity
    hr, temp = hr + 30 * severity, temp + 1.0 * severity
    return rr, spo2, sbp, hr, temp, spo2 < 93 or "respiratory_support" in p.needs


def _observations(rng: random.Random, p: _Patient, severity: float, settling: float = 1.0,
                  partial: bool = True, noise: float = 1.0) -> dict[str, Any]:
    """One set of observations: the true physiology plus measurement noise (`MEASUREMENT_SD` times `noise`)."""
    rr, spo2, sbp, hr, temp, on_oxygen = _true_physiology(p, severity, settling)
    sd = {k: v * noise for k, v in MEASUREMENT_SD.items()}
    rr = round(rr + rng.gauss(0, sd["resp_rate"]))
    spo2 = min(100, round(spo2 + rng.gauss(0, sd["spo2"])))
    obs: dict[str, Any] = {
        "resp_rate": max(6, rr), "spo2": max(70, spo2), "on_oxygen": on_oxygen,
        "systolic_bp": max(60, round(sbp + rng.gauss(0, sd["systolic_bp"]))),
        "heart_rate": max(35, round(hr + rng.gauss(0, sd["heart_rate"]))),
        "consciousness": "C" if severity > 0.8 and rng.random() < 0.5 else "A",
        "temperature_c": round(temp + rng.gauss(0, sd["temperature_c"]), 1),
    }
    if partial and rng.random() < 0.15:  # a partial set: the nurse was interrupted, the monitor sent some only
        keep = set(rng.sample(sorted(obs), rng.randint(1, 4)))
        obs = {k: v for k, v in obs.items() if k in keep}
    return obs


def _chart_minutes(obs: dict[str, Any], p: _Patient) -> int | None:
    """The observation interval the NEWS2 chart gives a complete set as measured (None: a partial set)."""
    if len(obs) < 7:
        return None
    result = score(Vitalset(**obs), scale2=p.spo2_scale2)
    return DEFAULT_RESPONSES[result.band].monitoring_minutes


class SimulatedClinicians:
    """The ward's staff, in event time: they read each page and escalation a few minutes after it
    goes out and acknowledge it (`occurred_at` = when they read it), except a share of
    acknowledgements that are lost; and the bedside nurse repeats a suspect set within minutes.

    Feed it the worker's decisions (`read`) as they come; it schedules the replies in the
    simulator's own event stream, so they reach the worker in event-time order at any speed.
    """

    def __init__(self, sim: HospitalSimulator, *, ack_loss_rate: float = 0.1, read_minutes: tuple[float, float] = (1, 10),
                 repeat_minutes: tuple[float, float] = (2, 8)) -> None:
        if not 0.0 <= ack_loss_rate <= 1.0:
            raise ValueError(f"ack_loss_rate must be between 0 and 1, got {ack_loss_rate}")
        self.sim = sim
        self.ack_loss_rate = ack_loss_rate
        self.read_minutes = read_minutes
        self.repeat_minutes = repeat_minutes
        self.clinician_id = sim.hospital.clinicians[0] if sim.hospital.clinicians else "sim-clinician"
        self._tag = f"{sim.seed}|{sim.hospital.hospital_id}|{sim.start.isoformat()}"
        self.acks_sent = 0
        self.acks_lost = 0
        self.repeats = 0
        self.extra_sets = 0

    def read(self, kind: str, created_at: datetime, page_id: str | None = None, encounter_id: str | None = None,
             observe_by: datetime | None = None) -> None:
        """One decision as the ward's staff see it. `observe_by`: a board task's due time for the next set (a
        rising score); the nurse takes it in the last third of the time given, unless the patient's own set
        comes first."""
        if kind in ("page", "escalation") and page_id:
            rng = self._draws("ack", page_id)
            if rng.random() < self.ack_loss_rate:
                self.acks_lost += 1
                return
            self.acks_sent += 1
            self.sim.acknowledge(page_id, created_at + timedelta(minutes=rng.uniform(*self.read_minutes)),
                                 self.clinician_id)
        elif kind == "repeat_observation" and encounter_id:
            self.repeats += 1
            rng = self._draws("repeat", f"{encounter_id}|{created_at.isoformat()}")
            self.sim.repeat_observations(encounter_id, created_at + timedelta(minutes=rng.uniform(*self.repeat_minutes)))
        elif kind == "review_due" and encounter_id and observe_by is not None and observe_by > created_at:
            rng = self._draws("sooner", f"{encounter_id}|{created_at.isoformat()}")
            self.extra_sets += self.sim.observe_sooner(encounter_id,
                                                       created_at + (observe_by - created_at) * rng.uniform(2 / 3, 1))

    def _draws(self, kind: str, key: str) -> random.Random:
        """The draws for one reply, from a stream of its own (common random numbers): whether a page's ack is
        lost and when it is read depend on that page alone, not on how many pages came before it, so rule sets
        compared on the same seed differ only where their decisions differ."""
        return random.Random(f"{kind}|{self._tag}|{key}")


def utc_hour(now: datetime | None = None) -> datetime:
    """The default simulation start: now, rounded down to the hour, in UTC."""
    return (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)

