"""The demo summary's pictures: occupancy per unit over the day, waits, pages per hour (PNG, next to its JSON).

matplotlib is optional (it comes with the `train` extra that `make demo` installs); without it the
demo says so once and writes the JSON alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class DemoHistory:
    """What the plots need, gathered while the demo runs (simulated time on the x axis)."""

    occupancy: list[tuple[datetime, dict[str, float]]] = field(default_factory=list)
    waiting: list[tuple[datetime, float]] = field(default_factory=list)
    waits_minutes: list[float] = field(default_factory=list)  # no_bed -> bed, per patient
    pages_by_hour: Counter = field(default_factory=Counter)  # hour start -> pages and escalations
    clock: datetime | None = None  # the hospital's clock: the latest decision's event time
    _waiting_since: dict[str, datetime] = field(default_factory=dict)

    def sample(self, occupancy: dict[str, float], waiting: float) -> None:
        """Figures scraped from the worker, at the hospital time of the latest decision read."""
        at = self.clock
        if at is None or not occupancy:
            return
        if self.occupancy and self.occupancy[-1][0] == at:
            return
        self.occupancy.append((at, dict(occupancy)))
        self.waiting.append((at, waiting))

    def decision(self, d: dict) -> None:
        kind, at = d.get("kind"), datetime.fromisoformat(d["created_at"])
        if self.clock is None or at > self.clock:
            self.clock = at
        if kind in ("page", "escalation"):
            self.pages_by_hour[at.replace(minute=0, second=0, microsecond=0)] += 1
        elif kind == "no_bed" and d.get("encounter_id"):
            self._waiting_since.setdefault(d["encounter_id"], at)
        elif kind == "assignment" and d.get("encounter_id") in self._waiting_since:
            since = self._waiting_since.pop(d["encounter_id"])
            self.waits_minutes.append((at - since).total_seconds() / 60)


def write_plots(history: DemoHistory, stem: Path) -> list[Path] | str:
    """`<stem>-occupancy.png`, `<stem>-waits.png`, `<stem>-pages.png`; or why none were written."""
    try:
        import logging

        import matplotlib

        matplotlib.use("Agg")
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plots: matplotlib is not installed (pip install matplotlib, or .[train])"
    if not history.occupancy:
        return "no plots: the worker's metrics were never read"
    written = []
    times = [t for t, _ in history.occupancy]
    units = sorted({u for _, occ in history.occupancy for u in occ})
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for unit in units:
        ax.plot(times, [100 * occ.get(unit, float("nan")) for _, occ in history.occupancy],  # type: ignore[arg-type]  # matplotlib plots datetimes through its unit converters; its stubs leave them out
                label=unit, linewidth=1.2)
    ax.set_title("Occupancy per unit (occupied or held beds), simulated day")
    ax.set_ylabel("% of the unit's beds")
    ax.set_ylim(0, 105)
    ax.legend(ncol=2, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(stem.with_name(stem.name + "-occupancy.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.plot([t for t, _ in history.waiting], [w for _, w in history.waiting], color="#c0392b")
    left.set_title("Patients waiting for a bed")
    left.set_ylabel("patients")
    for label in left.get_xticklabels():
        label.set_rotation(30)
    if history.waits_minutes:
        right.hist(history.waits_minutes, bins=min(20, max(5, len(history.waits_minutes) // 2)), color="#0b4f8a")
        right.set_title(f"Waits for a bed, {len(history.waits_minutes)} patients (no bed -> bed)")
        right.set_xlabel("minutes")
    else:
        right.text(0.5, 0.5, "no waiting patient was given a bed during the run", ha="center", va="center")
        right.set_axis_off()
    fig.tight_layout()
    written.append(stem.with_name(stem.name + "-waits.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4))
    hours = sorted(history.pages_by_hour)
    ax.bar([h.strftime("%a %H:00") for h in hours], [history.pages_by_hour[h] for h in hours], color="#7a4b00")
    ax.set_title("Pages and escalations per hour (NEWS2 response)")
    ax.set_ylabel("pages")
    for label in ax.get_xticklabels():
        label.set_rotation(60)
        label.set_fontsize(7)
    fig.tight_layout()
    written.append(stem.with_name(stem.name + "-pages.png"))
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
