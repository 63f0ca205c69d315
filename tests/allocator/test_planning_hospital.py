"""The hospital's own plan: `wardflow plan --hospital-config FILE --electives FILE`.

The shipped example (docs/examples/) is planned end to end: the IHTC problem built from the
hospital's `planning:` section and the electives, a plan meeting every hard constraint checked by
the evaluator and by the hospital's own rules (designated bays, single rooms for sex X, units),
`planned_admission` decisions decoded with the contract, published through the embedded broker.
Malformed files are refused with the file, the field and the problem.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from allocator.exceptions import HospitalConfigError, PlanningInputError
from allocator.hospital import DEMO_HOSPITAL_PATH, load_hospitals
from allocator.planning.evaluate import evaluate
from allocator.planning.hospital_plan import build_problem, load_electives, not_planned, planned_admissions
from allocator.planning.planner import plan
from streams.cli import main
from streams.contract.models import Decision

ROOT = Path(__file__).resolve().parents[2]
HOSPITAL = ROOT / "docs" / "examples" / "planning-hospital.yaml"
ELECTIVES = ROOT / "docs" / "examples" / "electives.yaml"
FAST = ["--time-limit", "300", "--moves-per-second", "200", "--seed", "3", "--quiet"]  # 60,000 moves, no clock


def _problem(electives: Path = ELECTIVES, hospital: Path = HOSPITAL):
    h = load_hospitals(hospital)["st-example"]
    return h, build_problem(h, load_electives(electives), hospital_file=str(hospital), electives_file=str(electives))


def _write(tmp_path: Path, name: str, doc: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if name.endswith(".json") else yaml.safe_dump(doc, sort_keys=False))
    return path


def _electives() -> dict:
    return yaml.safe_load(ELECTIVES.read_text())


def _hospital() -> dict:
    return yaml.safe_load(HOSPITAL.read_text())


def test_the_example_hospital_gives_the_ihtc_problem_it_describes() -> None:
    h, pb = _problem()
    inst = pb.instance
    cfg = h.planning
    assert cfg is not None and cfg.units == ("SURG", "ORTHO")
    assert inst.room_ids == ("SURG-SR01", "SURG-SR02", "SURG-BF", "SURG-BM", "ORTHO-SR", "ORTHO-BX")
    assert inst.room_capacity.tolist() == [1, 1, 4, 4, 1, 3]
    # 7 December 2026 is a Monday: THEATRE-2 opens Mon, Wed, Fri; mr-okafor operates Mon, Tue, Thu
    assert inst.theatre_availability[1].tolist() == [480, 0, 480, 0, 300, 0, 0]
    assert inst.surgeon_max[inst.surgeon_ids.index("mr-okafor")].tolist() == [480, 240, 0, 480, 0, 0, 0]
    # N-EVA works nights Fri-Sun: days 4, 5, 6, shift 2
    eva = inst.nurse_ids.index("N-EVA")
    assert np.flatnonzero(inst.nurse_works[eva]).tolist() == [4 * 3 + 2, 5 * 3 + 2, 6 * 3 + 2]
    # P-1013's earliest date is after the week; P-1008 is due after it, so optional in this plan
    assert pb.outside_horizon == ("P-1013",) and pb.due_after_horizon == ("P-1008",)
    p1008 = inst.person_ids.index("P-1008")
    assert not inst.mandatory[p1008] and pb.mandatory[p1008]
    # designated bays and sex X: the other sex (and X) may not use a designated bay; X only single rooms
    p1001, p1010 = inst.person_ids.index("P-1001"), inst.person_ids.index("P-1010")
    assert inst.incompatible[p1001].tolist() == [False, False, False, True, True, True]  # F, unit SURG
    assert inst.incompatible[p1010].tolist() == [False, False, True, True, False, True]  # X: single rooms
    assert inst.n_occupants == 3 and inst.workload[inst.person_ids.index("P-1002"), :6].tolist() == [4, 3, 2, 3, 2, 2]


def test_a_feasible_plan_that_keeps_the_hospitals_rules() -> None:
    h, pb = _problem()
    inst = pb.instance
    res = plan(inst, time_limit=300, seed=3, moves_per_second=200)
    assert res.stopped_by == "moves"
    ev = evaluate(inst, res.solution)
    assert ev.feasible and ev == res.evaluation and ev.total_cost <= res.greedy_evaluation.total_cost
    admissions = planned_admissions(pb, res.solution)
    assert {a.patient_id for a in admissions} | set(not_planned(pb, res.solution)) == set(inst.person_ids[: inst.n_patients])
    electives = {e.patient_id: e for e in load_electives(ELECTIVES).electives}
    for a in admissions:
        e = electives[a.patient_id]
        assert e.earliest <= a.date and (not e.mandatory or e.latest is None or a.date <= e.latest
                                         or e.latest > date(2026, 12, 13))
        assert a.date == date(2026, 12, 7 + a.day) and a.surgeon == e.surgeon
        assert e.unit is None or a.unit == e.unit
        beds = h.beds_in_room(a.room)
        assert beds and beds[0].unit == a.unit
        assert beds[0].bay_sex in (None, e.sex)
        if e.sex == "X":
            assert beds[0].single_room
    mandatory_in_week = [pid for pid, e in electives.items() if e.mandatory and e.latest <= date(2026, 12, 13)]
    assert set(mandatory_in_week) <= {a.patient_id for a in admissions}


def test_cli_writes_planned_admission_decisions_that_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.jsonl"
    args = ["plan", "--hospital-config", str(HOSPITAL), "--electives", str(ELECTIVES), "--out", str(out), *FAST]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    decisions = [Decision.model_validate_json(line) for line in out.read_text().splitlines()]
    assert summary["violations"] == 0 and summary["decisions"] == len(decisions) == summary["planned"] > 0
    assert summary["plan_id"] == "week-2026-50" and summary["outside_horizon"] == ["P-1013"]
    for d in decisions:
        assert d.kind == "planned_admission" and d.hospital_id == "st-example" and d.caused_by == "week-2026-50"
        assert d.unit in ("SURG", "ORTHO") and d.bed_id is None and d.reasons[0].code == "planned_admission"
        assert set(d.details) == {"plan_id", "day", "date", "room", "theatre", "surgeon", "length_of_stay",
                                  "mandatory", "delay_days"}
    # the same plan again: the same decisions (ids and content; created_at is when it was planned)
    again = tmp_path / "again.jsonl"
    assert main([*args[:-len(FAST) - 2], "--out", str(again), *FAST]) == 0
    capsys.readouterr()
    strip = lambda d: d.model_dump(exclude={"created_at"})  # noqa: E731
    assert [strip(Decision.model_validate_json(x)) for x in again.read_text().splitlines()] == [strip(d) for d in decisions]


def test_dry_run_prints_decisions_on_stdout_and_the_summary_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--hospital-config", str(HOSPITAL), "--electives", str(ELECTIVES), "--dry-run", *FAST]) == 0
    got = capsys.readouterr()
    lines = got.out.splitlines()
    assert lines and all(Decision.model_validate_json(x).kind == "planned_admission" for x in lines)
    assert json.loads(got.err[got.err.index("{"):])["decisions"] == len(lines)


def test_publishes_to_the_decisions_topic(broker, run_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.devtools.kafka_io import read_until

    prefix = f"{run_id}."
    assert main(["plan", "--hospital-config", str(HOSPITAL), "--electives", str(ELECTIVES), *FAST,
                 "--broker-url", broker.url, "--topic-prefix", prefix, "--topic-partitions", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["published"] == summary["decisions"] > 0 and summary["topic"] == f"{prefix}decisions"
    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"],
                                     lambda rs: len(rs) >= summary["decisions"], timeout_s=30))
    assert len(records) == summary["decisions"]
    assert all(r.key == b"st-example" for r in records)
    decoded = [Decision.model_validate_json(r.value) for r in records]
    assert {d.kind for d in decoded} == {"planned_admission"}
    assert len({d.decision_id for d in decoded}) == len(decoded)


def test_the_planning_section_is_optional_and_survives_pickle() -> None:
    demo = next(iter(load_hospitals(DEMO_HOSPITAL_PATH).values()))
    assert demo.planning is None
    h = load_hospitals(HOSPITAL)["st-example"]
    for clone in (pickle.loads(pickle.dumps(h)), copy.deepcopy(h)):
        assert clone.planning == h.planning


def test_a_hospital_without_planning_section_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _hospital()
    del doc["hospitals"][0]["planning"]
    path = _write(tmp_path, "h.yaml", doc)
    assert main(["plan", "--hospital-config", str(path), "--electives", str(ELECTIVES), "--dry-run", *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{path}: hospital 'st-example': has no `planning:` section" in err


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda p: p["nurses"][0]["shifts"].update(mon=["dawn"]), "hospitals[0].planning.nurses[0].shifts.mon[0]",
     "unknown shift 'dawn'"),
    (lambda p: p["nurses"][1].update(skill_level=3), "hospitals[0].planning.nurses[1].skill_level",
     "must be below skill_levels"),
    (lambda p: p["theatres"][0].update(minutes={"monday": 480}), "hospitals[0].planning.theatres[0].minutes.monday",
     "must be 'mon', 'tue'"),
    (lambda p: p["theatres"][0].update(minutes="all day"), "hospitals[0].planning.theatres[0].minutes",
     "must be minutes every day (a number) or minutes per weekday"),
    (lambda p: p.update(units=["SURG", "ICU"]), "hospitals[0].planning.units[1]", "unknown unit code 'ICU'"),
    (lambda p: p["surgeons"].append(dict(p["surgeons"][0])), "hospitals[0].planning.surgeons[3]",
     "id 'mr-okafor' is listed twice"),
    (lambda p: p.pop("nurses"), "hospitals[0].planning.nurses", "is required"),
])
def test_malformed_planning_sections_name_the_field(tmp_path: Path, edit, field: str, problem: str) -> None:
    doc = _hospital()
    edit(doc["hospitals"][0]["planning"])
    path = _write(tmp_path, "h.yaml", doc)
    with pytest.raises(HospitalConfigError) as err:
        load_hospitals(path)
    assert err.value.file == str(path) and err.value.field == field and problem in err.value.problem


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda d: d["electives"][0].update(surgeon="dr-who"), "electives[0].surgeon", "unknown surgeon 'dr-who'"),
    (lambda d: d["electives"][1].update(workload=[1, 2, 3]), "electives[1].workload",
     "has 3 values; the stay needs one per shift (6)"),
    (lambda d: d["electives"][0].pop("latest"), "electives[0].latest", "is required for a mandatory patient"),
    (lambda d: d["electives"][0].update(latest=date(2026, 12, 1), earliest=date(2026, 11, 30)), "electives[0].latest",
     "is before start_date"),
    (lambda d: d["electives"][2].update(age_group="teen"), "electives[2].age_group", "unknown age group 'teen'"),
    (lambda d: d["electives"][2].update(unit="ICU"), "electives[2].unit", "'ICU' is not a planned unit"),
    (lambda d: d["electives"][3].update(skill=5), "electives[3].skill", "must be below skill_levels (3)"),
    (lambda d: d["electives"][3].update(patient_id="P-1001"), "electives[3].patient_id", "is also electives[0]"),
    (lambda d: d["electives"][3].update(sex="X", unit="SURG", length_of_stay=1, workload=1, skill=0), None, None),
    (lambda d: d["occupants"][0].update(room="SURG-BF"), "occupants[0].sex", "M in 'SURG-BF', a designated F bay"),
    (lambda d: d["occupants"][2].update(room="ICU-1"), "occupants[2].room", "'ICU-1' is not a room of the planned"),
    (lambda d: d["occupants"][1].update(room="SURG-SR02", sex="M") or d["occupants"].append(
        {**d["occupants"][1], "patient_id": "P-0904"}), "occupants[3].room", "'SURG-SR02' has 1 bed and more occupants"),
    (lambda d: d["electives"][0].update(colour="blue"), "electives[0].colour", "is not a known field"),
    (lambda d: d.update(days=0), "days", "greater than or equal to 1"),
    (lambda d: d.update(hospital_id="st-mary"), "hospital_id", "is 'st-mary', but the plan is for 'st-example'"),
])
def test_malformed_electives_name_the_file_and_field(tmp_path: Path, edit, field: str | None, problem: str | None) -> None:
    doc = _electives()
    edit(doc)
    path = _write(tmp_path, "e.yaml", doc)
    if field is None:  # a valid edit: X on a unit that has single rooms
        _problem(path)
        return
    with pytest.raises(PlanningInputError) as err:
        _problem(path)
    assert err.value.file == str(path) and err.value.field == field and problem in err.value.problem, str(err.value)


def test_x_with_no_single_room_on_its_unit_is_refused(tmp_path: Path) -> None:
    hospital = _hospital()
    rooms = hospital["hospitals"][0]["units"][1]["rooms"]
    hospital["hospitals"][0]["units"][1]["rooms"] = [r for r in rooms if r["type"] != "single"]
    h = _write(tmp_path, "h.yaml", hospital)
    doc = _electives()
    doc["electives"][4].update(sex="X")  # unit ORTHO, which now has only a bay
    e = _write(tmp_path, "e.yaml", doc)
    with pytest.raises(PlanningInputError, match=r"electives\[4\]: no planned room can take this patient "
                                                 r"\(a single room on unit ORTHO\)"):
        _problem(e, h)


def test_an_occupant_staying_past_the_horizon_is_clipped_to_it(tmp_path: Path) -> None:
    doc = _electives()
    doc["occupants"][0].update(days_left=9, workload=list(range(27)))  # 9 days x 3 shifts; the plan has 7 days
    _, pb = _problem(_write(tmp_path, "e.yaml", doc))
    o = pb.instance.person_ids.index("P-0901")
    assert pb.instance.length_of_stay[o] == 7 and pb.instance.workload[o, :21].tolist() == list(range(21))


def test_json_electives_and_their_errors(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(_electives(), default=str))  # dates as ISO strings, as JSON has them
    ok = _write(tmp_path, "e.json", doc)
    _, pb = _problem(ok)
    assert pb.start_date == date(2026, 12, 7) and pb.instance.n_patients == 12
    doc["electives"][0]["earliest"] = "7/12/2026"
    bad = _write(tmp_path, "bad.json", doc)
    with pytest.raises(PlanningInputError) as err:
        load_electives(bad)
    assert err.value.field == "electives[0].earliest" and "date" in err.value.problem
    broken = tmp_path / "broken.json"
    broken.write_text('{"start_date": "2026-12-07", ')
    with pytest.raises(PlanningInputError, match=r"broken.json: line 1 column \d+: invalid JSON"):
        load_electives(broken)
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PlanningInputError, match="missing.yaml: file not found"):
        load_electives(missing)


def test_instance_mode_refuses_hospital_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--instance", str(tmp_path / "i.json"), "--out", str(tmp_path / "o.json"), "--dry-run"]) == 2
    assert "go with --electives" in capsys.readouterr().err
    assert main(["plan", "--instance", str(tmp_path / "i.json"), "--quiet"]) == 2
    assert "--instance needs --out" in capsys.readouterr().err
