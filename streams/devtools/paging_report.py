"""Paging measured against the truth: `wardflow simulate --offline --paging-report` and the demo's summary.

A development tool (it imports the simulator): never imported by the worker.

The simulator knows which patients really deteriorate and when (`TrueEpisode`). One run is a
closed loop in event time: the simulator's events go through the worker's own processing in
memory (`EventProcessor` over dict tables, no broker), and the simulated clinicians read the
decisions it makes and reply in the same event stream (acks at the time they read a page, a
share of them lost; repeat observations when asked). The same simulated week (same seed and
start) is run twice: through today's worker, and through a replica of the worker's clinical
path under the rules it had before issue 13 (`allocator.paging_legacy`, kept only for this
comparison), reported under `legacy`.

Figures (per run):
- `pages_per_100_occupied_beds_per_day`, `escalations_per_100_occupied_beds_per_day`: `page`
  and `escalation` decisions per 100 occupied bed-days (occupied beds integrated over time).
- `deterioration_recall`: a true deterioration's `onset` is when its true (noise-free)
  physiology first reaches a band the chart pages for; its "chart time" is the first set of
  observations at or after the onset whose NEWS2 (as the worker scores it) is in a paging band,
  and that band's role is "the chart's role". Over the deteriorations with a chart time, the
  share that got a page or escalation to the chart's role, or one above it in the chain,
  between the start of the patient's true need (the deterioration's start, or the start of
  the true episode it began inside: still unwell on admission or from an earlier
  deterioration) and `escalate_after_minutes` after the chart time.
- `median_minutes_to_first_page`: over the same episodes, minutes from the onset to the first
  such page (0 when one already went out during the deterioration before the onset; an
  episode never reached counts as infinitely late, so a miss can only raise the median). The
  observation schedule is the same for both rule sets; `median_minutes_from_chart_to_page`
  is the same from the chart time, i.e. the delay the rules themselves add.
  `median_minutes_to_first_page_at_or_after_onset` (not a target) counts only pages at or after
  the onset: a page that went out earlier in the deterioration (at 1-4 under the old rules, or an
  escalation of one) gets no credit.
- `page_precision`: share of `page` decisions sent while the patient truly needed a clinician:
  during a deterioration, or while unwell on admission (true, noise-free physiology in a
  paging band until treatment settles it).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from allocator import news2, paging_legacy
from allocator.hospital import Hospital
from allocator.news2 import DEFAULT_RESPONSES
from inference.interface import TriageModel
from streams.devtools.memory import InMemoryWorker
from streams.devtools.simulator import HospitalSimulator, SimEvent, SimulatedClinicians, TrueEpisode
from streams.pipeline.processor import RawMessage
from streams.pipeline.triage import decoded_admission, envelope_parts, predict, triage_request
from streams.state.clinical import ClinicalConfig, page_id_for
from streams.state.handlers import HandlerContext

PREFIX = "wardflow."
COUNTED = ("page", "escalation", "observations_overdue", "review_due", "repeat_observation")


@dataclass(frozen=True)
class Sent:
    """What a run decided, as far as paging goes."""

    kind: str
    created_at: datetime
    encounter_id: str | None
    page_id: str | None = None
    role: str | None = None
    pager: bool = False
    rising: bool = False  # a review_due for a rising score: the board asks for the next set sooner


@dataclass
class RunResult:
    sent: list[Sent]
    scores: dict[str, list[tuple[datetime, news2.Band]]]  # encounter -> every NEWS2 scored, in time order
    truth: list[TrueEpisode]
    occupied_bed_days: float
    until: datetime
    acks_sent: int = 0
    acks_lost: int = 0
    repeats: int = 0
    extra_sets: int = 0  # sets the nurses took sooner because the board asked (a rising score)
    dead_letters: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)  # every decision by kind
    inputs: list[SimEvent] = field(default_factory=list)  # the closed loop's input stream, when kept


# --------------------------------------------------------------------------- today's rules, for comparison


class ChartScorer:
    """NEWS2 as the worker scores it (record, combine with recent values, score), for the report's truth
    of when the chart called for a page, and for the replica of today's rules."""

    def __init__(self, max_obs_age: timedelta, facts: Callable[[str], tuple[float, bool, bool] | None]) -> None:
        self.max_obs_age = max_obs_age
        self.facts = facts
        self.obs: dict[str, dict[str, news2.Observation]] = {}
        self.scores: dict[str, list[tuple[datetime, news2.Band]]] = defaultdict(list)

    def score(self, body: dict, at: datetime) -> news2.News2Score | None:
        enc = body["encounter_id"]
        facts = self.facts(enc)
        if facts is None:
            return None
        age, scale2, obstetric = facts
        latest = self.obs.get(enc, {})
        new = news2.Vitalset(**{k: body.get(k) for k in news2.PARAMETERS})
        self.obs[enc] = news2.record(latest, new, at)
        if not news2.news2_applicable(age, obstetric)[0]:
            return None
        combined = news2.combine(latest, new, at, self.max_obs_age)
        if combined.incomplete:
            return None
        result = news2.score(combined.vitals, scale2=scale2)
        self.scores[enc].append((at, result.band))
        return result


class LegacyClinical:
    """The worker's clinical path as it was before issue 13, over plain dicts, for the comparison only.

    Mirrors the old `streams.state.clinical`: every event first moves the hospital clock and ticks the
    patients whose next action is due; vitals are recorded, combined and scored; every paging
    action of `allocator.paging_legacy` is a decision. Encounter facts (age, scale 2, obstetric)
    come from the simulator, as a worker without a model knows them.
    """

    def __init__(self, cfg: paging_legacy.PagingConfig, scorer: ChartScorer) -> None:
        self.cfg = cfg
        self.scorer = scorer
        self.clock: datetime | None = None
        self.states: dict[str, paging_legacy.PagingState] = {}
        self.due: dict[str, datetime | None] = {}
        self.owner: dict[str, str] = {}

    def process(self, event: SimEvent) -> list[Sent]:
        body = orjson.loads(event.value)
        at = datetime.fromisoformat(body["occurred_at"])
        self.clock = at if self.clock is None else max(self.clock, at)
        out: list[Sent] = []
        for enc in [e for e, t in self.due.items() if t is not None and t <= self.clock]:
            self._save(enc, self._act(enc, *paging_legacy.tick(self.states[enc], self.clock, self.cfg), at, out))
        if event.topic == "vitals":
            self._vitals(body, at, out)
        elif event.topic == "page-acks":
            owner = self.owner.get(body["page_id"])
            if owner is not None:
                state, outcome = paging_legacy.on_ack(self.states[owner], body["page_id"], at)
                if outcome != paging_legacy.AckOutcome.UNKNOWN:
                    self._save(owner, state)
        elif event.topic == "discharges":
            self.due.pop(body["encounter_id"], None)
        return out

    def _vitals(self, body: dict, at: datetime, out: list[Sent]) -> None:
        enc = body["encounter_id"]
        result = self.scorer.score(body, at)
        if result is None:
            return
        state = self.states.get(enc, paging_legacy.PagingState())
        state, actions = paging_legacy.on_score(state, result, at, self.cfg, page_id_for("legacy", body["event_id"]))
        self._save(enc, self._act(enc, state, actions, at, out))

    def _act(self, enc: str, state, actions, at: datetime, out: list[Sent]):
        for a in actions:
            if isinstance(a, paging_legacy.Page):
                self.owner[a.page_id] = enc
                out.append(Sent("page", at, enc, a.page_id, a.role, True))
            elif isinstance(a, paging_legacy.Escalation):
                self.owner[a.page_id] = enc
                out.append(Sent("escalation", at, enc, a.page_id, a.role, True))
            else:
                out.append(Sent("observations_overdue", at, enc, None, a.role, True))
        return state

    def _save(self, enc: str, state) -> None:
        self.states[enc] = state
        self.due[enc] = paging_legacy.next_action_at(state, self.cfg)


def legacy_config(clinical: ClinicalConfig) -> paging_legacy.PagingConfig:
    """Today's rules with the settings they had (escalation and overdue grace as configured)."""
    return paging_legacy.PagingConfig(escalate_after_minutes=clinical.paging.escalate_after_minutes,
                                      overdue_grace_minutes=clinical.paging.overdue_grace_minutes)


# --------------------------------------------------------------------------- the closed loop


def run(hospital: Hospital, *, seed: int, start: datetime, days: float, clinical: ClinicalConfig,
        ack_loss_rate: float, legacy: bool = False, keep_inputs: bool = False, malformed_rate: float = 0.0,
        model: TriageModel | None = None, on_progress: Callable[[datetime], None] | None = None,
        measurement_noise: float = 1.0) -> RunResult:
    """One simulated stretch, closed loop in event time, through today's worker or (`legacy`) today's old rules.

    `model`: the triage model the worker would run (the demo's), so the worker in memory places and judges
    patients as the live one does; without it, as a worker with no model.
    """
    until = start + timedelta(days=days)
    sim = HospitalSimulator(hospital, seed=seed, start=start, vitals=True, malformed_rate=malformed_rate,
                            measurement_noise=measurement_noise)
    staff = SimulatedClinicians(sim, ack_loss_rate=ack_loss_rate)
    sent: list[Sent] = []
    inputs: list[SimEvent] = []
    dead: Counter = Counter()
    kinds: Counter = Counter()
    scorer = ChartScorer(clinical.max_obs_age, sim.worker_facts)
    if legacy:
        replica = LegacyClinical(legacy_config(clinical), scorer)
        for event in sim.events(until):
            if keep_inputs:
                inputs.append(event)
            if event.malformed is not None:
                continue  # the worker would dead-letter it before it touched the clock
            for s in replica.process(event):
                sent.append(s)
                kinds[s.kind] += 1
                staff.read(s.kind, s.created_at, s.page_id, s.encounter_id)
            if on_progress:
                on_progress(event.at)
    else:
        asyncio.run(_worker_loop(sim, staff, scorer, hospital, clinical, until, sent, dead, kinds,
                                 inputs if keep_inputs else None, on_progress, model))
    return RunResult(sent=sent, scores=dict(scorer.scores), truth=sim.true_episodes(until), occupied_bed_days=sim.occupied_bed_days(),
                     until=until, acks_sent=staff.acks_sent, acks_lost=staff.acks_lost, repeats=staff.repeats,
                     extra_sets=staff.extra_sets,
                     dead_letters=dead, kinds=kinds, inputs=inputs)


async def _worker_loop(sim: HospitalSimulator, staff: SimulatedClinicians, scorer: ChartScorer, hospital: Hospital,
                       clinical: ClinicalConfig,
                       until: datetime, sent: list[Sent], dead: Counter, kinds: Counter, inputs: list[SimEvent] | None,
                       on_progress: Callable[[datetime], None] | None, model: TriageModel | None = None) -> None:
    worker = InMemoryWorker({hospital.hospital_id: hospital}, topic_prefix=PREFIX,
                            context=HandlerContext(clinical=clinical, model_available=model is not None))
    for offset, event in enumerate(sim.events(until)):
        prediction = error = None
        admission = decoded_admission(event.value) if model is not None and event.topic == "admissions" else None
        if model is not None and admission is not None:  # as the worker's sequencer stage does, one at a time
            [result] = await predict(model, [triage_request(admission)], batch_size=1,
                                     metrics=worker.processor.metrics)
            prediction, error = envelope_parts(result)
        if inputs is not None:
            inputs.append(event)
        if event.topic == "vitals" and event.malformed is None:
            scorer.score(orjson.loads(event.value), event.at)
        outcome = await worker.processor.process(RawMessage(topic=PREFIX + event.topic, partition=0, offset=offset,
                                                            key=event.key, value=event.value, prediction=prediction,
                                                            prediction_error=error))
        if outcome.status == "dead_letter":
            dead[outcome.code] += 1
        for d in outcome.decisions:
            kinds[d.kind] += 1
            details = d.details or {}
            rising = d.kind == "review_due" and details.get("rising_from") is not None
            if d.kind in COUNTED:
                sent.append(Sent(d.kind, d.created_at, d.encounter_id, d.page_id, d.role, d.pager is not None, rising))
            # the board asks for the next set sooner after a rising score: the nurse takes it
            observe_by = datetime.fromisoformat(details["next_obs_due_at"]) if rising else None
            staff.read(d.kind, d.created_at, d.page_id, d.encounter_id, observe_by=observe_by)
        if on_progress:
            on_progress(event.at)


# --------------------------------------------------------------------------- the figures


def figures(result: RunResult, *, escalate_after_minutes: float, chain: tuple[str, ...]) -> dict[str, Any]:
    """The report's figures for one run (see the module docstring for the definitions)."""
    bed_days = result.occupied_bed_days
    kinds = Counter(s.kind for s in result.sent)
    interruptions = sum(1 for s in result.sent if s.pager)

    def per100(n: int) -> float:
        return round(100 * n / bed_days, 2) if bed_days else 0.0

    rank = {role: i for i, role in enumerate(chain)}
    reaching: dict[str, list[Sent]] = defaultdict(list)
    for s in result.sent:
        if s.kind in ("page", "escalation") and s.encounter_id:
            reaching[s.encounter_id].append(s)
    window = timedelta(minutes=escalate_after_minutes)
    deteriorations = [e for e in result.truth if e.kind == "deterioration"]
    by_encounter: dict[str, list[TrueEpisode]] = defaultdict(list)
    for e in result.truth:
        by_encounter[e.encounter_id].append(e)
    after_onset: list[float] = []
    minutes, from_chart, recalled, never_called = _reach(deteriorations, result, reaching, by_encounter, rank,
                                                          window, after_onset)
    unwell = [e for e in result.truth if e.kind == "unwell_on_admission"]
    unwell_minutes, _, unwell_reached, _ = _reach(unwell, result, reaching, by_encounter, rank, window)
    pages = [s for s in result.sent if s.kind == "page"]
    true_pages = sum(any(e.started <= s.created_at <= e.ended for e in by_encounter.get(s.encounter_id or "", ()))
                     for s in pages)
    judged = len(minutes)
    median = statistics.median(minutes) if minutes else None
    chart_median = statistics.median(from_chart) if from_chart else None
    return {
        "pages_per_100_occupied_beds_per_day": per100(kinds["page"]),
        "escalations_per_100_occupied_beds_per_day": per100(kinds["escalation"]),
        "deterioration_recall": round(recalled / judged, 4) if judged else None,
        "median_minutes_to_first_page": _minutes(median),
        "page_precision": round(true_pages / len(pages), 4) if pages else None,
        "median_minutes_from_chart_to_page": _minutes(chart_median),
        "median_minutes_to_first_page_at_or_after_onset": _minutes(
            statistics.median(after_onset) if after_onset else None),
        "mean_minutes_to_first_page": _minutes(statistics.fmean(minutes) if minutes else None),
        "interruptions_per_100_occupied_beds_per_day": per100(interruptions),
        "unwell_on_admission_reached_in_time": round(unwell_reached / len(unwell_minutes), 4) if unwell_minutes else None,
        "median_minutes_to_first_page_unwell_on_admission": _minutes(
            statistics.median(unwell_minutes) if unwell_minutes else None),
        "counts": {
            "pages": kinds["page"], "escalations": kinds["escalation"],
            "observations_overdue": kinds["observations_overdue"], "review_due": kinds["review_due"],
            "repeat_observation": kinds["repeat_observation"], "interruptions": interruptions,
            "true_deteriorations": len(deteriorations), "deteriorations_chart_called_for_a_page": judged,
            "deteriorations_chart_never_called": never_called, "deteriorations_reached_in_time": recalled,
            "unwell_on_admission": len(unwell),
            "unwell_on_admission_chart_called_for_a_page": len(unwell_minutes), "pages_in_true_episodes": true_pages,
            "acks_sent": result.acks_sent, "acks_lost": result.acks_lost, "repeats_taken": result.repeats,
            "review_due_rising": sum(s.rising for s in result.sent), "extra_sets_taken": result.extra_sets,
            "dead_letters": dict(result.dead_letters),
        },
    }


def _reach(episodes: list[TrueEpisode], result: RunResult, reaching: dict[str, list[Sent]],
           by_encounter: dict[str, list[TrueEpisode]], rank: dict[str, int],
           window: timedelta, after_onset: list[float] | None = None) -> tuple[list[float], list[float], int, int]:
    """For each true episode the chart called for a page: minutes from its onset (and from the chart time) to the
    first page reaching the chart's role or above; how many were reached in time; how many the chart never called.
    `after_onset` collects the minutes to the first such page at or after the onset (no credit for earlier ones)."""
    minutes, from_chart, recalled, never_called = [], [], 0, 0
    for e in episodes:
        onset = e.onset
        called = None if onset is None else next(
            ((at, band) for at, band in result.scores.get(e.encounter_id, ())
             if onset <= at <= e.ended and DEFAULT_RESPONSES[band].role), None)
        if called is None or onset is None:
            never_called += 1
            continue
        due, role = called[0], DEFAULT_RESPONSES[called[1]].role
        if role is None or due + window > result.until:
            continue  # the stretch ends before the rules could be judged (a called band always has a role)
        since = _need_started(e, by_encounter[e.encounter_id])
        times = sorted(s.created_at for s in reaching[e.encounter_id]
                       if since <= s.created_at <= e.ended and rank.get(s.role or "", -1) >= rank[role])
        recalled += bool(times) and times[0] <= due + window
        minutes.append(max(0.0, (times[0] - onset).total_seconds() / 60) if times else math.inf)
        from_chart.append(max(0.0, (times[0] - due).total_seconds() / 60) if times else math.inf)
        if after_onset is not None:
            later = [t for t in times if t >= onset]
            after_onset.append((later[0] - onset).total_seconds() / 60 if later else math.inf)
    return minutes, from_chart, recalled, never_called


def _need_started(episode: TrueEpisode, same_patient: list[TrueEpisode]) -> datetime:
    """When the patient's continuous true need that contains `episode` began: a deterioration that starts while
    the patient is still truly unwell (on admission, or from an earlier deterioration) is the same need, and a page
    for it already reached the clinician."""
    start = episode.started
    changed = True
    while changed:
        changed = False
        for other in same_patient:
            if other.started < start <= other.ended:
                start, changed = other.started, True
    return start


def _minutes(value: float | None) -> float | str | None:
    return None if value is None else (round(value, 1) if math.isfinite(value) else "never")


def report(hospital: Hospital, *, seed: int, start: datetime, days: float, clinical: ClinicalConfig,
           ack_loss_rate: float, malformed_rate: float = 0.0, current_run: RunResult | None = None,
           on_progress: Callable[[str, datetime], None] | None = None, measurement_noise: float = 1.0) -> dict[str, Any]:
    """Today's worker and today's old rules over the same simulated stretch, side by side, with the targets.

    `current_run`: today's worker's run when the caller already made it (the same seed, start and days).
    """
    if current_run is None:
        current_run = run(hospital, seed=seed, start=start, days=days, clinical=clinical, ack_loss_rate=ack_loss_rate,
                          malformed_rate=malformed_rate, measurement_noise=measurement_noise,
                          on_progress=(lambda at: on_progress("chart rules", at)) if on_progress else None)
    legacy_run = run(hospital, seed=seed, start=start, days=days, clinical=clinical, ack_loss_rate=ack_loss_rate,
                     malformed_rate=malformed_rate, legacy=True, measurement_noise=measurement_noise,
                     on_progress=(lambda at: on_progress("legacy rules", at)) if on_progress else None)
    return compare(current_run, legacy_run, hospital=hospital, seed=seed, start=start, days=days, clinical=clinical,
                   ack_loss_rate=ack_loss_rate, malformed_rate=malformed_rate, measurement_noise=measurement_noise)


def compare(current_run: RunResult, legacy_run: RunResult, *, hospital: Hospital, seed: int, start: datetime,
            days: float, clinical: ClinicalConfig, ack_loss_rate: float, malformed_rate: float = 0.0,
            source: str = "in memory", measurement_noise: float = 1.0) -> dict[str, Any]:
    """The report: the current run's figures, the legacy run's under `legacy`, and the targets."""
    cfg = clinical.paging
    current = figures(current_run, escalate_after_minutes=cfg.escalate_after_minutes, chain=cfg.chain)
    legacy = figures(legacy_run, escalate_after_minutes=cfg.escalate_after_minutes, chain=cfg.chain)
    return {
        "simulation": {"hospital_id": hospital.hospital_id, "beds": len(hospital.beds), "seed": seed,
                       "start": start.isoformat(), "days": days, "ack_loss_rate": ack_loss_rate,
                       "malformed_rate": malformed_rate, "measurement_noise": measurement_noise,
                       "occupied_bed_days": round(current_run.occupied_bed_days, 1),
                       "escalate_after_minutes": cfg.escalate_after_minutes, "current_rules_run": source,
                       "legacy_rules_run": "in memory (allocator.paging_legacy)"},
        **current,
        "legacy": legacy,
        "targets": targets(current, legacy),
    }


def sent_from_decision(body: dict[str, Any]) -> Sent | None:
    """A decision as read off the decisions topic (JSON), for the figures; None if it is not about paging."""
    if body.get("kind") not in COUNTED:
        return None
    return Sent(body["kind"], datetime.fromisoformat(body["created_at"]), body.get("encounter_id"),
                body.get("page_id"), body.get("role"), body.get("pager") is not None,
                body.get("kind") == "review_due" and (body.get("details") or {}).get("rising_from") is not None)


def _busy(f: dict[str, Any]) -> float:
    return f["pages_per_100_occupied_beds_per_day"] + f["escalations_per_100_occupied_beds_per_day"]


def targets(current: dict[str, Any], legacy: dict[str, Any]) -> dict[str, Any]:
    """Issue 13's targets, each judged on this run's figures (None: the stretch had nothing to judge it on)."""
    def minutes(f: dict[str, Any]) -> float | None:
        m = f["median_minutes_to_first_page"]
        return None if m is None else (math.inf if m == "never" else m)

    recall, precision = current["deterioration_recall"], current["page_precision"]
    now, before = minutes(current), minutes(legacy)
    fewer = _busy(legacy) / _busy(current) if _busy(current) else math.inf
    return {
        "recall_is_100_percent": None if recall is None else recall == 1.0,
        "median_minutes_no_worse_than_legacy": None if now is None or before is None else now <= before,
        "precision_at_least_0_8": None if precision is None else precision >= 0.8,
        "pages_plus_escalations_times_fewer_than_legacy": round(fewer, 2) if math.isfinite(fewer) else "all",
        "at_least_5_times_fewer": fewer >= 5,
    }


def table(rep: dict[str, Any]) -> str:
    """The before/after table (Markdown) for a report."""
    rows = [("pages per 100 occupied beds per day", "pages_per_100_occupied_beds_per_day"),
            ("escalations per 100 occupied beds per day", "escalations_per_100_occupied_beds_per_day"),
            ("all interruptions (pages, escalations, overdue) per 100 occupied beds per day",
             "interruptions_per_100_occupied_beds_per_day"),
            ("deterioration recall", "deterioration_recall"),
            ("median minutes to first page", "median_minutes_to_first_page"),
            ("median minutes from onset to first page at or after it (not a target)",
             "median_minutes_to_first_page_at_or_after_onset"),
            ("page precision", "page_precision"),
            ("patients unwell on admission reached in time (not a target)", "unwell_on_admission_reached_in_time"),
            ("median minutes from admission to first page, unwell on admission (not a target)",
             "median_minutes_to_first_page_unwell_on_admission")]
    lines = ["| figure | today's rules (legacy) | chart rules (issue 13) |", "| --- | ---: | ---: |"]
    lines += [f"| {label} | {rep['legacy'][k]} | {rep[k]} |" for label, k in rows]
    return "\n".join(lines)
