"""The demo summary's plots: waits and pages counted from decisions, three PNGs written next to the JSON."""

from __future__ import annotations

import pytest

from streams.devtools.demo_plots import DemoHistory, write_plots


def d(kind: str, at: str, **fields) -> dict:
    return {"kind": kind, "created_at": f"2026-11-24T{at}:00Z", **fields}


def test_waits_pages_and_the_three_pngs(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib comes with the train extra")
    h = DemoHistory()
    h.decision(d("no_bed", "08:00", encounter_id="E1"))
    h.decision(d("page", "08:10", page_id="p1"))
    h.sample({"AMU": 0.5, "W5": 0.9}, 1)
    h.decision(d("assignment", "08:45", encounter_id="E1", bed_id="B1"))
    h.decision(d("escalation", "09:20", page_id="p1"))
    h.sample({"AMU": 0.6, "W5": 0.95}, 0)
    assert h.waits_minutes == [45.0]
    assert sorted(h.pages_by_hour.values()) == [1, 1]
    assert [w for _, w in h.waiting] == [1, 0]
    written = write_plots(h, tmp_path / "summary-x")
    assert [p.name for p in written] == ["summary-x-occupancy.png", "summary-x-waits.png", "summary-x-pages.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


def test_nothing_scraped_says_so(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib comes with the train extra")
    assert "never read" in write_plots(DemoHistory(), tmp_path / "s")
