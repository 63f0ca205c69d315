"""Who is interrupted, and when: NEWS2 paging as pure functions over a small per-patient state.

The stream keeps one `PagingState` per patient in a table (`to_dict`/`from_dict`) and calls
`on_score` for each complete score, `on_ack` for each page-ack, `tick` when the patient's
`next_action_at` has come, and `overdue_round` at each ward round. Every function takes `now`
and never reads a clock, so a replay of the same inputs gives the same actions.

The chart decides who is interrupted (RCP NEWS2, 2017):
- 0 and 1-4: nobody is paged. The bed board gets a `ReviewDue` (observation frequency; at 1-4
  a registered nurse's assessment) when the band changes, and when the score rose by
  `rising_points` or more since the previous one: then the next set is due within
  `rising_observe_minutes` (the chart leaves more frequent monitoring to the nurse at 1-4; a
  trend is what a single score cannot show).
- a 3 in a single parameter: urgent ward-based review (ward doctor); 5-6: urgent response
  (ward doctor); 7 or more: emergency response (critical care outreach), at once, never
  delayed or batched.

One page per episode:
- A paging score with no episode open starts one and pages the band's role. While the
  episode lasts, a score in the same or a lower band pages nobody; a higher band than any
  paged in the episode re-pages (its own role, a new page id that needs its own ack).
- An unacknowledged page escalates one role up the chain every `escalate_after_minutes`;
  an ack of any page of the episode ends escalation for the episode. A lower score never
  cancels escalation of an unacknowledged page (a falsely reassuring reading must not
  silence a page nobody has seen).
- The episode ends when every score for `episode_end_minutes` is below the episode's band
  (the highest paged), and not before its escalation is over (acknowledged, or the chain
  exhausted). The next paging score, the one that ends it included, is a new episode: a
  patient who fell from 7+ to 5-6 and stayed there is the ward doctor's again.
- The end count runs from the first score below the band, however long the gap to the next
  score: one reassuring set and then nothing for longer than the end time ends the episode.
- A new deterioration inside the episode pages again, once the episode's page is acknowledged
  (or its chain exhausted): a paging score higher than the score before it, after scores below
  the episode's band, starts a new episode at its band (`NEW_DETERIORATION`); a single 3 or a
  5-6 still at the episode's band `reassess_after_minutes` after the ack asks the next role in
  the chain to review, once per episode (`NO_IMPROVEMENT`; never beyond the role of 7 or more).
  A 7 or more is already the outreach team's and is watched at that level; but a complete 7 or
  more after the review that follows no complete set for `reassess_after_minutes` (only
  incomplete sets, or none) asks the same team to review again, once: nobody has seen the
  patient at that level for an hour (found by the paging report: an acknowledged 8 followed by
  two incomplete sets, then a 9 three and a half hours later paged nobody, while the patient had
  recovered and deteriorated again).
- A lower bound (`score_at_least`: an incomplete set whose measured values reach a paging
  band) pages like a score, but below the episode's band it is no sign of improvement.
- Acks are judged on event time: an ack records its own `occurred_at`, even when it is
  processed after an escalation that its time preceded; the escalation already sent stands,
  and no further one follows.

A single implausible reading (SpO2 of `artefact_spo2_max` % or lower with breathing scoring 0
and a pulse scoring at most 1: a probe off the finger) that would start or raise an episode asks for a repeat set within
`repeat_within_minutes` before anyone is paged. A reassuring repeat pages nobody, unless it is
`rising_points` above the set before the suspect reading (a rising patient: the suspect set is
paged); a repeat that pages again (or the same reading again) pages at once; no repeat in time
pages on the suspect reading. A total of 7 or more is never delayed.

Overdue observations are a nursing task reported per unit at each ward round (one list by
urgency); a patient whose last score was 5 or more is reported on their own, at once.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from allocator.news2 import (
    DEFAULT_RESPONSES,
    Band,
    News2Score,
    ParameterScore,
    Priority,
    Response,
    band_label,
    describe_scoring,
)

DEFAULT_CHAIN = ("nurse_in_charge", "ward_doctor", "critical_care_outreach", "rapid_response")
NEW_DETERIORATION = "new_deterioration"  # a rise into a paging band after an improvement since the review
NO_IMPROVEMENT = "no_improvement"  # still at the band `reassess_after_minutes` after the review
REPEAT_NOT_TAKEN = "repeat_not_taken"  # a suspect set's repeat did not come in time
REPEAT_RISING = "repeat_rising"  # a suspect set's repeat, below the bands, rose from the set before it
REPEAT_STILL_LOW = "repeat_still_low"  # a suspect set's repeat, below the bands, still has a low SpO2
REPEAT_SPO2_POINTS = 2  # a repeat SpO2 scoring this or more (scale 1: 93% or less) does not reassure
URGENT_OVERDUE_TOTAL = 5  # RCP: a NEWS2 of 5 or more is the urgent response threshold
_DAY_MINUTES = 24 * 60
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PagingConfig:
    escalate_after_minutes: float = 15
    episode_end_minutes: float = 60  # scores below the episode's band this long end it
    repeat_within_minutes: float = 10  # a suspected artefact waits this long for a repeat set
    reassess_after_minutes: float = 60  # still at the band this long after the ack: the next role reviews
    artefact_spo2_max: float = 85  # a SpO2 this low with normal breathing and pulse is a suspected artefact
    rising_points: int = 2  # a 0-4 this many points above the previous score: observe again sooner
    rising_observe_minutes: float = 30  # how soon, after such a rise (the board's due time; nobody is paged)
    overdue_grace_minutes: float = 15
    overdue_round_minutes: float = 240  # ward rounds every 4 hours from midnight UTC
    trend_length: int = 5  # scores a page shows
    chain: tuple[str, ...] = DEFAULT_CHAIN
    responses: Mapping[Band, Response] = field(default_factory=lambda: DEFAULT_RESPONSES)
    overdue_role: str = "nurse_in_charge"  # observations are a nursing task

    def __post_init__(self) -> None:
        # Fail at start-up, not on the first deteriorating patient.
        if not self.chain or len(set(self.chain)) != len(self.chain):
            raise ValueError("the escalation chain must list at least one role, each once")
        if set(self.responses) != set(Band):
            raise ValueError("the response table must cover every NEWS2 band")
        unreachable = sorted({r.role for r in self.responses.values() if r.role} - set(self.chain))
        if unreachable:
            raise ValueError(f"paged roles missing from the escalation chain: {unreachable}")
        if self.escalate_after_minutes <= 0:
            raise ValueError("escalate_after_minutes must be positive")
        if not 0 < self.repeat_within_minutes < self.escalate_after_minutes:
            raise ValueError("repeat_within_minutes must be positive and shorter than escalate_after_minutes: "
                             "a suspected artefact may delay a page by less than an escalation would")
        if self.episode_end_minutes < 0 or self.overdue_grace_minutes < 0:
            raise ValueError("episode end and overdue grace minutes cannot be negative")
        if not 0 < self.overdue_round_minutes <= _DAY_MINUTES or _DAY_MINUTES % self.overdue_round_minutes:
            raise ValueError("overdue_round_minutes must divide a day (e.g. 240: rounds at 00, 04, 08, ... UTC)")
        if self.trend_length < 1:
            raise ValueError("trend_length must be at least 1")
        if self.reassess_after_minutes <= 0:
            raise ValueError("reassess_after_minutes must be positive")
        if self.rising_points < 1:
            raise ValueError("rising_points must be at least 1")
        if not 0 < self.rising_observe_minutes < self.responses[Band.LOW].monitoring_minutes:
            raise ValueError("rising_observe_minutes must be positive and sooner than the chart's own frequency "
                             f"at 1-4 ({self.responses[Band.LOW].monitoring_minutes} minutes)")
        if not 0 < self.artefact_spo2_max < 92:
            raise ValueError("artefact_spo2_max must be below 92 (a SpO2 that scores 3 on scale 1)")

    def reassess_role(self, band: Band) -> str:
        """Who reviews an episode at `band` that has not improved: the next role after the band's own, never
        beyond the role of the emergency band (7 or more)."""
        own, top = self.chain.index(self.responses[band].role), self.chain.index(self.responses[Band.HIGH].role)
        return self.chain[max(own, min(own + 1, top))]

    def paging_band(self, band: Band) -> bool:
        return self.responses[band].role is not None


class AckOutcome(StrEnum):
    ACKED = "acked"
    ALREADY_ACKED = "already_acked"
    UNKNOWN = "unknown"  # never sent, or superseded by a newer page


@dataclass(frozen=True)
class TrendPoint:
    at: datetime
    total: int
    band: Band


@dataclass(frozen=True)
class Page:
    page_id: str
    role: str
    priority: Priority
    band: Band
    total: int
    reasons: tuple[str, ...]
    scoring: tuple[ParameterScore, ...] = ()  # the parameters that scored
    trend: tuple[TrendPoint, ...] = ()  # the last scores, oldest first, this one last
    monitoring_minutes: int = 0
    repage: str | None = None  # why a page inside an open episode: NEW_DETERIORATION or NO_IMPROVEMENT
    after_repeat: str | None = None  # why a suspect set waiting for a repeat is paged: REPEAT_NOT_TAKEN or REPEAT_RISING


@dataclass(frozen=True)
class Escalation:
    page_id: str
    role: str
    from_role: str
    priority: Priority
    band: Band
    escalation_level: int
    reasons: tuple[str, ...]
    first: bool = False  # the page's first escalation (counts the pages that escalated)


@dataclass(frozen=True)
class ReviewDue:
    """A board task, never a page: the observation frequency and, at 1-4, a nurse's assessment."""

    band: Band
    total: int
    monitoring_minutes: int
    next_obs_due_at: datetime
    nurse_assessment: bool
    reasons: tuple[str, ...]
    rising_from: int | None = None  # the previous score, when this one rose by `rising_points` or more


@dataclass(frozen=True)
class RepeatObservation:
    """A board task for the bedside nurse: repeat the set by `repeat_by`, or the page goes out."""

    suspect: str
    repeat_by: datetime
    band: Band
    total: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ObservationsOverdue:
    """One patient whose last score was 5 or more, overdue: reported on their own, at once."""

    due_at: datetime
    band: Band
    total: int
    role: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class OverduePatient:
    encounter_id: str
    band: Band
    total: int
    due_at: datetime
    minutes_overdue: int


@dataclass(frozen=True)
class OverdueRound:
    """A unit's overdue observations at one ward round, most urgent first."""

    unit: str | None
    round_at: datetime
    role: str
    patients: tuple[OverduePatient, ...]
    reasons: tuple[str, ...]


Action = Page | Escalation | ReviewDue | RepeatObservation | ObservationsOverdue


_TIMES = ("last_page_at", "last_obs_at", "next_obs_due_at", "acked_at", "overdue_reported_for", "below_since",
          "pending_since", "last_complete_at")
_BANDS = ("last_band", "page_band", "pending_band")


@dataclass(frozen=True)
class PagingState:
    """One patient's paging state; the default is a patient never scored."""

    last_band: Band | None = None  # band of the latest score
    last_total: int | None = None
    last_obs_at: datetime | None = None
    next_obs_due_at: datetime | None = None
    trend: tuple[TrendPoint, ...] = ()
    # the open episode (page_band None: none)
    page_band: Band | None = None  # the highest band paged in the episode
    page_ids: tuple[str, ...] = ()  # the current page, then its escalations
    last_page_id: str | None = None
    last_page_at: datetime | None = None  # when the latest page or escalation went out
    page_role: str | None = None  # role holding the latest page
    escalation_level: int | None = None  # index of page_role in the chain
    page_summary: str | None = None  # describe_scoring of the paged score
    acked: bool = False
    acked_at: datetime | None = None
    below_since: datetime | None = None  # first of the consecutive scores below the episode's band
    # a suspected artefact waiting for a repeat (pending_page_id None: none)
    pending_page_id: str | None = None
    pending_since: datetime | None = None
    pending_band: Band | None = None
    pending_total: int | None = None
    pending_reasons: tuple[str, ...] = ()
    pending_scoring: tuple[tuple[str, Any, int], ...] = ()
    pending_from_total: int | None = None  # the score before the suspect reading (a repeat that rises from it pages)
    overdue_reported_for: datetime | None = None  # due time already reported overdue
    reassessed: bool = False  # the episode's no-improvement review has been asked for
    last_complete_at: datetime | None = None  # the latest score with every parameter measured

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, fields at their default left out (a patient's record stays small: most are never paged)."""
        data: dict[str, Any] = {}
        for name, default in _DEFAULTS:
            value = getattr(self, name)
            if value == default:
                continue
            if name in _TIMES:
                value = value.isoformat()
            elif name in _BANDS:
                value = value.value
            elif name == "trend":
                value = [[t.at.isoformat(), t.total, t.band.value] for t in value]
            elif name in ("page_ids", "pending_reasons"):
                value = list(value)
            elif name == "pending_scoring":
                value = [list(p) for p in value]
            data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PagingState:
        """The state `to_dict` wrote (a missing field is at its default); an unknown field is refused."""
        unknown = [name for name in data if name not in _FIELD_NAMES]
        if unknown:
            raise ValueError(f"unknown paging state fields: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if value is None:
                pass
            elif name in _TIMES:
                value = datetime.fromisoformat(value)
            elif name in _BANDS:
                value = Band(value)
            elif name == "trend":
                value = tuple(TrendPoint(datetime.fromisoformat(a), t, Band(b)) for a, t, b in value)
            elif name in ("page_ids", "pending_reasons"):
                value = tuple(value)
            elif name == "pending_scoring":
                value = tuple(tuple(p) for p in value)
            values[name] = value
        return cls(**values)

    @property
    def in_episode(self) -> bool:
        return self.page_band is not None


_DEFAULTS: tuple[tuple[str, Any], ...] = tuple((f.name, f.default) for f in fields(PagingState))
_FIELD_NAMES = frozenset(name for name, _ in _DEFAULTS)


def escalation_page_id(first_page_id: str, level: int) -> str:
    """Deterministic id for the escalation of `first_page_id` to chain index `level`."""
    return f"{first_page_id}/esc{level}"


def _minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def suspect_artefact(result: News2Score, spo2_max: float = 85) -> str | None:
    """The parameter that looks like a measurement artefact, or None.

    SpO2 scored 3 at `spo2_max` % or lower while breathing scored 0 (12-20 a minute) and the pulse at most 1
    (up to 110): hypoxaemia that deep comes with fast breathing or a racing pulse; a probe off the finger or
    a cold hand does not. A SpO2 scoring 3 above `spo2_max` (e.g. 91% on air) is a plausible early
    desaturation and pages at once.
    """
    points = {p.name: p.points for p in result.parameters}
    if not {"spo2", "resp_rate", "heart_rate"} <= set(points):
        return None  # plausibility needs the breathing and the pulse measured: without them it pages at once
    spo2 = float(next(p.value for p in result.parameters if p.name == "spo2"))
    if points["spo2"] == 3 and spo2 <= spo2_max and points["resp_rate"] == 0 and points["heart_rate"] <= 1:
        return "spo2"
    return None


def _escalating(state: PagingState, cfg: PagingConfig) -> bool:
    return (state.in_episode and not state.acked and state.escalation_level is not None
            and state.escalation_level + 1 < len(cfg.chain))


def _end_episode(state: PagingState) -> PagingState:
    return replace(state, page_band=None, page_ids=(), last_page_id=None, last_page_at=None, page_role=None,
                   escalation_level=None, page_summary=None, acked=False, acked_at=None, below_since=None,
                   reassessed=False)


def _clear_pending(state: PagingState) -> PagingState:
    return replace(state, pending_page_id=None, pending_since=None, pending_band=None, pending_total=None,
                   pending_reasons=(), pending_scoring=(), pending_from_total=None)


def _page(state: PagingState, page_id: str, band: Band, total: int, reasons: tuple[str, ...],
          scoring: tuple[ParameterScore, ...], now: datetime, cfg: PagingConfig,
          repage: str | None = None) -> tuple[PagingState, Page]:
    response = cfg.responses[band]
    if response.role is None:
        raise ValueError(f"{band_label(band)}: the chart pages nobody in this band")
    page = Page(page_id=page_id, role=response.role, priority=response.priority, band=band, total=total,
                reasons=reasons, scoring=scoring, trend=state.trend, monitoring_minutes=response.monitoring_minutes,
                repage=repage)
    state = replace(state, page_band=band, page_ids=(page_id,), last_page_id=page_id, last_page_at=now,
                    page_role=response.role, escalation_level=cfg.chain.index(response.role),
                    page_summary=reasons[0], acked=False, acked_at=None, below_since=None)
    return _clear_pending(state), page


def on_score(
    state: PagingState, result: News2Score, now: datetime, cfg: PagingConfig, page_id: str
) -> tuple[PagingState, list[Action]]:
    """Record a complete score and do what the chart and the open episode call for.

    `page_id` is the caller's deterministic id for the page this score would send.
    """
    response = cfg.responses[result.band]
    previous_band, previous_total = state.last_band, state.last_total
    trend = (*state.trend, TrendPoint(now, result.total, result.band))[-cfg.trend_length:]
    rising = (not cfg.paging_band(result.band) and previous_total is not None
              and result.total - previous_total >= cfg.rising_points)
    monitoring_minutes = cfg.rising_observe_minutes if rising else response.monitoring_minutes
    next_obs_due_at = now + _minutes(monitoring_minutes)
    previous_complete_at = state.last_complete_at
    state = replace(state, last_band=result.band, last_total=result.total, last_obs_at=now, trend=trend,
                    next_obs_due_at=next_obs_due_at,
                    last_complete_at=previous_complete_at if result.unmeasured else now)
    summary = describe_scoring(result)
    scoring = tuple(p for p in result.parameters if p.points)

    repage = None  # why a score inside the open episode pages again
    if state.page_band is not None and not _escalating(state, cfg):
        paged_band = state.page_band
        improved_since = state.below_since  # the scores before this one were below the episode's band
        if (improved_since is not None and result.band.rank >= paged_band.rank
                and now - improved_since >= _minutes(cfg.episode_end_minutes)):
            state = _end_episode(state)  # below the band for the end time, however long the gap to this score
        elif (improved_since is not None and cfg.paging_band(result.band) and previous_band is not None
              and result.band.rank > previous_band.rank):
            repage = NEW_DETERIORATION
        elif (state.acked and state.acked_at is not None and not state.reassessed
              and result.band.rank == paged_band.rank
              and now - state.acked_at >= _minutes(cfg.reassess_after_minutes)
              and (paged_band.rank < Band.HIGH.rank
                   or (not result.unmeasured and (previous_complete_at is None or now - previous_complete_at
                                                  >= _minutes(cfg.reassess_after_minutes))))):
            repage = NO_IMPROVEMENT
    if state.page_band is not None and not result.unmeasured:  # a lower bound below the band is no sign of improvement
        if result.band.rank < state.page_band.rank:
            below_since = state.below_since or now
            state = replace(state, below_since=below_since)
            if now - below_since >= _minutes(cfg.episode_end_minutes) and not _escalating(state, cfg):
                state = _end_episode(state)
        else:
            state = replace(state, below_since=None)

    if not cfg.paging_band(result.band):
        actions: list[Action] = []
        if (state.pending_page_id is not None and state.pending_from_total is not None
                and state.pending_band is not None
                and (state.page_band is None or state.pending_band.rank > state.page_band.rank)
                and result.total - state.pending_from_total >= cfg.rising_points):
            # A repeat below the paging bands but `rising_points` above the set before the suspect reading is no
            # reassurance: the patient is deteriorating, and the suspect set (in a paging band) is paged now.
            return _page_pending(state, now, cfg, REPEAT_RISING, (
                f"The repeat scored {result.total}: below the paging bands, but NEWS2 rose from "
                f"{state.pending_from_total} to {result.total} since the set before the suspect reading, so the "
                "suspect set is paged."))
        if (state.pending_page_id is not None and state.pending_band is not None
                and (state.page_band is None or state.pending_band.rank > state.page_band.rank)
                and any(p.name == "spo2" and p.points >= REPEAT_SPO2_POINTS for p in result.parameters)):
            # The repeat's SpO2 is higher than the suspect one but still low (92-93% on scale 1): the deep reading
            # may have been the probe, the hypoxaemia is not, so the repeat does not reassure.
            spo2 = next(p.value for p in result.parameters if p.name == "spo2")
            return _page_pending(state, now, cfg, REPEAT_STILL_LOW, (
                f"The repeat's SpO2 is {spo2}%: higher than the suspect reading, but still low enough to score "
                f"{REPEAT_SPO2_POINTS} or more, so the suspect set is paged."))
        state = _clear_pending(state)  # a reassuring repeat: the suspect reading was an artefact
        if rising:
            # RCP 1-4: the registered nurse decides whether more frequent monitoring is needed. A rise since the
            # last set is the trend the chart's single score cannot show: the board suggests the next set sooner.
            why = (f"NEWS2 rose from {previous_total} to {result.total} since the last observations: observe "
                   f"again within {cfg.rising_observe_minutes:g} minutes (a registered nurse's assessment; "
                   "nobody is paged below the chart's paging bands).")
            actions.append(ReviewDue(band=result.band, total=result.total, monitoring_minutes=int(monitoring_minutes),
                                     next_obs_due_at=next_obs_due_at, nurse_assessment=True,
                                     reasons=(summary, response.text, why), rising_from=previous_total))
        elif result.band != previous_band:
            actions.append(ReviewDue(band=result.band, total=result.total,
                                     monitoring_minutes=response.monitoring_minutes,
                                     next_obs_due_at=next_obs_due_at,
                                     nurse_assessment=result.band is Band.LOW, reasons=(summary, response.text)))
        return state, actions

    rise: tuple[str, ...] = ()
    suspect = suspect_artefact(result, cfg.artefact_spo2_max)
    if repage == NEW_DETERIORATION and state.in_episode:
        # A rise after an improvement the reviewer saw: a new episode at this score's band (a suspected
        # artefact asks for its repeat first, as any new episode's does).
        state = _end_episode(state)
        if not suspect:
            rise = ("NEWS2 rose into a paging band again after improving below the band already paged: a new "
                    "deterioration since the last review.",)
    if repage == NO_IMPROVEMENT and state.page_band is not None:
        # Still at the band `reassess_after_minutes` after the review: the next role in the chain reviews.
        role = cfg.reassess_role(state.page_band)
        band_response = cfg.responses[state.page_band]
        again = " again" if role == state.page_role else ""
        reason = (f"NEWS2 still {band_label(state.page_band)} {cfg.reassess_after_minutes:g} minutes after "
                  f"the {(state.page_role or 'nurse_in_charge').replace('_', ' ')} acknowledged the page: no improvement, so the "
                  f"{role.replace('_', ' ')} is asked to review{again}.")
        page = Page(page_id=page_id, role=role, priority=band_response.priority, band=state.page_band,
                    total=result.total, reasons=(summary, band_response.text, reason), scoring=scoring,
                    trend=state.trend, monitoring_minutes=band_response.monitoring_minutes, repage=NO_IMPROVEMENT)
        state = replace(state, page_ids=(page_id,), last_page_id=page_id, last_page_at=now, page_role=role,
                        escalation_level=cfg.chain.index(role), page_summary=summary, acked=False, acked_at=None,
                        reassessed=True)
        return _clear_pending(state), [page]
    if state.page_band is not None and result.band.rank <= state.page_band.rank:
        return _clear_pending(state), []  # one page per episode: nothing new to say

    if suspect and result.total < 7 and state.pending_page_id is None:
        repeat_by = now + _minutes(cfg.repeat_within_minutes)
        value = next(p.value for p in result.parameters if p.name == suspect)
        ask = RepeatObservation(
            suspect=suspect, repeat_by=repeat_by, band=result.band, total=result.total,
            reasons=(summary, f"SpO2 {value}% with normal pulse and breathing looks like a probe artefact: repeat "
                              f"the observations within {cfg.repeat_within_minutes:g} minutes; the page goes out "
                              "if they confirm it or do not come."))
        state = replace(state, pending_page_id=page_id, pending_since=now, pending_band=result.band,
                        pending_total=result.total, pending_reasons=(summary, response.text),
                        pending_scoring=tuple((p.name, p.value, p.points) for p in scoring),
                        pending_from_total=previous_total)
        return state, [ask]

    state, page = _page(state, page_id, result.band, result.total, (summary, response.text, *rise), scoring, now,
                        cfg, repage=NEW_DETERIORATION if rise else None)
    return state, [page]


def on_ack(state: PagingState, page_id: str, now: datetime) -> tuple[PagingState, AckOutcome]:
    """Mark the episode acknowledged at the ack's own (event) time; unknown or superseded ids change nothing."""
    if page_id not in state.page_ids:
        return state, AckOutcome.UNKNOWN
    if state.acked:
        return state, AckOutcome.ALREADY_ACKED
    return replace(state, acked=True, acked_at=now), AckOutcome.ACKED


def _repeat_overdue(state: PagingState, now: datetime, cfg: PagingConfig) -> tuple[PagingState, list[Action]]:
    if (state.pending_page_id is None or state.pending_since is None or state.pending_band is None
            or state.pending_total is None or now < state.pending_since + _minutes(cfg.repeat_within_minutes)):
        return state, []
    if state.page_band is not None and state.pending_band.rank <= state.page_band.rank:
        return _clear_pending(state), []
    return _page_pending(state, now, cfg, REPEAT_NOT_TAKEN,
                         f"The suspect reading was not repeated within {cfg.repeat_within_minutes:g} minutes, so it "
                         "is paged.")


def _page_pending(state: PagingState, now: datetime, cfg: PagingConfig, code: str,
                  why: str) -> tuple[PagingState, list[Action]]:
    """Page the suspect set that waited for a repeat, saying why it goes out after all."""
    if state.pending_page_id is None or state.pending_band is None or state.pending_total is None:
        raise ValueError("no suspect set is waiting for a repeat")
    scoring = tuple(ParameterScore(n, v, p) for n, v, p in state.pending_scoring)
    state, page = _page(state, state.pending_page_id, state.pending_band, state.pending_total,
                        (*state.pending_reasons, why), scoring, now, cfg)
    return state, [replace(page, after_repeat=code)]


def _escalate(state: PagingState, now: datetime, cfg: PagingConfig) -> tuple[PagingState, list[Action]]:
    if (not _escalating(state, cfg) or state.escalation_level is None or state.page_band is None
            or state.page_role is None or state.last_page_at is None
            or now - state.last_page_at < _minutes(cfg.escalate_after_minutes)):
        return state, []
    level = state.escalation_level + 1
    role = cfg.chain[level]
    page_id = escalation_page_id(state.page_ids[0], level)
    reason = (f"Page {state.last_page_id} to {state.page_role} was not acknowledged within "
              f"{cfg.escalate_after_minutes:g} minutes; escalating to {role}.")
    action = Escalation(page_id=page_id, role=role, from_role=state.page_role,
                        priority=cfg.responses[state.page_band].priority, band=state.page_band,
                        escalation_level=level,
                        reasons=(reason, state.page_summary) if state.page_summary else (reason,),
                        first=len(state.page_ids) == 1)
    state = replace(state, last_page_at=now, last_page_id=page_id, page_role=role, escalation_level=level,
                    page_ids=state.page_ids + (page_id,))
    return state, [action]


def _urgent(state: PagingState) -> bool:
    return state.last_total is not None and state.last_total >= URGENT_OVERDUE_TOTAL


def _overdue_due(state: PagingState) -> datetime | None:
    """The due time not yet reported, if any."""
    due = state.next_obs_due_at
    if due is None or state.last_band is None or state.overdue_reported_for == due:
        return None
    return due


def _urgent_overdue(state: PagingState, now: datetime, cfg: PagingConfig) -> tuple[PagingState, list[Action]]:
    due = _overdue_due(state)
    if (due is None or state.last_band is None or state.last_total is None or not _urgent(state)
            or now <= due + _minutes(cfg.overdue_grace_minutes)):
        return state, []
    interval = cfg.responses[state.last_band].monitoring_minutes
    action = ObservationsOverdue(
        due_at=due, band=state.last_band, total=state.last_total, role=cfg.overdue_role,
        reasons=(f"Observations were due at {due.isoformat()} (every {interval:g} minutes for NEWS2 "
                 f"{state.last_total}, {band_label(state.last_band)}) and are more than "
                 f"{cfg.overdue_grace_minutes:g} minutes overdue.",))
    return replace(state, overdue_reported_for=due), [action]


def next_action_at(state: PagingState, cfg: PagingConfig) -> datetime | None:
    """The earliest time `tick` could act on this state (None: nothing until new vitals or an ack).

    Lets the caller skip everyone whose time has not come without reading their state: `tick` at
    any earlier time returns no action. (Urgent overdue observations act strictly after this time.)
    """
    times: list[datetime] = []
    if state.pending_page_id is not None and state.pending_since is not None:
        times.append(state.pending_since + _minutes(cfg.repeat_within_minutes))
    if _escalating(state, cfg) and state.last_page_at is not None:
        times.append(state.last_page_at + _minutes(cfg.escalate_after_minutes))
    due = _overdue_due(state)
    if due is not None and _urgent(state):
        times.append(due + _minutes(cfg.overdue_grace_minutes))
    return min(times) if times else None


def tick(state: PagingState, now: datetime, cfg: PagingConfig) -> tuple[PagingState, list[Action]]:
    """Time-driven actions: page an unrepeated suspect reading, escalate, report an urgent patient overdue."""
    state, repeat = _repeat_overdue(state, now, cfg)
    state, escalations = _escalate(state, now, cfg)
    state, overdue = _urgent_overdue(state, now, cfg)
    return state, repeat + escalations + overdue


def previous_round(now: datetime, cfg: PagingConfig) -> datetime:
    """The latest ward round at or before `now` (rounds every `overdue_round_minutes` from midnight UTC)."""
    step = _minutes(cfg.overdue_round_minutes)
    return _EPOCH + step * ((now - _EPOCH) // step)


def overdue_round(
    patients: Iterable[tuple[str, str | None, PagingState]], round_at: datetime, cfg: PagingConfig
) -> tuple[list[OverdueRound], dict[str, PagingState]]:
    """Each unit's overdue patients at this round, most urgent first, and their updated states.

    `patients` are (encounter_id, unit, state). Patients whose last score was 5 or more are left
    out: `tick` reports them on their own, at once. A due time is reported once.
    """
    by_unit: dict[str | None, list[OverduePatient]] = {}
    updated: dict[str, PagingState] = {}
    grace = _minutes(cfg.overdue_grace_minutes)
    for encounter_id, unit, state in patients:
        due = _overdue_due(state)
        if due is None or state.last_band is None or state.last_total is None or _urgent(state) or round_at <= due + grace:
            continue
        by_unit.setdefault(unit, []).append(OverduePatient(
            encounter_id=encounter_id, band=state.last_band, total=state.last_total, due_at=due,
            minutes_overdue=int((round_at - due).total_seconds() // 60)))
        updated[encounter_id] = replace(state, overdue_reported_for=due)
    rounds = []
    for unit in sorted(by_unit, key=lambda u: (u is None, u or "")):
        listed = tuple(sorted(by_unit[unit], key=lambda p: (-p.band.rank, -p.total, -p.minutes_overdue,
                                                             p.encounter_id)))
        n = len(listed)
        reason = (f"Ward round {round_at.isoformat()}: {n} patient{'s' if n != 1 else ''} "
                  f"{'have' if n != 1 else 'has'} observations more than {cfg.overdue_grace_minutes:g} minutes "
                  "overdue, most urgent first.")
        rounds.append(OverdueRound(unit=unit, round_at=round_at, role=cfg.overdue_role, patients=listed,
                                   reasons=(reason,)))
    return rounds, updated
