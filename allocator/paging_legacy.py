"""TODAY'S (LEGACY) PAGING RULES, KEPT ONLY FOR THE PAGING REPORT'S BEFORE/AFTER COMPARISON.

Nothing in the worker imports this module: `wardflow simulate --offline --paging-report` (and
the demo's summary) replays the same simulated week through these rules and through the
current ones (`allocator.paging`) and prints both. Do not use it to page anyone: it pages the
nurse in charge for every NEWS2 of 1-4, pages again for the same band every
`suppression_minutes`, and reports overdue observations one patient at a time, which is what
issue 13 measured at about 16 interruptions per bed per day.

The text below is the module as it was before issue 13, with its own response table
(`LEGACY_RESPONSES`: score 1-4 pages the nurse in charge).

Paging and escalation for NEWS2 scores, as pure functions over a small per-patient state.

The stream keeps one `PagingState` per patient in a table (`to_dict`/`from_dict`) and calls
`on_score` for each complete score, `on_ack` for each page-ack and `tick` on a timer. Every
function takes `now`, returns a new state and never reads a clock, so a replay of the same
inputs gives the same actions.

Decisions made here:
- A rise is measured against the band of the last page, not the last score: high, medium,
  high again inside the window is one page, not two.
- A lower score never cancels escalation of an unacknowledged page: a falsely reassuring
  reading (a probe artefact) must not silence an emergency page nobody has seen.
- An escalation re-pages the next role and restarts the clock, so every role gets a full
  `escalate_after_minutes` to answer; a late tick escalates one step, not several.
- An ack for any page of the current episode (the first page or any escalation of it)
  stops escalation; pages superseded by a newer page are unknown.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from allocator.news2 import (
    DEFAULT_RESPONSES,
    Band,
    News2Score,
    Priority,
    Response,
    band_label,
    describe_scoring,
)

# Today's table: the chart's responses, except that a NEWS2 of 1-4 pages the nurse in charge.
LEGACY_RESPONSES: Mapping[Band, Response] = MappingProxyType({
    **DEFAULT_RESPONSES,
    Band.LOW: replace(DEFAULT_RESPONSES[Band.LOW], role="nurse_in_charge"),
})

DEFAULT_CHAIN = ("nurse_in_charge", "ward_doctor", "critical_care_outreach", "rapid_response")


@dataclass(frozen=True)
class PagingConfig:
    suppression_minutes: float = 60
    escalate_after_minutes: float = 15
    overdue_grace_minutes: float = 15
    chain: tuple[str, ...] = DEFAULT_CHAIN
    responses: Mapping[Band, Response] = field(default_factory=lambda: LEGACY_RESPONSES)
    overdue_role: str = "nurse_in_charge"  # observations are a nursing task

    def __post_init__(self) -> None:
        # Fail at start-up, not on the first deteriorating patient.
        if not self.chain or len(set(self.chain)) != len(self.chain):
            raise ValueError("the escalation chain must list at least one role, each once")
        if set(self.responses) != set(Band):
            raise ValueError("the response table must cover every NEWS2 band")
        unreachable = sorted(
            {r.role for r in self.responses.values() if r.role} - set(self.chain)
        )
        if unreachable:
            raise ValueError(f"paged roles missing from the escalation chain: {unreachable}")
        if self.escalate_after_minutes <= 0:
            raise ValueError("escalate_after_minutes must be positive")
        if self.suppression_minutes < 0 or self.overdue_grace_minutes < 0:
            raise ValueError("suppression and grace minutes cannot be negative")


class AckOutcome(StrEnum):
    ACKED = "acked"
    ALREADY_ACKED = "already_acked"
    UNKNOWN = "unknown"  # never sent, or superseded by a newer page


@dataclass(frozen=True)
class Page:
    page_id: str
    role: str
    priority: Priority
    band: Band
    total: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Escalation:
    page_id: str
    role: str
    from_role: str
    priority: Priority
    band: Band
    escalation_level: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ObservationsOverdue:
    due_at: datetime
    band: Band
    role: str
    reasons: tuple[str, ...]


Action = Page | Escalation | ObservationsOverdue

_TIMES = ("last_page_at", "last_obs_at", "next_obs_due_at", "acked_at", "overdue_reported_for")
_BANDS = ("last_band", "page_band")


@dataclass(frozen=True)
class PagingState:
    """One patient's paging state; the default is a patient never scored."""

    last_band: Band | None = None  # band of the latest score
    last_page_at: datetime | None = None  # when the latest page or escalation went out
    last_page_id: str | None = None
    page_role: str | None = None  # role holding the latest page
    acked: bool = False
    escalation_level: int | None = None  # index of page_role in the chain
    last_obs_at: datetime | None = None
    next_obs_due_at: datetime | None = None
    page_band: Band | None = None  # band the current episode was paged for
    page_ids: tuple[str, ...] = ()  # the episode: first page, then its escalations
    page_summary: str | None = None  # describe_scoring of the paged score
    acked_at: datetime | None = None
    overdue_reported_for: datetime | None = None  # due time already reported overdue

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _TIMES and value is not None:
                value = value.isoformat()
            elif f.name in _BANDS and value is not None:
                value = value.value
            elif f.name == "page_ids":
                value = list(value)
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PagingState:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown paging state fields: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in _TIMES and value is not None:
                value = datetime.fromisoformat(value)
            elif name in _BANDS and value is not None:
                value = Band(value)
            elif name == "page_ids":
                value = tuple(value)
            values[name] = value
        return cls(**values)


def escalation_page_id(first_page_id: str, level: int) -> str:
    """Deterministic id for the escalation of `first_page_id` to chain index `level`."""
    return f"{first_page_id}/esc{level}"


def _minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def _should_page(state: PagingState, band: Band, now: datetime, cfg: PagingConfig) -> bool:
    if cfg.responses[band].role is None:
        return False
    if state.last_page_at is None or state.page_band is None:
        return True
    if band.rank > state.page_band.rank:
        return True
    return now - state.last_page_at >= _minutes(cfg.suppression_minutes)


def on_score(
    state: PagingState, result: News2Score, now: datetime, cfg: PagingConfig, page_id: str
) -> tuple[PagingState, list[Action]]:
    """Record a complete score and page its band's role unless a recent page already covers it.

    `page_id` is the caller's deterministic id for the page this score would send.
    """
    response = cfg.responses[result.band]
    state = replace(
        state,
        last_band=result.band,
        last_obs_at=now,
        next_obs_due_at=now + _minutes(response.monitoring_minutes),
    )
    if not _should_page(state, result.band, now, cfg):
        return state, []
    summary = describe_scoring(result)
    if response.role is None:
        raise ValueError(f"{band_label(result.band)}: the chart pages nobody in this band")
    page = Page(
        page_id=page_id,
        role=response.role,
        priority=response.priority,
        band=result.band,
        total=result.total,
        reasons=(summary, response.text),
    )
    state = replace(
        state,
        last_page_at=now,
        last_page_id=page_id,
        page_role=response.role,
        acked=False,
        acked_at=None,
        escalation_level=cfg.chain.index(response.role),
        page_band=result.band,
        page_ids=(page_id,),
        page_summary=summary,
    )
    return state, [page]


def on_ack(state: PagingState, page_id: str, now: datetime) -> tuple[PagingState, AckOutcome]:
    """Mark the current episode acknowledged; unknown or superseded ids change nothing."""
    if page_id not in state.page_ids:
        return state, AckOutcome.UNKNOWN
    if state.acked:
        return state, AckOutcome.ALREADY_ACKED
    return replace(state, acked=True, acked_at=now), AckOutcome.ACKED


def _escalate(
    state: PagingState, now: datetime, cfg: PagingConfig
) -> tuple[PagingState, list[Action]]:
    if (state.last_page_at is None or state.acked or state.escalation_level is None or state.page_band is None
            or state.page_role is None):
        return state, []
    if state.escalation_level + 1 >= len(cfg.chain):
        return state, []
    if now - state.last_page_at < _minutes(cfg.escalate_after_minutes):
        return state, []
    level = state.escalation_level + 1
    role = cfg.chain[level]
    page_id = escalation_page_id(state.page_ids[0], level)
    reason = (
        f"Page {state.last_page_id} to {state.page_role} was not acknowledged within "
        f"{cfg.escalate_after_minutes:g} minutes; escalating to {role}."
    )
    action = Escalation(
        page_id=page_id,
        role=role,
        from_role=state.page_role,
        priority=cfg.responses[state.page_band].priority,
        band=state.page_band,
        escalation_level=level,
        reasons=(reason, state.page_summary) if state.page_summary else (reason,),
    )
    state = replace(
        state,
        last_page_at=now,
        last_page_id=page_id,
        page_role=role,
        escalation_level=level,
        page_ids=state.page_ids + (page_id,),
    )
    return state, [action]


def _overdue(
    state: PagingState, now: datetime, cfg: PagingConfig
) -> tuple[PagingState, list[Action]]:
    due = state.next_obs_due_at
    if due is None or state.last_band is None or state.overdue_reported_for == due:
        return state, []
    if now <= due + _minutes(cfg.overdue_grace_minutes):
        return state, []
    interval = cfg.responses[state.last_band].monitoring_minutes
    action = ObservationsOverdue(
        due_at=due,
        band=state.last_band,
        role=cfg.overdue_role,
        reasons=(
            f"Observations were due at {due.isoformat()} (every {interval:g} minutes for "
            f"NEWS2 {band_label(state.last_band)}) and are more than "
            f"{cfg.overdue_grace_minutes:g} minutes overdue.",
        ),
    )
    return replace(state, overdue_reported_for=due), [action]


def next_action_at(state: PagingState, cfg: PagingConfig) -> datetime | None:
    """The earliest time `tick` could act on this state (None: nothing is pending until new vitals or an ack).

    Lets the caller skip everyone whose time has not come without reading their state: `tick` at
    any earlier time returns no action. (Overdue observations act strictly after this time.)
    """
    times = []
    if (state.last_page_at is not None and not state.acked and state.escalation_level is not None
            and state.escalation_level + 1 < len(cfg.chain)):
        times.append(state.last_page_at + _minutes(cfg.escalate_after_minutes))
    if (state.next_obs_due_at is not None and state.last_band is not None
            and state.overdue_reported_for != state.next_obs_due_at):
        times.append(state.next_obs_due_at + _minutes(cfg.overdue_grace_minutes))
    return min(times) if times else None


def tick(state: PagingState, now: datetime, cfg: PagingConfig) -> tuple[PagingState, list[Action]]:
    """Time-driven actions: escalate an unacknowledged page, report overdue observations."""
    state, escalations = _escalate(state, now, cfg)
    state, overdue = _overdue(state, now, cfg)
    return state, escalations + overdue
