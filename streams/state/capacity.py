"""Hospital-wide capacity: the surge level from occupancy, waiting and arrivals, on the hospital clock.

The level (four, in the spirit of NHS OPEL) comes from the allocator's pure rules with
hysteresis and the hospital's own thresholds (`surge:` in its config); a change is a
`surge_level` decision carrying the figures that caused it. Arrivals in the last hour are read
from the windowed arrivals table (`streams.state.windowed`), to its 5-minute step.
"""

from __future__ import annotations

from datetime import datetime

from allocator.surge import SurgeFigures, SurgeState, evaluate_surge
from streams.state import windowed
from streams.state.decisions import DecisionLog
from streams.state.windowed import WindowConfig


def figures(state, now: datetime, windows: WindowConfig) -> SurgeFigures:
    total = taken = 0
    for unit in state.hospital.units:
        census = state.census(unit.code)
        total += census.total
        taken += sum(census.by_status.get(s, 0) for s in ("occupied", "held"))
    return SurgeFigures(occupancy=taken / total if total else 0.0, waiting=len(state.waiting()),
                        arrivals_last_hour=windowed.admissions_last_window(state, now, windows))


def update_surge(state, now: datetime, windows: WindowConfig, log: DecisionLog) -> None:
    current = figures(state, now, windows)
    stored = state.surge()
    previous = SurgeState.from_dict(stored) if stored else None
    new, changed, reasons = evaluate_surge(previous, current, now, state.hospital.surge)
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
