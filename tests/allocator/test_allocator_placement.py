"""Bed placement: one test per hard constraint, the awkward combinations, the order of
overflow, the wording of reasons, and a randomised run on the demo hospital checked by an
independent referee."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType

import pytest

from allocator.hospital import DEMO_HOSPITAL_PATH, Hospital, load_hospitals
from allocator.placement import (
    Assignment,
    BedSnapshot,
    NoBed,
    PatientToPlace,
    Placement,
    candidate_units,
    place,
)

HEAD = """\
hospitals:
  - hospital_id: t
    name: Test Hospital
    roster: {bed_manager: "1", critical_care_outreach: "2", rapid_response: "3"}
    units:
"""


def unit(
    code: str,
    *rooms: str,
    serves: Iterable[str] | None = None,
    overflow: Iterable[str] = (),
    paediatric: bool = False,
) -> str:
    """One unit as YAML; each room is a flow mapping such as `{id: B1, type: bay, sex: F, beds: 4}`."""
    serves = [code] if serves is None else list(serves)
    return "\n".join(
        [
            f"- code: {code}",
            f"  name: Ward {code}",
            f"  serves: [{', '.join(serves)}]",
            f"  overflow: [{', '.join(overflow)}]",
            f"  paediatric: {'true' if paediatric else 'false'}",
            "  nurses_on_duty: 4",
            "  roster: {nurse_in_charge: '10', ward_doctor: '11'}",
            "  rooms:",
            *[f"    - {room}" for room in rooms],
        ]
    )


@pytest.fixture
def build(tmp_path: Path):
    def _build(*units: str) -> Hospital:
        path = tmp_path / "hospital.yaml"
        path.write_text(HEAD + textwrap.indent("\n".join(units), " " * 6) + "\n")
        return load_hospitals(path)["t"]

    return _build


def patient(
    target: str = "MED", *, age: float = 50, sex: str = "F", needs: Iterable[str] = ()
) -> PatientToPlace:
    return PatientToPlace(encounter_id="enc-1", age=float(age), sex=sex, target_unit=target, needs=frozenset(needs))


def occupied(sex: str | None) -> BedSnapshot:
    return BedSnapshot("occupied", occupant_sex=sex)


def codes(result: Placement) -> list[str]:
    return [reason.code for reason in result.reasons]


def assigned(result: Placement) -> Assignment:
    assert isinstance(result, Assignment), f"expected a bed, got {result}"
    check_sentences(result)
    return result


def refused(result: Placement) -> NoBed:
    assert isinstance(result, NoBed), f"expected no bed, got {result}"
    check_sentences(result)
    return result


def check_sentences(result: Placement) -> None:
    assert result.reasons
    for reason in result.reasons:
        assert reason.code and reason.code == reason.code.lower() and " " not in reason.code
        assert reason.text.endswith("."), reason.text
        assert ". " not in reason.text and "\n" not in reason.text, f"not one sentence: {reason.text}"


SINGLE = "{id: SR, type: single}"
NP = "{id: NP, type: single, negative_pressure: true}"


# ---------------------------------------------------------------- candidate units and overflow


def test_candidate_units_serving_first_then_overflow_without_duplicates(build) -> None:
    h = build(
        unit("A", SINGLE.replace("SR", "A1"), serves=["MEDICINE"], overflow=["B", "C"]),
        unit("B", SINGLE.replace("SR", "B1"), serves=["MEDICINE"], overflow=["D", "C"]),
        unit("C", SINGLE.replace("SR", "C1"), serves=["SURGERY"]),
        unit("D", SINGLE.replace("SR", "D1"), serves=["SURGERY"]),
    )
    assert [u.code for u in candidate_units(h, "MEDICINE")] == ["A", "B", "C", "D"]
    assert [u.code for u in candidate_units(h, "SURGERY")] == ["C", "D"]
    assert candidate_units(h, "ICU") == ()


def test_fresh_hospital_gives_first_suitable_bed_of_target_unit(build) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: F, beds: 4}", "{id: SR, type: single, count: 2}"))
    woman = assigned(place(patient(), h, {}))
    assert (woman.bed_id, woman.unit, woman.overflow) == ("B1-A", "MED", False)
    assert codes(woman)[0] == "target_unit" and "MED" in woman.reasons[0].text
    man = assigned(place(patient(sex="M"), h, {}))
    assert man.bed_id == "SR01", "a female bay is skipped for a man, the side room is next"


@pytest.mark.parametrize("status", ["occupied", "held", "dirty", "cleaning", "blocked", "closed", "clean"])
def test_only_available_beds_are_chosen(build, status: str) -> None:
    h = build(unit("MED", "{id: SR, type: single, count: 2}"))
    beds = {"SR01": BedSnapshot(status, occupant_sex="F" if status in ("occupied", "held") else None)}
    assert assigned(place(patient(), h, beds)).bed_id == "SR02"
    beds["SR02"] = BedSnapshot(status)
    result = refused(place(patient(), h, beds))
    assert codes(result) == ["no_clean_bed"]
    text = result.reasons[0].text
    assert text.startswith("Ward MED") and "2 beds" in text
    word = {"cleaning": "cleaned"}.get(status, status)
    assert word in text, text


def test_no_clean_bed_counts_each_status(build) -> None:
    h = build(unit("MED", "{id: SR, type: single, count: 5}"))
    beds = {
        "SR01": occupied("F"),
        "SR02": occupied("M"),
        "SR03": BedSnapshot("dirty"),
        "SR04": BedSnapshot("held", "F"),
        "SR05": BedSnapshot("closed"),
    }
    text = refused(place(patient(), h, beds)).reasons[0].text
    for part in ("5 beds", "2 occupied", "1 dirty", "1 held", "1 closed"):
        assert part in text, text


def test_overflow_follows_the_listed_order_not_config_order(build) -> None:
    h = build(
        unit("A", "{id: A1, type: single}", serves=["MEDICINE"], overflow=["C", "B"]),
        unit("B", "{id: B1, type: single}", serves=["SURGERY"]),
        unit("C", "{id: C1, type: single}", serves=["ORTHO"]),
    )
    assert assigned(place(patient("MEDICINE"), h, {})).unit == "A"
    first = assigned(place(patient("MEDICINE"), h, {"A1": occupied("M")}))
    assert (first.unit, first.bed_id, first.overflow) == ("C", "C1", True)
    assert codes(first)[0] == "overflow_unit"
    assert "Ward C" in first.reasons[0].text and "MEDICINE" in first.reasons[0].text
    assert "Ward A" in first.reasons[0].text and "occupied" in first.reasons[0].text
    second = assigned(place(patient("MEDICINE"), h, {"A1": occupied("M"), "C1": BedSnapshot("dirty")}))
    assert (second.unit, second.overflow) == ("B", True)
    assert "Ward A" in second.reasons[0].text and "Ward C" in second.reasons[0].text


def test_second_serving_unit_is_not_overflow(build) -> None:
    h = build(
        unit("A", "{id: A1, type: single}", serves=["MEDICINE"]),
        unit("B", "{id: B1, type: single}", serves=["MEDICINE"]),
    )
    result = assigned(place(patient("MEDICINE"), h, {"A1": occupied("F")}))
    assert (result.unit, result.overflow) == ("B", False)
    assert codes(result)[0] == "target_unit" and "Ward A" in result.reasons[0].text


def test_long_overflow_chains_name_the_first_skipped_units_and_count_the_rest(build) -> None:
    codes_ = [f"U{i}" for i in range(6)]
    h = build(
        unit("U0", "{id: U0-1, type: single}", serves=["MEDICINE"], overflow=codes_[1:]),
        *[unit(code, f"{{id: {code}-1, type: single}}", serves=["OTHER"]) for code in codes_[1:]],
    )
    full = {f"{code}-1": occupied("M") for code in codes_[:5]}
    head = assigned(place(patient("MEDICINE"), h, full)).reasons[0].text
    assert "Ward U5" in head and all(f"Ward {c}" in head for c in codes_[:3])
    assert "Ward U3" not in head and "2 more units had none either" in head


def test_no_bed_gives_one_reason_per_candidate_unit_in_order(build) -> None:
    h = build(
        unit("A", "{id: A1, type: single}", serves=["MEDICINE"], overflow=["C", "B"]),
        unit("B", "{id: B1, type: single}", serves=["SURGERY"]),
        unit("C", "{id: C1, type: single}", serves=["ORTHO"]),
    )
    full = {bed.bed_id: occupied("M") for bed in h.beds}
    result = refused(place(patient("MEDICINE"), h, full))
    assert [r.text.split(" (")[0].split(":")[0] for r in result.reasons] == ["Ward A", "Ward C", "Ward B"]
    assert codes(result) == ["no_clean_bed"] * 3


def test_no_unit_serves_the_label(build) -> None:
    h = build(unit("MED", SINGLE))
    result = refused(place(patient("DERMATOLOGY"), h, {}))
    assert codes(result) == ["no_unit_serves"]
    assert "DERMATOLOGY" in result.reasons[0].text


# ---------------------------------------------------------------- isolation, telemetry, bariatric


def test_airborne_isolation_needs_negative_pressure_room(build) -> None:
    h = build(unit("MED", SINGLE, NP))
    result = assigned(place(patient(needs={"airborne_isolation"}), h, {}))
    assert result.bed_id == "NP"
    reason = result.reasons[codes(result).index("needs_negative_pressure")]
    assert "egative-pressure" in reason.text and "airborne" in reason.text


def test_airborne_isolation_overflows_when_the_only_negative_pressure_room_is_taken(build) -> None:
    h = build(
        unit("RESP", SINGLE, NP, serves=["MEDICINE"], overflow=["ICU"]),
        unit("ICU", "{id: ICU-NP, type: single, negative_pressure: true}", serves=["ICU"]),
    )
    airborne = patient("MEDICINE", needs={"airborne_isolation"})
    moved = assigned(place(airborne, h, {"NP": occupied("M")}))
    assert (moved.bed_id, moved.unit, moved.overflow) == ("ICU-NP", "ICU", True)
    assert "negative-pressure" in moved.reasons[0].text

    result = refused(place(airborne, h, {"NP": occupied("M"), "ICU-NP": occupied("F")}))
    assert codes(result) == ["needs_negative_pressure", "no_clean_bed"]
    text = result.reasons[0].text
    assert text.startswith("Ward RESP") and "1 clean bed" in text
    assert "negative-pressure room" in text and "airborne isolation" in text


@pytest.mark.parametrize("need", ["contact_isolation", "droplet_isolation"])
def test_contact_or_droplet_isolation_needs_single_room(build, need: str) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: F, beds: 4}", SINGLE))
    result = assigned(place(patient(needs={need}), h, {}))
    assert result.bed_id == "SR"
    reason = result.reasons[codes(result).index("needs_single_room")]
    assert need.split("_")[0] in reason.text

    refusal = refused(place(patient(needs={need}), h, {"SR": occupied("M")}))
    assert codes(refusal) == ["needs_single_room"]
    assert "4 clean beds" in refusal.reasons[0].text and "single room" in refusal.reasons[0].text


def test_negative_pressure_room_is_also_a_single_room(build) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: F, beds: 4}", NP))
    assert assigned(place(patient(needs={"droplet_isolation"}), h, {})).bed_id == "NP"


def test_telemetry_needs_a_telemetry_bed(build) -> None:
    h = build(unit("CCU", SINGLE, "{id: B1, type: bay, sex: F, beds: 4, telemetry: true}"))
    result = assigned(place(patient("CCU", needs={"telemetry"}), h, {}))
    assert result.bed_id == "B1-A" and "needs_telemetry" in codes(result)
    refusal = refused(place(patient("CCU", needs={"telemetry"}), h, {f"B1-{x}": occupied("F") for x in "ABCD"}))
    assert codes(refusal) == ["needs_telemetry"] and "telemetry" in refusal.reasons[0].text


def test_telemetry_and_contact_isolation_together(build) -> None:
    h = build(
        unit(
            "CCU",
            "{id: SR-PLAIN, type: single}",
            "{id: B1, type: bay, sex: F, beds: 4, telemetry: true}",
            "{id: SR-TEL, type: single, telemetry: true}",
        )
    )
    both = patient("CCU", needs={"telemetry", "contact_isolation"})
    result = assigned(place(both, h, {}))
    assert result.bed_id == "SR-TEL"
    assert {"needs_single_room", "needs_telemetry"} <= set(codes(result))
    refusal = refused(place(both, h, {"SR-TEL": occupied("M")}))
    assert codes(refusal) == ["needs_telemetry"], "single rooms filter first, then telemetry leaves none"
    assert "1 clean bed in a single room" in refusal.reasons[0].text


def test_bariatric_needs_a_bariatric_bed_even_inside_a_bay(build) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: F, beds: [{}, {bariatric: true}, {}]}"))
    result = assigned(place(patient(needs={"bariatric"}), h, {}))
    assert result.bed_id == "B1-B" and "needs_bariatric" in codes(result)
    refusal = refused(place(patient(needs={"bariatric"}), h, {"B1-B": occupied("F")}))
    assert codes(refusal) == ["needs_bariatric"] and "2 clean beds" in refusal.reasons[0].text


def test_needs_without_a_bed_feature_are_ignored(build) -> None:
    h = build(unit("MED", SINGLE))
    needs = {"respiratory_support", "close_observation", "something_new"}
    assert assigned(place(patient(needs=needs), h, {})).bed_id == "SR"


# ---------------------------------------------------------------- age


def test_adult_cannot_go_on_a_paediatric_unit(build) -> None:
    h = build(unit("PAED", SINGLE, serves=["PAEDIATRICS"], paediatric=True))
    result = refused(place(patient("PAEDIATRICS", age=40), h, {}))
    assert codes(result) == ["age_mismatch"]
    assert "40-year-old adult" in result.reasons[0].text and "paediatric" in result.reasons[0].text


def test_child_cannot_go_on_an_adult_unit(build) -> None:
    h = build(unit("MED", SINGLE))
    result = refused(place(patient(age=7), h, {}))
    assert codes(result) == ["age_mismatch"]
    assert "7-year-old child" in result.reasons[0].text and "adult unit" in result.reasons[0].text
    assert "6-month-old" in refused(place(patient(age=0.5), h, {})).reasons[0].text


@pytest.mark.parametrize(("age", "adult"), [(16.0, True), (15.99, False), (0.1, False), (95, True)])
def test_sixteen_is_the_adult_boundary(build, age: float, adult: bool) -> None:
    h = build(
        unit("MED", "{id: M1, type: single}", serves=["X"]),
        unit("PAED", "{id: P1, type: single}", serves=["Y"], paediatric=True),
    )
    assert isinstance(place(patient("X", age=age), h, {}), Assignment) is adult
    assert isinstance(place(patient("Y", age=age), h, {}), Assignment) is not adult


def test_child_skips_adult_unit_for_a_paediatric_overflow(build) -> None:
    h = build(
        unit("ORTHO", "{id: O1, type: single}", overflow=["PAED"]),
        unit("PAED", "{id: P1, type: single}", serves=["PAEDIATRICS"], paediatric=True),
    )
    result = assigned(place(patient("ORTHO", age=9), h, {}))
    assert (result.unit, result.overflow) == ("PAED", True)
    assert "9-year-old" in result.reasons[0].text


def test_age_is_checked_before_availability(build) -> None:
    h = build(unit("PAED", SINGLE, paediatric=True))
    assert codes(refused(place(patient("PAED", age=30), h, {"SR": occupied("F")}))) == ["age_mismatch"]


# ---------------------------------------------------------------- same-sex bays


def test_woman_with_only_male_bays_free(build) -> None:
    h = build(
        unit("MED", "{id: B1, type: bay, sex: M, beds: 2}", "{id: B2, type: bay, sex: M, beds: 4}", SINGLE)
    )
    result = refused(place(patient(sex="F"), h, {"SR": occupied("F")}))
    assert codes(result) == ["bay_sex"]
    text = result.reasons[0].text
    assert "6 clean beds" in text and "male bays" in text and "female" in text
    assert assigned(place(patient(sex="M"), h, {"SR": occupied("F")})).bed_id == "B1-A"


def test_designated_bay_matching_sex_is_explained(build) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: F, beds: 4}"))
    result = assigned(place(patient(sex="F"), h, {"B1-A": occupied("F")}))
    assert result.bed_id == "B1-B"
    assert "female bay" in result.reasons[codes(result).index("bay_sex")].text


@pytest.mark.parametrize("status", ["occupied", "held"])
def test_flexible_bay_holding_a_man_refuses_a_woman_but_accepts_a_man(build, status: str) -> None:
    h = build(unit("MED", "{id: FX, type: bay, sex: flexible, beds: 4}"))
    beds = {"FX-A": BedSnapshot(status, occupant_sex="M")}
    refusal = refused(place(patient(sex="F"), h, beds))
    assert codes(refusal) == ["bay_sex"] and "flexible" in refusal.reasons[0].text
    assert "3 clean beds" in refusal.reasons[0].text
    man = assigned(place(patient(sex="M"), h, beds))
    assert man.bed_id == "FX-B"
    assert "flexible" in man.reasons[codes(man).index("bay_sex")].text


def test_empty_flexible_bay_takes_either_sex_and_ignores_beds_that_are_not_occupied(build) -> None:
    h = build(unit("MED", "{id: FX, type: bay, sex: flexible, beds: 3}"))
    for sex in ("F", "M"):
        assert assigned(place(patient(sex=sex), h, {})).bed_id == "FX-A"
    stale = {"FX-A": BedSnapshot("dirty", occupant_sex="M"), "FX-B": BedSnapshot("blocked")}
    assert assigned(place(patient(sex="F"), h, stale)).bed_id == "FX-C"


def test_flexible_bay_with_a_woman_sends_a_woman_there_and_a_man_elsewhere(build) -> None:
    h = build(
        unit("MED", "{id: FX, type: bay, sex: flexible, beds: 2}", "{id: FY, type: bay, sex: flexible, beds: 2}")
    )
    beds = {"FX-A": occupied("F")}
    assert assigned(place(patient(sex="F"), h, beds)).bed_id == "FX-B"
    assert assigned(place(patient(sex="M"), h, beds)).bed_id == "FY-A"


def test_flexible_bay_occupant_of_unrecorded_sex_blocks_both_sexes(build) -> None:
    h = build(unit("MED", "{id: FX, type: bay, sex: flexible, beds: 2}"))
    for sex in ("F", "M"):
        assert codes(refused(place(patient(sex=sex), h, {"FX-A": occupied(None)}))) == ["bay_sex"]


def test_sex_x_goes_only_to_a_single_room(build) -> None:
    h = build(
        unit(
            "MED",
            "{id: B1, type: bay, sex: F, beds: 2}",
            "{id: FX, type: bay, sex: flexible, beds: 2}",
            SINGLE,
        )
    )
    result = assigned(place(patient(sex="X"), h, {}))
    assert result.bed_id == "SR"
    reason = result.reasons[codes(result).index("bay_sex")]
    assert "single-sex" in reason.text
    refusal = refused(place(patient(sex="X"), h, {"SR": occupied("M")}))
    assert codes(refusal) == ["bay_sex"]
    text = refusal.reasons[0].text
    assert "4 clean beds" in text and "single-sex" in text and "single room" in text and "X" in text


def test_sex_is_checked_after_the_bed_features(build) -> None:
    h = build(unit("MED", "{id: B1, type: bay, sex: M, beds: 4}", "{id: SR, type: single, telemetry: true}"))
    beds = {"SR": occupied("M")}
    assert codes(refused(place(patient(sex="F", needs={"telemetry"}), h, beds))) == ["needs_telemetry"]
    assert codes(refused(place(patient(sex="F"), h, beds))) == ["bay_sex"]


# ---------------------------------------------------------------- purity and determinism


def test_placement_is_deterministic_and_pure(build) -> None:
    h = build(
        unit("A", "{id: FX, type: bay, sex: flexible, beds: 4}", "{id: SR, type: single, count: 3}", overflow=["B"]),
        unit("B", "{id: B1, type: bay, sex: F, beds: 6}"),
    )
    beds = {"FX-A": occupied("M"), "SR01": BedSnapshot("dirty"), "SR02": occupied("F")}
    frozen = MappingProxyType(dict(beds))
    reversed_order = dict(reversed(list(beds.items())))
    someone = patient("A", sex="F", needs={"contact_isolation"})
    results = [place(someone, h, frozen) for _ in range(3)] + [place(someone, h, reversed_order)]
    assert all(r == results[0] for r in results)
    assert assigned(results[0]).bed_id == "SR03"
    assert dict(frozen) == beds


# ---------------------------------------------------------------- the demo hospital under load


def referee(p: PatientToPlace, result: Assignment, h: Hospital, beds: dict[str, BedSnapshot]) -> list[str]:
    """Independent re-check of every hard constraint for one assignment."""
    bed = h.bed(result.bed_id)
    assert bed is not None
    unit_ = h.unit(bed.unit)
    broken = []
    if result.unit != bed.unit:
        broken.append("unit mismatch")
    if beds.get(bed.bed_id, BedSnapshot("available")).status != "available":
        broken.append("bed not available")
    if unit_.code not in [u.code for u in candidate_units(h, p.target_unit)]:
        broken.append("unit not a candidate")
    if result.overflow != (p.target_unit not in unit_.serves):
        broken.append("overflow flag")
    if "airborne_isolation" in p.needs and not bed.negative_pressure:
        broken.append("airborne")
    if p.needs & {"contact_isolation", "droplet_isolation"} and not bed.single_room:
        broken.append("isolation")
    if "telemetry" in p.needs and not bed.telemetry:
        broken.append("telemetry")
    if "bariatric" in p.needs and not bed.bariatric:
        broken.append("bariatric")
    if unit_.paediatric != (p.age < 16):
        broken.append("age")
    if not bed.single_room:
        if p.sex not in ("F", "M"):
            broken.append("sex X in bay")
        elif bed.bay_sex not in (None, p.sex):
            broken.append("designated bay sex")
        else:
            for other in h.beds_in_room(bed.room_id):
                snap = beds.get(other.bed_id)
                if snap and snap.status in ("occupied", "held") and snap.occupant_sex != p.sex:
                    broken.append("mixed flexible bay")
    return broken


def test_demo_hospital_filled_by_random_patients_never_breaks_a_rule() -> None:
    h = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    labels = sorted({label for u in h.units for label in u.serves})
    needs_pool = ["airborne_isolation", "contact_isolation", "droplet_isolation", "telemetry", "bariatric", "close_observation"]
    rng = random.Random(20240611)
    beds: dict[str, BedSnapshot] = {}
    for b in h.beds:  # start realistically: some beds dirty or closed
        roll = rng.random()
        if roll < 0.05:
            beds[b.bed_id] = BedSnapshot("dirty")
        elif roll < 0.07:
            beds[b.bed_id] = BedSnapshot("closed")
    placed = refusals = 0
    for i in range(len(h.beds) + 100):
        label = rng.choice(labels)
        age = rng.uniform(0.1, 15.9) if label == "PAEDIATRICS" else rng.uniform(16, 99)
        needs = {n for n in needs_pool if rng.random() < 0.08}
        p = PatientToPlace(f"enc-{i}", age, rng.choice("FFMMMX" if i % 20 == 0 else "FM"), label, frozenset(needs))
        result = place(p, h, beds)
        if isinstance(result, Assignment):
            assert referee(p, result, h, beds) == [], (p, result)
            beds[result.bed_id] = BedSnapshot("occupied", occupant_sex=p.sex)
            placed += 1
        else:
            check_sentences(result)
            assert len(result.reasons) == len(candidate_units(h, label))
            refusals += 1
    assert placed > 250 and refusals > 0
    assert all(s.status != "available" for s in beds.values())


def test_every_admitting_label_of_the_demo_finds_a_single_room_in_an_empty_hospital() -> None:
    h = load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"]
    for label in sorted({label for u in h.units for label in u.serves}):
        age = 6 if label == "PAEDIATRICS" else 60
        result = assigned(place(patient(label, age=age, needs={"contact_isolation"}), h, {}))
        assert not result.overflow, (label, result)
    for label, age in (("ICU", 60), ("MEDICINE", 60), ("PAEDIATRICS", 6)):
        result = assigned(place(patient(label, age=age, needs={"airborne_isolation"}), h, {}))
        assert not result.overflow, (label, result)
