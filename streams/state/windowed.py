"""Capacity over time: arrivals, occupancy and pages per unit in event-time windows.

Arrivals and pages are hopping windows (default 1 h advancing 5 min). They are stored as
Faust windowed tables of one step each (`Table.tumbling(step)`), and a hopping window's count
is the sum of the steps it covers: one changelog record per event instead of the `size/step`
(twelve) that Faust's own `Table.hopping` writes, with the same counts. Occupancy is a
tumbling table of steps keeping each step's last value and peak.

The window arithmetic is Faust's own (`faust.windows`): a window's key is
`(hospital|item, (start, end))` with `end = start + size - 0.1`, and an event belongs to every
window whose start is at or before it and within `size` of it, so an event exactly on a step
boundary opens the window starting there and has left the one that ended 0.1 s before.

Windows are placed on event time, never the wall clock: a replay fills the same windows.
Writes go through `StagedTables` like every other write, so they are journalled and committed
with the rest of the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faust.windows import HoppingWindow, TumblingWindow

ARRIVALS_WINDOW = "arrivals_by_unit"  # hid|unit -> patients who arrived on the unit, per step (count)
ADMISSIONS_KEY = "@hospital"  # hid|@hospital -> admissions received by the hospital, per step (count)
PAGES_WINDOW = "pages_by_unit"  # hid|unit -> pages and escalations about patients of the unit, per step
OCCUPANCY_WINDOW = "occupancy_by_unit"  # hid|unit -> {"occupied", "total", "peak"} in each step
WINDOWED_TABLES = (ARRIVALS_WINDOW, PAGES_WINDOW, OCCUPANCY_WINDOW)
UNPLACED = "unplaced"  # pages about a patient who has no bed yet

WindowRange = tuple[float, float]


@dataclass(frozen=True)
class WindowConfig:
    """Window sizes in seconds. Defaults: arrivals and pages over 1 h advancing 5 min; occupancy in 5 min steps."""

    size_s: float = 3600.0
    step_s: float = 300.0
    occupancy_step_s: float = 300.0
    expires_s: float = 48 * 3600.0  # how long Faust keeps a closed window (wall clock, its cleanup timer)

    def __post_init__(self) -> None:
        if self.step_s <= 0 or self.size_s < self.step_s or self.occupancy_step_s <= 0:
            raise ValueError("windows need 0 < step <= size and a positive occupancy step")

    def hopping(self) -> HoppingWindow:
        return HoppingWindow(self.size_s, self.step_s, self.expires_s)

    def steps(self) -> TumblingWindow:
        """The steps arrivals and pages are stored in; hopping windows are sums of them."""
        return TumblingWindow(self.step_s, self.expires_s)

    def tumbling(self) -> TumblingWindow:
        return TumblingWindow(self.occupancy_step_s, self.expires_s)


def window_key(hospital_id: str, item: str, window: WindowRange) -> tuple[str, WindowRange]:
    return f"{hospital_id}|{item}", (float(window[0]), float(window[1]))


def _ts(at: datetime) -> float:
    return at.timestamp()


def _add(state: Any, table: str, item: str, at: datetime, cfg: WindowConfig, by: int = 1) -> None:
    (step,) = cfg.steps().ranges(_ts(at))
    k = window_key(state.hid, item, step)
    state.staged.put(table, k, int(state.staged.get(table, k, 0)) + by)


def record_admission(state: Any, at: datetime, cfg: WindowConfig) -> None:
    """An admission reached the hospital: counts towards its arrival rate (surge)."""
    _add(state, ARRIVALS_WINDOW, ADMISSIONS_KEY, at, cfg)


def record_arrival(state: Any, unit: str, at: datetime, cfg: WindowConfig) -> None:
    """A patient arrived on `unit` (assigned a bed there, or transferred in from another unit)."""
    _add(state, ARRIVALS_WINDOW, unit, at, cfg)


def record_page(state: Any, unit: str | None, at: datetime, cfg: WindowConfig) -> None:
    _add(state, PAGES_WINDOW, unit or UNPLACED, at, cfg)


def record_occupancy(state: Any, unit: str, occupied: int, total: int, at: datetime, cfg: WindowConfig) -> None:
    """The unit's occupancy at `at`: the step keeps its last value and its peak."""
    (rng,) = cfg.tumbling().ranges(_ts(at))
    k = window_key(state.hid, unit, rng)
    before = state.staged.get(OCCUPANCY_WINDOW, k) or {}
    state.staged.put(OCCUPANCY_WINDOW, k, {"occupied": occupied, "total": total,
                                           "peak": max(occupied, int(before.get("peak", 0)))})


def record_outcomes(state: Any, at: datetime, censuses: list, decisions: list, cfg: WindowConfig) -> None:
    """What one event did, into the windows: occupancy of the units it changed, arrivals, pages."""
    for census in censuses:
        taken = sum(census.by_status.get(s, 0) for s in ("occupied", "held"))
        record_occupancy(state, census.unit, taken, census.total, at, cfg)
    for d in decisions:
        if d.kind == "assignment" and d.unit:
            record_arrival(state, d.unit, at, cfg)
        elif d.kind in ("page", "escalation") and d.encounter_id:
            enc = state.encounter(d.encounter_id)
            record_page(state, enc.unit if enc else None, at, cfg)


def latest_full_window(now: datetime, cfg: WindowConfig) -> WindowRange:
    """The hopping window that ends last while still containing `now`: the last `size` up to the current step."""
    return cfg.hopping().ranges(_ts(now))[0]


def count_in(tables_get: Any, hospital_id: str, item: str, table: str, window: WindowRange,
             cfg: WindowConfig) -> int:
    """Count in one hopping window (the sum of its steps); `tables_get(table, key, default)` reads state."""
    steps = cfg.steps()
    total = 0
    start = window[0]
    while start <= window[1]:
        (rng,) = steps.ranges(start)
        total += int(tables_get(table, window_key(hospital_id, item, rng), 0) or 0)
        start += cfg.step_s
    return total


def admissions_last_window(state: Any, now: datetime, cfg: WindowConfig) -> int:
    """Admissions in the last hour (to the step): the surge rule's arrival rate."""
    return count_in(state.staged.get, state.hid, ADMISSIONS_KEY, ARRIVALS_WINDOW, latest_full_window(now, cfg), cfg)


def occupancy_series(get: Any, hospital_id: str, unit: str, now: datetime, cfg: WindowConfig,
                     steps: int) -> list[dict]:
    """The last `steps` occupancy steps up to `now`, oldest first; a step with no change carries the last value."""
    window = cfg.tumbling()
    (current,) = window.ranges(_ts(now))
    series: list[dict] = []
    carried: dict | None = None
    starts = [current[0] - i * cfg.occupancy_step_s for i in range(steps - 1, -1, -1)]
    # A value from before the first step shown is carried into it: look back at most one day.
    for back in range(1, int(86400 // cfg.occupancy_step_s) + 1):
        rng = window.ranges(starts[0] - back * cfg.occupancy_step_s)[0]
        value = get(OCCUPANCY_WINDOW, window_key(hospital_id, unit, rng), None)
        if value:
            carried = {"occupied": value["occupied"], "total": value["total"], "peak": value["occupied"]}
            break
    point: dict | None
    for start in starts:
        rng = window.ranges(start)[0]
        value = get(OCCUPANCY_WINDOW, window_key(hospital_id, unit, rng), None)
        if value:
            carried = {"occupied": value["occupied"], "total": value["total"], "peak": value["occupied"]}
            point = dict(value)
        else:
            point = dict(carried) if carried else None
        series.append({"start": datetime.fromtimestamp(rng[0], tz=now.tzinfo).isoformat(), **(point or {})})
    return series

