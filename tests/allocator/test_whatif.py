"""The what-if simulator: same seed, same report; both policies meet the same patients; the metrics
mean what the module says (a crafted isolation wait, a deliberately broken policy caught by the
referee); and the `wardflow whatif` command prints JSON and writes the plot."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

import allocator.whatif as whatif
from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, load_hospitals
from allocator.matching import MatchResult, PlacedPatient
from allocator.placement import Assignment
from allocator.whatif import run_whatif, simulate_cases
from allocator.whatif_cases import CaseMix, draw_arrivals, draw_census
from tests.allocator.test_allocator_placement import HEAD, unit


@pytest.fixture(scope="module")
def demo() -> Hospital:
    return load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]


@pytest.fixture(scope="module")
def day(demo: Hospital) -> whatif.WhatIfReport:
    return run_whatif(demo, policy="both", days=1, seed=11, load="normal")


def test_same_seed_same_report(demo: Hospital, day: whatif.WhatIfReport) -> None:
    again = run_whatif(demo, policy="both", days=1, seed=11, load="normal")
    assert again == day
    assert again.to_dict()["metrics"] == day.to_dict()["metrics"]
    other = run_whatif(demo, policy="greedy", days=1, seed=12, load="normal")
    assert other.policies["greedy"] != day.policies["greedy"]


def test_cases_do_not_depend_on_the_policy_or_on_run_length(demo: Hospital) -> None:
    mix = CaseMix(demo)
    week, _ = draw_arrivals(mix, seed=3, days=2, load="normal")
    day, _ = draw_arrivals(mix, seed=3, days=1, load="normal")
    assert [c for c in week if c.decision_at < 1440] == day
    assert draw_census(mix, seed=3, load="surge") == draw_census(mix, seed=3, load="surge")


def test_arrivals_follow_the_brief(demo: Hospital) -> None:
    mix = CaseMix(demo)
    cases, ed = draw_arrivals(mix, seed=9, days=7, load="normal")
    per_300_beds_a_day = ed / 7 * 300 / len(demo.beds)
    assert 170 < per_300_beds_a_day < 230, "~200 ED arrivals a day per 300 beds"
    assert 0.28 < len(cases) / ed < 0.38, "about a third admitted"
    by_hour = [0] * 24
    for c in cases:
        by_hour[int(c.decision_at // 60) % 24] += 1
    assert sum(by_hour[12:20]) > 1.5 * sum(by_hour[2:10]), "decisions follow the ED's busy afternoons"
    isolation = [c for c in cases if c.needs & {"airborne_isolation", "contact_isolation", "droplet_isolation"}]
    assert 0.03 < len(isolation) / len(cases) < 0.2
    assert all(c.age < 16 for c in cases if c.label == "PAEDIATRICS")
    assert all(c.age >= 16 for c in cases if c.label != "PAEDIATRICS")
    assert all(c.sex == "F" for c in cases if c.label == "MATERNITY")
    surge, _ = draw_arrivals(mix, seed=9, days=7, load="surge")
    assert len(surge) > 1.2 * len(cases)


def test_both_policies_meet_the_same_patients_and_break_no_rule(day: whatif.WhatIfReport) -> None:
    optimal, greedy = day.policies["optimal"], day.policies["greedy"]
    assert optimal.decisions_to_admit == greedy.decisions_to_admit == day.decisions_to_admit > 40
    for m in (optimal, greedy):
        assert m.breaches == 0
        assert m.admitted_to_bed + m.still_waiting_at_end == m.decisions_to_admit
        assert len(m.occupancy) == len(m.waiting) == 24
        assert 0.7 < m.occupancy_mean < 1.0
        assert m.wait_p90_min >= m.wait_mean_min * 0.5
        assert m.matching_runs >= m.decisions_to_admit, "the matching re-runs on every arrival"
    assert set(day.to_dict()["metrics"]["pages"]) == {"optimal", "greedy"}
    assert "optimal" in day.table() and "wait_p90_min" in day.table()


def test_surge_fills_the_hospital(demo: Hospital, day: whatif.WhatIfReport) -> None:
    surge = run_whatif(demo, policy="optimal", days=1, seed=11, load="surge")
    assert surge.decisions_to_admit > day.decisions_to_admit
    assert surge.policies["optimal"].occupancy_mean > day.policies["optimal"].occupancy_mean
    assert surge.policies["optimal"].occupancy_mean > 0.95


# ---------------------------------------------------------------- crafted scenarios


@pytest.fixture
def ward(tmp_path: Path) -> Hospital:
    path = tmp_path / "h.yaml"
    units = [unit("MED", "{id: NP, type: single, negative_pressure: true}", "{id: BF, type: bay, sex: F, beds: 1}",
                  serves=["MEDICINE"])]
    path.write_text(HEAD + textwrap.indent("\n".join(units), " " * 6) + "\n")
    return load_hospitals(path)["t"]


def case(case_id: str, *, at: float, sex: str, needs: frozenset[str] = frozenset(), stay: float = 3000.0,
         census: bool = False) -> whatif.Case:
    return whatif.Case(case_id=case_id, decision_at=at, label="MEDICINE", age=60.0, sex=sex, needs=needs, acuity=3,
                       stay=stay, discharge_offset=0.0, cleanings=(30.0, 30.0, 30.0), deteriorate_at=None,
                       deteriorate_to_icu=False, icu_acuity=2, icu_stay=0.0, step_down=False, step_down_stay=0.0,
                       census=census)


def test_isolation_wait_is_counted_while_the_room_holds_someone_who_does_not_need_it(ward: Hospital) -> None:
    # A man without isolation needs is in the negative-pressure room until 11:00 (fit in the
    # discharge window, so he leaves at once); the room is clean 30 minutes later. An airborne
    # case waits from 01:00: blocked for 600 minutes (until he leaves), placed at 11:30.
    census = [(case("c0", at=0, sex="M", stay=660.0, census=True), "NP")]
    airborne = case("a0", at=60.0, sex="F", needs=frozenset({"airborne_isolation"}))
    for policy in ("optimal", "greedy"):
        m = simulate_cases(ward, policy=policy, days=1, census=census, arrivals=[airborne])
        assert m.isolation_blocked_patient_minutes == pytest.approx(600.0)
        assert m.isolation_blocked_patients == 1
        assert m.wait_mean_min == pytest.approx(630.0)
        assert (m.pages, m.breaches, m.off_service_placements, m.admitted_to_bed) == (1, 0, 0, 1)


def test_an_occupant_who_needs_the_room_blocks_nobody(ward: Hospital) -> None:
    census = [(case("c0", at=0, sex="M", stay=660.0, census=True, needs=frozenset({"airborne_isolation"})), "NP")]
    airborne = case("a0", at=60.0, sex="F", needs=frozenset({"airborne_isolation"}))
    m = simulate_cases(ward, policy="optimal", days=1, census=census, arrivals=[airborne])
    assert m.isolation_blocked_patient_minutes == 0 and m.isolation_blocked_patients == 0
    assert m.wait_mean_min == pytest.approx(630.0)


def test_the_referee_catches_a_policy_that_breaks_rules(ward: Hospital, monkeypatch: pytest.MonkeyPatch) -> None:
    def reckless(waiting, hospital, beds, **_):  # every patient into the bay bed, whatever they need
        placed = [PlacedPatient(p, Assignment("BF-A", "MED", False, ())) for p in waiting[:1]]
        return MatchResult("reckless", placed, [])

    monkeypatch.setattr(whatif, "assign", reckless)
    airborne = case("a0", at=60.0, sex="F", needs=frozenset({"airborne_isolation"}))
    man = case("a1", at=120.0, sex="M")
    m = simulate_cases(ward, policy="optimal", days=1, census=[], arrivals=[airborne, man])
    assert m.breaches == 2, "needs a negative-pressure room; then a man into a female bay that is not free"


def test_bad_arguments(demo: Hospital) -> None:
    with pytest.raises(ValueError):
        run_whatif(demo, policy="random", days=1, seed=1)
    with pytest.raises(ValueError):
        run_whatif(demo, policy="both", days=0, seed=1)
    with pytest.raises(ValueError):
        run_whatif(demo, policy="both", days=1, seed=1, load="panic")  # type: ignore[arg-type]  # deliberately not a load


def test_whatif_command_prints_json_and_writes_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    plot = tmp_path / "occupancy.png"
    assert main(["whatif", "--offline", "--policy", "both", "--days", "0.5", "--seed", "4", "--load", "normal",
                 "--json", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"]["breaches"] == {"optimal": 0, "greedy": 0}
    assert set(data["metrics"]["wait_mean_min"]) == {"optimal", "greedy"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["whatif", "--policy", "greedy", "--days", "0.25", "--hospital", "nowhere"]) == 2
    assert "no hospital 'nowhere'" in capsys.readouterr().err


def test_report_dict_leaves_time_series_out_of_the_metrics(day: whatif.WhatIfReport) -> None:
    metrics = day.to_dict()["metrics"]
    assert "occupancy" not in metrics and "waiting" not in metrics
    assert replace(day, seconds={}) == day, "wall time is not part of the result"
