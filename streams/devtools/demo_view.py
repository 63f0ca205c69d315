"""What the demo shows: figures scraped from the worker's /metrics and read off the output topics."""

from __future__ import annotations

import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.panel import Panel
from rich.table import Table


@dataclass
class DemoFigures:
    """Everything on the demo screen; refreshed about once a second."""

    published: int = 0
    to_publish: int = 0
    sim_time: str = ""
    events_in: float = 0.0
    decisions_by_kind: Counter = field(default_factory=Counter)
    dead_letters_by_code: Counter = field(default_factory=Counter)
    occupancy: dict[str, float] = field(default_factory=dict)
    beds: dict[str, dict[str, float]] = field(default_factory=dict)
    waiting: float = 0.0
    latency_buckets: list[tuple[float, float]] = field(default_factory=list)
    latency_count: float = 0.0
    recent: list[str] = field(default_factory=list)

    def latency_quantile(self, q: float) -> float | None:
        """Upper bound of the histogram bucket holding quantile `q` (what Prometheus would interpolate)."""
        if not self.latency_count:
            return None
        target = q * self.latency_count
        for bound, cumulative in self.latency_buckets:
            if cumulative >= target:
                return bound if bound != float("inf") else None  # beyond the last bucket: unknown, not infinite
        return None


def scrape(port: int, figures: DemoFigures) -> None:
    """Read the worker's metrics endpoint into `figures` (quietly keeps old figures on failure)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return
    events_in = 0.0
    buckets = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "wardflow_events_in_total":
                events_in += s.value
            elif s.name == "wardflow_unit_occupancy_ratio":
                figures.occupancy[s.labels["unit"]] = s.value
            elif s.name == "wardflow_unit_beds":
                figures.beds.setdefault(s.labels["unit"], {})[s.labels["status"]] = s.value
            elif s.name == "wardflow_patients_waiting":
                figures.waiting = s.value
            elif s.name == "wardflow_decision_latency_seconds_bucket":
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name == "wardflow_decision_latency_seconds_count":
                figures.latency_count = s.value
    figures.events_in = events_in
    figures.latency_buckets = sorted(buckets)


def render(f: DemoFigures, title: str) -> Group:
    top = Table.grid(padding=(0, 2))
    top.add_row(f"[b]simulated time[/b] {f.sim_time}", f"[b]published[/b] {f.published}/{f.to_publish}",
                f"[b]processed[/b] {int(f.events_in)}", f"[b]waiting for a bed[/b] {int(f.waiting)}")
    p50, p99 = f.latency_quantile(0.5), f.latency_quantile(0.99)
    top.add_row(f"[b]decision latency[/b] p50 <= {p50 if p50 is not None else '-'} s",
                f"p99 <= {p99 if p99 is not None else '-'} s", "", "")

    kinds = Table(title="decisions by kind", expand=True)
    kinds.add_column("kind")
    kinds.add_column("count", justify="right")
    for kind, n in sorted(f.decisions_by_kind.items()):
        kinds.add_row(kind, str(n))

    dead = Table(title="dead letters by code", expand=True)
    dead.add_column("code")
    dead.add_column("count", justify="right")
    for code, n in sorted(f.dead_letters_by_code.items()):
        dead.add_row(code, str(n))

    units = Table(title="occupancy per unit", expand=True)
    for col in ("unit", "occupied", "dirty/cleaning", "available", "occupancy"):
        units.add_column(col, justify="right" if col != "unit" else "left")
    for unit in sorted(f.occupancy):
        b = f.beds.get(unit, {})
        ratio = f.occupancy[unit]
        colour = "red" if ratio >= 0.95 else "yellow" if ratio >= 0.85 else "green"
        units.add_row(unit, str(int(b.get("occupied", 0) + b.get("held", 0))),
                      str(int(b.get("dirty", 0) + b.get("cleaning", 0))), str(int(b.get("available", 0))),
                      f"[{colour}]{ratio:.0%}[/{colour}]")

    grid = Table.grid(expand=True)
    grid.add_row(kinds, dead)
    recent = "\n".join(f.recent[-8:]) or "(none yet)"
    return Group(Panel(top, title=title), grid, units, Panel(recent, title="latest decisions"))


def describe_decision(d: dict) -> str:
    """One line for the ticker: kind, unit/bed and the first reason (never free text: there is none)."""
    where = f" {d.get('unit', '')}/{d.get('bed_id', '')}" if d.get("bed_id") else ""
    reason = d["reasons"][0]["text"] if d.get("reasons") else ""
    return f"{d['created_at'][11:16]} {d['kind']}{where} {d.get('encounter_id', '')}: {reason}"
