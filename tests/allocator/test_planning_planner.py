"""The planner: feasible, deterministic for a seed and time limit, never worse than its greedy,
its reported cost the evaluator's, and `wardflow plan` refusing to write an infeasible plan."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from allocator.planning.evaluate import evaluate
from allocator.planning.model import load_instance, load_solution
from allocator.planning.planner import plan
from streams.cli import main

DATA = Path("/work/shared/ihtc2024")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small instances and one public one, unzipped."""
    if not (DATA / "ihtp_small.zip").exists():
        pytest.skip(f"{DATA} is not on this machine")
    out = tmp_path_factory.mktemp("ihtc")
    with zipfile.ZipFile(DATA / "ihtp_small.zip") as z:
        for name in ("small05.json", "small08.json"):
            member = next(m for m in z.namelist() if m.endswith(name) and not m.startswith("__MACOSX"))
            (out / name).write_bytes(z.read(member))
    with zipfile.ZipFile(DATA / "ihtc2024_competition_instances.zip") as z:
        member = next(m for m in z.namelist() if m.endswith("i02.json") and not m.startswith("__MACOSX"))
        (out / "i02.json").write_bytes(z.read(member))
    return out


@pytest.mark.parametrize("name", ["small05", "small08", "i02"])
def test_plan_is_feasible_better_than_greedy_and_evaluated(small: Path, name: str) -> None:
    inst = load_instance(small / f"{name}.json")
    res = plan(inst, time_limit=300, seed=7, moves_per_second=2_000)
    assert res.stopped_by == "moves" and res.moves == res.moves_budget == 600_000
    assert res.greedy_evaluation.feasible
    assert res.evaluation.feasible
    assert res.evaluation.total_cost <= res.greedy_evaluation.total_cost
    assert res.evaluation == evaluate(inst, res.solution)
    # every mandatory patient admitted inside their window, every occupied room-shift covered
    adm = res.solution.admission
    assert np.all(adm[inst.mandatory] >= inst.release_day[inst.mandatory])
    assert np.all(adm[inst.mandatory] <= inst.last_day[inst.mandatory])


def test_same_seed_same_plan_other_seed_other_search(small: Path) -> None:
    inst = load_instance(small / "small08.json")
    a = plan(inst, time_limit=300, seed=3, moves_per_second=1_000)
    b = plan(inst, time_limit=300, seed=3, moves_per_second=1_000)
    c = plan(inst, time_limit=300, seed=4, moves_per_second=1_000)
    for x, y in ((a.solution.admission, b.solution.admission), (a.solution.room, b.solution.room),
                 (a.solution.theatre, b.solution.theatre), (a.solution.nurse_assignments, b.solution.nurse_assignments)):
        assert np.array_equal(x, y)
    assert a.evaluation == b.evaluation
    different = not all(np.array_equal(getattr(a.solution, f), getattr(c.solution, f))
                        for f in ("admission", "room", "theatre", "nurse_assignments"))
    assert different


def test_cli_writes_an_official_solution_with_its_cost_line(small: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sol.json"
    code = main(["plan", "--instance", str(small / "small05.json"), "--out", str(out), "--time-limit", "300",
                 "--seed", "1", "--moves-per-second", "1000", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    inst = load_instance(small / "small05.json")
    ev = evaluate(inst, load_solution(out, inst))
    assert ev.feasible and ev.total_cost == summary["cost"] and summary["violations"] == 0
    doc = json.loads(out.read_text())
    assert doc["costs"] == [ev.cost_line()]
    assert {p["id"] for p in doc["patients"]} == set(inst.person_ids[: inst.n_patients])


def test_cli_refuses_to_write_an_infeasible_plan(small: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads((small / "small05.json").read_text())
    mandatory = next(p for p in doc["patients"] if p["mandatory"])
    for s in doc["surgeons"]:
        if s["id"] == mandatory["surgeon_id"]:
            s["max_surgery_time"] = [0] * doc["days"]  # the surgeon never operates: cannot be admitted
    bad = tmp_path / "impossible.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "sol.json"
    code = main(["plan", "--instance", str(bad), "--out", str(out), "--time-limit", "2", "--moves-per-second",
                 "20000", "--quiet"])
    assert code == 2
    assert not out.exists()
    assert "mandatory_unscheduled=" in capsys.readouterr().err


def test_plan_with_an_uncoverable_occupant_is_reported_infeasible(small: Path, tmp_path: Path) -> None:
    doc = json.loads((small / "small05.json").read_text())
    assert doc["occupants"], "small05 has occupants on day 0"
    for nurse in doc["nurses"]:  # nobody works on day 0: the occupants' rooms cannot be covered
        nurse["working_shifts"] = [w for w in nurse["working_shifts"] if w["day"] != 0]
    bad = tmp_path / "uncovered.json"
    bad.write_text(json.dumps(doc))
    inst = load_instance(bad)
    res = plan(inst, time_limit=300, seed=1, moves_per_second=1_000)
    assert not res.evaluation.feasible
    assert res.evaluation.violations["uncovered_room"] > 0


def test_cli_bad_instance_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "inst.json"
    bad.write_text(json.dumps({"days": 2}))
    assert main(["plan", "--instance", str(bad), "--out", str(tmp_path / "x.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: skill_levels: field required" in err
