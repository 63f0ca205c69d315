"""Hospital-wide capacity: arrivals in the last hour and the surge level, on the hospital clock.

The level (four, in the spirit of NHS OPEL) comes from the allocator's pure rules with
hysteresis; a change is a `surge_level` decision carrying the figures that caused it.
Arrivals are a sliding one-hour window of admission times kept per hospital.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from allocator.surge import SurgeConfig, SurgeFigures, SurgeState, evaluate_surge
from streams.decisions import DecisionLog

ARRIVAL_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class CapacityConfig:
    surge: SurgeConfig = field(default_factory=SurgeConfig)


def record_arrival(state, at: datetime) -> None:
    state.set_arrivals([*recent_arrivals(state, at), at.isoformat()])


def recent_arrivals(state, now: datetime) -> list[str]:
    """Admission times within the last hour (an arrival exactly an hour old has left the window)."""
    return [t for t in state.arrivals() if now - datetime.fromisoformat(t) < ARRIVAL_WINDOW]


def figures(state, now: datetime) -> SurgeFigures:
    total = taken = 0
    for unit in state.hospital.units:
        census = state.census(unit.code)
        total += census.total
        taken += sum(census.by_status.get(s, 0) for s in ("occupied", "held"))
    return SurgeFigures(occupancy=taken / total if total else 0.0, waiting=len(state.waiting()),
                        arrivals_last_hour=len(recent_arrivals(state, now)))


def update_surge(state, now: datetime, cfg: CapacityConfig, log: DecisionLog) -> None:
    current = figures(state, now)
    stored = state.surge()
    previous = SurgeState.from_dict(stored) if stored else None
    new, changed, reasons = evaluate_surge(previous, current, now, cfg.surge)
    if not changed:
        return
    state.set_surge(new.to_dict())
    if previous is None and new.level == 1:
        return  # the starting level is normal: nothing to announce
    log.add("surge_level", [("surge", r) for r in reasons] or [("surge", f"OPEL {new.level}.")],
            role="site_manager", pager=state.hospital.roster.get("site_manager") or state.hospital.roster.get("bed_manager"),
            priority="urgent" if new.level >= 3 else "routine",
            details={"level": new.level, "previous_level": previous.level if previous else None,
                     "occupancy": round(current.occupancy, 4), "waiting": current.waiting,
                     "arrivals_last_hour": current.arrivals_last_hour})
