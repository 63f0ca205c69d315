"""The planning evaluator against the competition's own numbers, and the loaders' clear errors.

Every best-known solution of the 30 public IHTC-2024 instances must come out with no violation
and exactly its published cost; every test solution with exactly each published cost part.
"""

from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import pytest

from allocator.exceptions import AllocatorError, PlanningInputError
from allocator.planning.evaluate import COST_LABELS, evaluate
from allocator.planning.model import Solution, load_instance, load_solution

DATA = Path("/work/shared/ihtc2024")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DATA / "best_known.csv").exists():
        pytest.skip(f"{DATA} is not on this machine; cannot check against the published costs")
    out = tmp_path_factory.mktemp("ihtc2024")
    for name in ("ihtc2024_competition_instances", "best_known_solutions", "ihtc2024_test_dataset",
                 "ihtc2024_test_solutions", "ihtp_small"):
        with zipfile.ZipFile(DATA / f"{name}.zip") as z:
            for member in z.namelist():
                if member.endswith(".json") and not member.startswith("__MACOSX"):
                    (out / Path(member).name).write_bytes(z.read(member))
    return out


def _best_known() -> list[tuple[str, int]]:
    if not (DATA / "best_known.csv").exists():
        return [(f"i{i:02d}", -1) for i in range(1, 31)]
    with open(DATA / "best_known.csv", newline="") as f:
        return [(row["instance"], int(row["best_known_cost"])) for row in csv.DictReader(f)]


@pytest.mark.parametrize(("name", "cost"), _best_known())
def test_best_known_solution_cost_and_feasibility(data: Path, name: str, cost: int) -> None:
    inst = load_instance(data / f"{name}.json")
    ev = evaluate(inst, load_solution(data / f"sol_{name}.json", inst))
    assert ev.violations == dict.fromkeys(ev.violations, 0)
    assert ev.total_cost == cost


@pytest.mark.parametrize("name", [f"test{i:02d}" for i in range(1, 11)])
def test_test_solution_cost_parts(data: Path, name: str) -> None:
    inst = load_instance(data / f"{name}.json")
    path = data / f"sol_{name}.json"
    ev = evaluate(inst, load_solution(path, inst))
    published = {k: int(v) for k, v in re.findall(r"(\w+):\s*(\d+)", json.loads(path.read_text())["costs"][0])}
    ours = {COST_LABELS[part]: value for part, value in ev.costs.items()}
    assert len(published) == 9
    assert ours == {k: v for k, v in published.items() if k != "Cost"}
    assert ev.total_cost == published["Cost"]
    assert ev.feasible


def test_violations_are_counted_like_the_validator(data: Path) -> None:
    inst = load_instance(data / "i02.json")
    good = load_solution(data / "sol_i02.json", inst)
    p = int(next(i for i in range(inst.n_patients) if inst.mandatory[i] and good.admission[i] >= 0))
    adm = good.admission.copy()
    adm[p] = -1  # unschedule a mandatory patient
    ev = evaluate(inst, Solution(adm, good.room, good.theatre, good.nurse_assignments))
    assert ev.violations["mandatory_unscheduled"] == 1
    assert not ev.feasible
    # Drop every nurse assignment: each occupied room-shift becomes uncovered.
    bare = evaluate(inst, Solution(good.admission, good.room, good.theatre, good.nurse_assignments[:0]))
    assert bare.violations["uncovered_room"] > 0
    assert bare.counts["continuity_of_care"] == 0
    # Everyone in one room: capacity and gender mix break.
    room = good.room.copy()
    room[good.admission >= 0] = 0
    crowded = evaluate(inst, Solution(good.admission, room, good.theatre, good.nurse_assignments))
    assert crowded.violations["room_capacity"] > 0


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    return path


def test_instance_errors_name_file_field_problem(data: Path, tmp_path: Path) -> None:
    doc = json.loads((data / "i01.json").read_text())
    doc["patients"][3]["surgeon_id"] = "nobody"
    with pytest.raises(PlanningInputError) as err:
        load_instance(_write(tmp_path, doc))
    assert str(err.value) == f"{tmp_path / 'bad.json'}: patients[3].surgeon_id: unknown surgeon 'nobody'"
    assert isinstance(err.value, AllocatorError) and err.value.user_facing

    doc = json.loads((data / "i01.json").read_text())
    del doc["rooms"][1]["capacity"]
    with pytest.raises(PlanningInputError, match=r"bad\.json: rooms\[1\]\.capacity: field required"):
        load_instance(_write(tmp_path, doc))

    doc = json.loads((data / "i01.json").read_text())
    doc["patients"][0]["workload_produced"] = [1]
    with pytest.raises(PlanningInputError, match=r"patients\[0\]\.workload_produced: has 1 shifts, the stay needs"):
        load_instance(_write(tmp_path, doc))

    bad = tmp_path / "broken.json"
    bad.write_text("{\"days\": 3,")
    with pytest.raises(PlanningInputError, match=r"broken\.json: line 1 column \d+: invalid JSON"):
        load_instance(bad)
    with pytest.raises(PlanningInputError, match="file not found"):
        load_instance(tmp_path / "missing.json")


def test_solution_errors_name_file_field_problem(data: Path, tmp_path: Path) -> None:
    inst = load_instance(data / "i01.json")
    doc = json.loads((data / "sol_i01.json").read_text())
    doc["patients"][2]["room"] = "r99"
    doc["patients"][2]["admission_day"] = 1
    with pytest.raises(PlanningInputError, match=r"patients\[2\]\.room: unknown or missing room 'r99'"):
        load_solution(_write(tmp_path, doc), inst)
    doc = json.loads((data / "sol_i01.json").read_text())
    doc["patients"][0]["admission_day"] = 99
    with pytest.raises(PlanningInputError, match=r"patients\[0\]\.admission_day: day 99 is outside the horizon"):
        load_solution(_write(tmp_path, doc), inst)


def test_written_solution_reads_back_with_the_same_cost(data: Path, tmp_path: Path) -> None:
    from allocator.planning.model import write_solution

    inst = load_instance(data / "i07.json")
    sol = load_solution(data / "sol_i07.json", inst)
    before = evaluate(inst, sol)
    write_solution(tmp_path / "again.json", inst, sol, [before.cost_line()])
    again = load_solution(tmp_path / "again.json", inst)
    assert evaluate(inst, again) == before
    assert json.loads((tmp_path / "again.json").read_text())["costs"] == [before.cost_line()]
    assert not list(tmp_path.glob("*.tmp"))
