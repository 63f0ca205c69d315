"""Hospital surge level in the spirit of NHS OPEL (1 = steady, 4 = extreme pressure).

The level is the highest any figure reaches (occupancy, patients waiting for a bed, arrivals
in the last hour). It rises at once, because a late escalation costs care; it falls only once
every figure is below the level's thresholds less a margin (and, optionally, after a minimum
dwell), so a figure hovering at a threshold does not flap the bed board and page managers.

Stepping down: the new level is the highest level k at or below the current one that some
figure still holds within k's margin, so a fall can skip levels, and stop at a level whose own
margin still holds it. Occupancy is compared in percentage points rounded to 1e-6, so
0.95 - 0.03 is exactly 92, not 91.999...
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

_LEVELS = (2, 3, 4)  # level 1 has no thresholds: it is what remains


@dataclass(frozen=True)
class SurgeFigures:
    occupancy: float  # occupied / available beds, 0..1
    waiting: int  # patients waiting for a bed
    arrivals_last_hour: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.occupancy) and 0 <= self.occupancy <= 1):
            raise ValueError(f"occupancy must be a ratio from 0 to 1, got {self.occupancy!r}")
        if self.waiting < 0 or self.arrivals_last_hour < 0:
            raise ValueError("waiting and arrivals_last_hour cannot be negative")


@dataclass(frozen=True)
class LevelThresholds:
    """Entry thresholds for one level; reaching any one of them reaches the level."""

    occupancy: float
    waiting: int
    arrivals_per_hour: int


_DEFAULT_THRESHOLDS = (
    LevelThresholds(occupancy=0.90, waiting=5, arrivals_per_hour=10),
    LevelThresholds(occupancy=0.95, waiting=10, arrivals_per_hour=15),
    LevelThresholds(occupancy=0.99, waiting=20, arrivals_per_hour=25),
)


@dataclass(frozen=True)
class SurgeConfig:
    thresholds: tuple[LevelThresholds, ...] = _DEFAULT_THRESHOLDS  # OPEL 2, 3, 4
    occupancy_margin: float = 0.03  # 3 percentage points
    waiting_margin: int = 2
    arrivals_margin: int = 3
    min_dwell_minutes: float = 0  # time at a level before it may fall

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(_LEVELS):
            raise ValueError("thresholds must give OPEL 2, 3 and 4, in that order")
        for attr in ("occupancy", "waiting", "arrivals_per_hour"):
            values = [getattr(t, attr) for t in self.thresholds]
            if any(a >= b for a, b in pairwise(values)):
                raise ValueError(f"{attr} thresholds must rise strictly from OPEL 2 to 4")
        margins = (self.occupancy_margin, self.waiting_margin, self.arrivals_margin)
        if any(m < 0 for m in margins) or self.min_dwell_minutes < 0:
            raise ValueError("margins and min_dwell_minutes cannot be negative")

    def for_level(self, level: int) -> LevelThresholds:
        return self.thresholds[level - _LEVELS[0]]


@dataclass(frozen=True)
class SurgeState:
    level: int
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "since": self.since.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurgeState:
        return cls(level=int(data["level"]), since=datetime.fromisoformat(data["since"]))


def _pct(ratio: float) -> float:
    return round(ratio * 100, 6)


def _fmt_pct(points: float) -> str:
    return f"{points:.2f}".rstrip("0").rstrip(".") + "%"


@dataclass(frozen=True)
class _Figure:
    """One input against one level: its value, threshold and margin in comparable units."""

    key: str
    value: float
    threshold: float
    margin: float

    def reaches(self) -> bool:
        return self.value >= self.threshold

    def holds(self) -> bool:
        return self.value >= self.threshold - self.margin


def _figures(fig: SurgeFigures, level: int, cfg: SurgeConfig) -> tuple[_Figure, ...]:
    t = cfg.for_level(level)
    return (
        _Figure("occupancy", _pct(fig.occupancy), _pct(t.occupancy), _pct(cfg.occupancy_margin)),
        _Figure("waiting", fig.waiting, t.waiting, cfg.waiting_margin),
        _Figure("arrivals", fig.arrivals_last_hour, t.arrivals_per_hour, cfg.arrivals_margin),
    )


def _raw_level(fig: SurgeFigures, cfg: SurgeConfig) -> int:
    reached = [lv for lv in _LEVELS if any(f.reaches() for f in _figures(fig, lv, cfg))]
    return max(reached, default=1)


def _held_level(fig: SurgeFigures, current: int, cfg: SurgeConfig) -> int:
    held = [
        lv for lv in _LEVELS
        if lv <= current and any(f.holds() for f in _figures(fig, lv, cfg))
    ]
    return max(held, default=1)


def _reaching_reasons(fig: SurgeFigures, level: int, cfg: SurgeConfig) -> list[str]:
    if level == 1:
        return [
            f"All figures are below the OPEL 2 thresholds: occupancy {_fmt_pct(_pct(fig.occupancy))}, "
            f"{fig.waiting} waiting for a bed, {fig.arrivals_last_hour} arrivals in the last hour."
        ]
    texts = {
        "occupancy": lambda f: f"Occupancy {_fmt_pct(f.value)} is at or above the OPEL {level} "
                               f"threshold of {_fmt_pct(f.threshold)}.",
        "waiting": lambda f: f"Patients waiting for a bed ({f.value:g}) are at or above the "
                             f"OPEL {level} threshold of {f.threshold:g}.",
        "arrivals": lambda f: f"Arrivals in the last hour ({f.value:g}) are at or above the "
                              f"OPEL {level} threshold of {f.threshold:g}.",
    }
    return [texts[f.key](f) for f in _figures(fig, level, cfg) if f.reaches()]


def _holding_reasons(fig: SurgeFigures, level: int, cfg: SurgeConfig) -> list[str]:
    texts = {
        "occupancy": lambda f: f"occupancy {_fmt_pct(f.value)} has not yet fallen below "
                               f"{_fmt_pct(f.threshold - f.margin)} (the OPEL {level} threshold "
                               f"of {_fmt_pct(f.threshold)} less a margin of {f.margin:g} points).",
        "waiting": lambda f: f"patients waiting for a bed ({f.value:g}) have not yet fallen "
                             f"below {f.threshold - f.margin:g} (the OPEL {level} threshold of "
                             f"{f.threshold:g} less a margin of {f.margin:g}).",
        "arrivals": lambda f: f"arrivals in the last hour ({f.value:g}) have not yet fallen "
                              f"below {f.threshold - f.margin:g} (the OPEL {level} threshold of "
                              f"{f.threshold:g} less a margin of {f.margin:g}).",
    }
    return [
        f"Holding OPEL {level}: {texts[f.key](f)}"
        for f in _figures(fig, level, cfg) if f.holds() and not f.reaches()
    ]


def _explain(fig: SurgeFigures, level: int, cfg: SurgeConfig) -> list[str]:
    if level > 1 and not any(f.reaches() for f in _figures(fig, level, cfg)):
        return _holding_reasons(fig, level, cfg)
    return _reaching_reasons(fig, level, cfg)


def evaluate_surge(
    previous: SurgeState | None, figures: SurgeFigures, now: datetime, cfg: SurgeConfig
) -> tuple[SurgeState, bool, list[str]]:
    """The surge level for `figures` at `now`, whether it changed, and why in sentences.

    With no previous state the level is simply the one the figures reach, reported as a change
    so the first level gets published.
    """
    raw = _raw_level(figures, cfg)
    if previous is None:
        return SurgeState(raw, now), True, _reaching_reasons(figures, raw, cfg)
    if raw > previous.level:
        return SurgeState(raw, now), True, _reaching_reasons(figures, raw, cfg)
    target = _held_level(figures, previous.level, cfg)
    if target == previous.level:
        return previous, False, _explain(figures, target, cfg)
    dwell = timedelta(minutes=cfg.min_dwell_minutes)
    if now - previous.since < dwell:
        return previous, False, [
            f"Holding OPEL {previous.level} for its minimum of {cfg.min_dwell_minutes:g} minutes "
            f"from {previous.since.isoformat()}; the figures now fit OPEL {target}."
        ]
    step = f"All figures are below the OPEL {previous.level} thresholds less their margins."
    return SurgeState(target, now), True, [step, *_explain(figures, target, cfg)]
