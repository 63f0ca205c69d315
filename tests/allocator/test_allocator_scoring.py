"""Scoring beyond feasibility: the `allocation:` config section, each cost term of a (patient, bed)
pair, the reserves, and the hard-constraint breach checker that referees every placement."""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, HospitalConfigError, load_hospitals
from allocator.placement import BedSnapshot, PatientToPlace, hard_breaches
from allocator.scoring import ScoringRound, needed_features
from allocator.waiting import WaitingPatient
from allocator.weights import AllocationWeights, ScarceBedCosts
from tests.allocator.test_allocator_placement import HEAD, unit

SMALL = Path(__file__).parents[1] / "fixtures" / "small_hospital.yaml"


@pytest.fixture
def build(tmp_path: Path):
    def _build(*units: str, allocation: str = "") -> Hospital:
        path = tmp_path / "hospital.yaml"
        head = HEAD.replace("    units:\n", textwrap.indent(allocation, " " * 4) + "    units:\n") if allocation else HEAD
        path.write_text(head + textwrap.indent("\n".join(units), " " * 6) + "\n")
        return load_hospitals(path)["t"]

    return _build


def waiting(target: str = "MED", *, age: float = 50, sex: str = "F", needs: Iterable[str] = (), acuity: int | None = 3,
            waited: float = 0.0, enc: str = "e1") -> WaitingPatient:
    return WaitingPatient(enc, age, sex, target, frozenset(needs), acuity, waited)


def column(r: ScoringRound, bed_id: str) -> int:
    return [r.bed(i).bed_id for i in range(len(r.cols))].index(bed_id)


# ---------------------------------------------------------------- the allocation section


def test_no_allocation_section_gives_the_documented_defaults() -> None:
    small = load_hospitals(SMALL)["small"]
    assert small.allocation == AllocationWeights()


def test_demo_allocation_is_read_and_survives_pickling() -> None:
    demo = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    a = demo.allocation
    assert a.overflow > a.scarce_beds.single_room, "a side room on the right ward must beat outlying"
    assert a.scarce_beds.negative_pressure + a.scarce_beds.single_room > a.overflow
    assert [r.name for r in a.reserves] == ["ICU", "telemetry"]
    assert all(r.max_acuity == 2 for r in a.reserves)
    assert pickle.loads(pickle.dumps(demo)).allocation == a


def test_every_demo_weight_has_a_comment_saying_why() -> None:
    text = DEMO_HOSPITAL_PATH.read_text()
    section = text.split("    allocation:\n", 1)[1].split("    units:\n", 1)[0]
    lines = [line for line in section.splitlines() if line.strip() and not line.strip().startswith("#")]
    keys = [line for line in lines if ":" in line and not line.strip().endswith(":")]
    commented = 0
    for i, line in enumerate(section.splitlines()):
        if line in keys and ("#" in line or section.splitlines()[i - 1].strip().startswith("#")):
            commented += 1
    assert commented == len(keys), "each allocation value needs a comment on its line or just above"


def test_partial_section_keeps_other_defaults(build) -> None:
    h = build(unit("MED", "{id: SR, type: single}"),
              allocation="allocation:\n  overflow: 12\n  scarce_beds: {telemetry: 1.5}\n")
    assert h.allocation.overflow == 12.0
    assert h.allocation.scarce_beds == replace(ScarceBedCosts(), telemetry=1.5)
    assert h.allocation.priority_acuity == AllocationWeights().priority_acuity


BROKEN_ALLOCATION = [
    ("unknown key", "allocation:\n  overflw: 3\n", "allocation.overflw", ["not a known field"]),
    ("negative cost", "allocation:\n  overflow: -1\n", "allocation.overflow", ["greater than or equal to 0"]),
    ("infinite cost", "allocation:\n  workload: .inf\n", "allocation.workload", ["finite"]),
    ("cost as text", "allocation:\n  overflow: high\n", "allocation.overflow", ["number", "'high'"]),
    ("missing ESI level", "allocation:\n  priority_acuity: {1: 60, 2: 40, 3: 20, 4: 10}\n",
     "allocation.priority_acuity", ["every ESI level", "5"]),
    ("rising priority", "allocation:\n  priority_acuity: {1: 60, 2: 40, 3: 50, 4: 10, 5: 5}\n",
     "allocation.priority_acuity.3", ["must not exceed ESI 2"]),
    ("ESI out of range", "allocation:\n  acuity_weights: {0: 1, 1: 4, 2: 3, 3: 2, 4: 1, 5: 1}\n",
     "allocation.acuity_weights", ["greater than or equal to 1", "got 0"]),
    ("reserve of unknown unit", "allocation:\n  reserves: [{unit: ICU, keep: 1, max_acuity: 2, cost: 9}]\n",
     "allocation.reserves[0].unit", ["unknown unit", "'ICU'"]),
    ("reserve of both", "allocation:\n  reserves: [{unit: MED, feature: telemetry, keep: 1, max_acuity: 2, cost: 9}]\n",
     "allocation.reserves[0]", ["exactly one"]),
    ("reserve of unknown feature", "allocation:\n  reserves: [{feature: oxygen, keep: 1, max_acuity: 2, cost: 9}]\n",
     "allocation.reserves[0].feature", ["'oxygen'"]),
    ("reserve keeping none", "allocation:\n  reserves: [{unit: MED, keep: 0, max_acuity: 2, cost: 9}]\n",
     "allocation.reserves[0].keep", ["greater than or equal to 1"]),
    ("reserve for everyone", "allocation:\n  reserves: [{unit: MED, keep: 1, max_acuity: 5, cost: 9}]\n",
     "allocation.reserves[0].max_acuity", ["less than or equal to 4"]),
    ("reserve twice", "allocation:\n  reserves: [{unit: MED, keep: 1, max_acuity: 2, cost: 9},"
                      " {unit: MED, keep: 2, max_acuity: 1, cost: 9}]\n",
     "allocation.reserves[1]", ["already has a reserve"]),
]


@pytest.mark.parametrize(("section", "field", "words"), [c[1:] for c in BROKEN_ALLOCATION],
                         ids=[c[0] for c in BROKEN_ALLOCATION])
def test_broken_allocation_names_the_field(build, tmp_path: Path, section: str, field: str, words: list[str]) -> None:
    with pytest.raises(HospitalConfigError) as info:
        build(unit("MED", "{id: SR, type: single}"), allocation=section)
    message = str(info.value)
    assert f": hospitals[0].{field}" in message, message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- cost terms


def test_target_unit_is_free_and_overflow_units_cost_more_in_configured_order(build) -> None:
    h = build(
        unit("A", "{id: A1, type: single}", serves=["MED"], overflow=["C", "B"]),
        unit("B", "{id: B1, type: single}", serves=["SURG"]),
        unit("C", "{id: C1, type: single}", serves=["ORTHO"]),
    )
    r = ScoringRound(h, {}, ["MED"])
    row = r.row(waiting("MED", sex="X"))  # sex X: the single rooms are needed, so no scarce cost
    w = h.allocation
    assert row.terms["unit"][column(r, "A1")] == 0
    assert row.terms["unit"][column(r, "C1")] == w.overflow
    assert row.terms["unit"][column(r, "B1")] == w.overflow + w.overflow_step
    assert row.terms["scarce"].sum() == 0
    assert row.feasible.all()


def test_scarce_features_cost_only_when_not_needed(build) -> None:
    h = build(unit("MED", "{id: NP, type: single, negative_pressure: true}", "{id: SR, type: single, telemetry: true}",
                   "{id: B1, type: bay, sex: F, beds: 1, bariatric: true, near_station: true}"))
    r = ScoringRound(h, {}, ["MED"])
    s = h.allocation.scarce_beds
    plain = r.row(waiting())
    assert plain.terms["scarce"][column(r, "NP")] == s.negative_pressure + s.single_room
    assert plain.terms["scarce"][column(r, "SR")] == s.single_room + s.telemetry
    assert plain.terms["scarce"][column(r, "B1-A")] == s.bariatric + s.near_station
    contact = r.row(waiting(needs={"contact_isolation"}))
    assert contact.terms["scarce"][column(r, "NP")] == s.negative_pressure, "the single room is needed"
    airborne = r.row(waiting(needs={"airborne_isolation"}))
    assert airborne.terms["scarce"][column(r, "NP")] == 0, "a negative-pressure room is a single room"
    assert not airborne.feasible[column(r, "SR")]
    assert needed_features(waiting(sex="X")) == {"single_room"}


def test_close_observation_prefers_beds_near_the_station(build) -> None:
    h = build(unit("MED", "{id: NEAR, type: bay, sex: F, beds: 1, near_station: true}",
                   "{id: FAR, type: bay, sex: F, beds: 1}"))
    r = ScoringRound(h, {}, ["MED"])
    watched = r.row(waiting(needs={"close_observation"}))
    near, far = column(r, "NEAR-A"), column(r, "FAR-A")
    assert watched.cost[near] < watched.cost[far]
    assert watched.terms["close_observation"][far] == h.allocation.close_observation_far
    assert watched.terms["scarce"][near] == 0, "near the station is what they need"
    other = r.row(waiting())
    assert other.cost[far] < other.cost[near], "others leave the near beds free"


def test_workload_prefers_the_unit_with_less_acuity_per_nurse_and_weighs_sicker_patients_more(build) -> None:
    h = build(
        unit("A", "{id: A1, type: single}", serves=["MED"], overflow=[]),
        unit("B", "{id: B1, type: single}", serves=["MED"]),
    )
    loads = {"A": 24.0, "B": 8.0}  # both units have 4 nurses: 6 vs 2 points per nurse
    r = ScoringRound(h, {}, ["MED"], loads=loads)
    sick, well = r.row(waiting(acuity=1)), r.row(waiting(acuity=5))
    a, b = column(r, "A1"), column(r, "B1")
    assert sick.terms["workload"][b] == 0 and well.terms["workload"][b] == 0, "relative to the lightest unit"
    w = h.allocation
    assert sick.terms["workload"][a] == pytest.approx(w.workload * w.acuity_weights[0] * 4.0)
    assert sick.terms["workload"][a] > well.terms["workload"][a] > 0


def test_reserve_keeps_the_last_free_beds_for_sicker_patients(build) -> None:
    h = build(unit("ICU", "{id: C, type: single, count: 3}", serves=["ICU"]),
              allocation="allocation:\n  reserves: [{unit: ICU, keep: 1, max_acuity: 2, cost: 40}]\n")
    r = ScoringRound(h, {}, ["ICU"])
    esi3, esi2 = r.row(waiting("ICU", acuity=3)), r.row(waiting("ICU", acuity=2))
    assert [bool(m) for m in r.reserved[0]] == [False, False, True], "the last free bed in config order"
    assert esi3.terms["reserve"].tolist() == [0, 0, 40]
    assert esi2.terms["reserve"].tolist() == [0, 0, 0]
    unknown = r.row(waiting("ICU", acuity=None))
    assert unknown.terms["reserve"].tolist() == [0, 0, 40], "unknown acuity is taken as ESI 3"
    r2 = ScoringRound(h, {"C03": BedSnapshot("occupied", "M"), "C01": BedSnapshot("dirty")}, ["ICU"])
    assert [r2.bed(i).bed_id for i in range(len(r2.cols))] == ["C02"]
    assert r2.row(waiting("ICU", acuity=4)).terms["reserve"].tolist() == [40], "the only free bed is the last"


def test_priority_grows_with_acuity_and_time_waited_up_to_the_cap() -> None:
    w = AllocationWeights()
    assert w.priority(1, 0) > w.priority(2, 0) > w.priority(3, 0) > w.priority(4, 0) > w.priority(5, 0)
    assert w.priority(3, 60) == w.priority(3, 0) + w.priority_per_hour
    assert w.priority(3, 10_000 * 60) == w.priority(3, w.priority_max_hours * 60)
    assert w.priority(None, 0) == w.priority(w.unknown_acuity, 0)
    assert w.max_priority >= w.priority(1, 10**9)


def test_rows_of_the_same_kind_share_terms_but_not_priority(build) -> None:
    h = build(unit("MED", "{id: SR, type: single, count: 2}"))
    r = ScoringRound(h, {}, ["MED"])
    a, b = r.row(waiting(waited=0, enc="a")), r.row(waiting(waited=120, enc="b"))
    assert a.terms["scarce"] is b.terms["scarce"]
    assert (a.cost - b.cost == pytest.approx(2 * h.allocation.priority_per_hour))
    with pytest.raises(ValueError):
        a.feasible[0] = False  # shared arrays are read-only


def test_waiting_patient_validates_acuity_and_probability() -> None:
    with pytest.raises(ValueError):
        waiting(acuity=6)
    with pytest.raises(ValueError):
        WaitingPatient("e", 40, "F", "MED", frozenset(), 2, 0.0, 1.2)
    assert waiting(needs=["telemetry"]).needs == frozenset({"telemetry"})


# ---------------------------------------------------------------- the breach checker


def test_hard_breaches_lists_every_broken_rule_with_one_sentence_each(build) -> None:
    h = build(
        unit("MED", "{id: BM, type: bay, sex: M, beds: 2}", "{id: FX, type: bay, sex: flexible, beds: 2}",
             "{id: NP, type: single, negative_pressure: true}", overflow=["PAED"]),
        unit("PAED", "{id: P1, type: single}", serves=["PAEDIATRICS"], paediatric=True),
        unit("SURG", "{id: S1, type: single}", serves=["SURGERY"]),
    )
    woman = PatientToPlace("e", 40.0, "F", "MED", frozenset({"airborne_isolation", "telemetry"}))
    codes = [r.code for r in hard_breaches(woman, h.bed("BM-A"), h, {})]  # type: ignore[arg-type]  # the fixture's beds exist
    assert codes == ["needs_negative_pressure", "needs_telemetry", "bay_sex"]
    assert [r.code for r in hard_breaches(woman, h.bed("P1"), h, {})] == [  # type: ignore[arg-type]  # the fixture's beds exist
        "age_mismatch", "needs_negative_pressure", "needs_telemetry"]
    assert [r.code for r in hard_breaches(woman, h.bed("S1"), h, {})][0] == "not_candidate_unit"  # type: ignore[arg-type]  # the fixture's beds exist
    child = PatientToPlace("c", 6.0, "M", "MED", frozenset())
    assert [r.code for r in hard_breaches(child, h.bed("BM-A"), h, {})] == ["age_mismatch"]  # type: ignore[arg-type]  # the fixture's beds exist
    for r in hard_breaches(woman, h.bed("BM-A"), h, {}):  # type: ignore[arg-type]  # the fixture's beds exist
        assert r.text.endswith(".") and ". " not in r.text and "BM-A" in r.text


def test_hard_breaches_follow_flexible_bay_occupants_and_sex_x(build) -> None:
    h = build(unit("MED", "{id: FX, type: bay, sex: flexible, beds: 2}", "{id: SR, type: single}"))
    man = PatientToPlace("m", 50.0, "M", "MED", frozenset())
    fx_b = h.bed("FX-B")
    assert hard_breaches(man, fx_b, h, {}) == []  # type: ignore[arg-type]  # the fixture's beds exist
    assert hard_breaches(man, fx_b, h, {"FX-A": BedSnapshot("held", "M")}) == []  # type: ignore[arg-type]  # the fixture's beds exist
    assert [r.code for r in hard_breaches(man, fx_b, h, {"FX-A": BedSnapshot("occupied", "F")})] == ["bay_sex"]  # type: ignore[arg-type]  # the fixture's beds exist
    assert [r.code for r in hard_breaches(man, fx_b, h, {"FX-A": BedSnapshot("occupied", None)})] == ["bay_sex"]  # type: ignore[arg-type]  # the fixture's beds exist
    assert hard_breaches(man, fx_b, h, {"FX-A": BedSnapshot("dirty")}) == [], "an empty dirty bed holds no one"  # type: ignore[arg-type]  # the fixture's beds exist
    x = PatientToPlace("x", 50.0, "X", "MED", frozenset())
    assert [r.code for r in hard_breaches(x, fx_b, h, {})] == ["bay_sex"]  # type: ignore[arg-type]  # the fixture's beds exist
    assert hard_breaches(x, h.bed("SR"), h, {}) == []  # type: ignore[arg-type]  # the fixture's beds exist


def test_round_feasibility_agrees_with_the_breach_checker_on_the_demo() -> None:
    """Every (kind of patient, available bed) pair: feasible in the matrix iff no breach."""
    h = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    rng = np.random.default_rng(5)
    beds: dict[str, BedSnapshot] = {}
    for b in h.beds:
        roll = rng.random()
        if roll < 0.6:
            beds[b.bed_id] = BedSnapshot("occupied", b.bay_sex or str(rng.choice(["F", "M", "X"])))
        elif roll < 0.65:
            beds[b.bed_id] = BedSnapshot("dirty")
    labels = sorted({label for u in h.units for label in u.serves})
    r = ScoringRound(h, beds, labels)
    kinds = [("F", 40.0, ()), ("M", 70.0, ("contact_isolation",)), ("X", 30.0, ()), ("F", 8.0, ()),
             ("M", 60.0, ("airborne_isolation", "telemetry")), ("F", 55.0, ("bariatric",))]
    checked = 0
    for label in labels:
        for sex, age, needs in kinds:
            wp = waiting(label, age=age, sex=sex, needs=needs)
            row = r.row(wp)
            assert (row.cost[row.feasible] >= 0).all(), "the matching's proof of maximum cardinality needs it"
            for c in range(len(r.cols)):
                ok = not hard_breaches(wp.to_place(), r.bed(c), h, beds)
                assert bool(row.feasible[c]) == ok, (label, sex, age, needs, r.bed(c).bed_id)
                checked += 1
    assert checked > 5000
