"""Hospital configuration: the demo hospital's size and coverage, the compact YAML format,
lookups, and one clear error (file, field, problem) for each way a file can be broken."""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest

from allocator.exceptions import AllocatorError
from allocator.hospital import (
    DEMO_HOSPITAL_PATH,
    Hospital,
    HospitalConfigError,
    load_hospitals,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
SMALL = FIXTURES / "small_hospital.yaml"
TAXONOMY = Path("/work/shared/clinical-taxonomy.md")


def taxonomy_target_units() -> list[str]:
    """The target_unit labels from the shared taxonomy's first table, so the test follows the doc."""
    if not TAXONOMY.exists():
        pytest.skip(f"{TAXONOMY} is not on this machine; cannot check label coverage")
    text = TAXONOMY.read_text(encoding="utf-8")
    section = re.search(r"^## 1\..*?$(.*?)^## 2\.", text, flags=re.S | re.M)
    assert section, "taxonomy layout changed: no '## 1.' ... '## 2.' section"
    labels = re.findall(r"^\| `([A-Z_]+)` \|", section.group(1), flags=re.M)
    assert len(labels) >= 5, f"taxonomy table not parsed: {labels}"
    return labels


@pytest.fixture(scope="module")
def demo() -> Hospital:
    hospitals = load_hospitals(DEMO_HOSPITAL_PATH)
    assert list(hospitals) == ["st-elsewhere"]
    return hospitals["st-elsewhere"]


@pytest.fixture(scope="module")
def small() -> Hospital:
    return load_hospitals(SMALL)["small"]


# ---------------------------------------------------------------- the demo hospital


def test_demo_path_is_inside_the_package() -> None:
    assert DEMO_HOSPITAL_PATH.is_file()
    assert DEMO_HOSPITAL_PATH.parent.parent.name == "allocator"


def test_demo_is_big_enough(demo: Hospital) -> None:
    assert len(demo.beds) >= 300
    assert len(demo.units) >= 10
    for unit in demo.units:
        assert demo.beds_in_unit(unit.code), f"{unit.code} has no beds"
        assert unit.nurses_on_duty >= 1


def test_demo_serves_every_admitting_label_of_the_taxonomy(demo: Hospital) -> None:
    wanted = [label for label in taxonomy_target_units() if label != "DISCHARGE"]
    missing = [label for label in wanted if not demo.units_serving(label)]
    assert not missing, f"no unit serves {missing}"
    assert not demo.units_serving("DISCHARGE")


def test_demo_has_several_medicine_and_two_surgery_wards(demo: Hospital) -> None:
    assert len(demo.units_serving("MEDICINE")) >= 3
    assert len(demo.units_serving("SURGERY")) >= 2


def test_demo_children_only_on_paediatric_units(demo: Hospital) -> None:
    paeds = demo.units_serving("PAEDIATRICS")
    assert paeds and all(unit.paediatric for unit in paeds)
    assert all(not u.paediatric for u in demo.units if "PAEDIATRICS" not in u.serves)


def test_demo_negative_pressure_rooms_where_they_belong(demo: Hospital) -> None:
    np_units = {bed.unit for bed in demo.beds if bed.negative_pressure}
    assert np_units & {u.code for u in demo.units_serving("ICU")}
    assert np_units & {u.code for u in demo.units_serving("PAEDIATRICS")}
    assert np_units & {u.code for u in demo.units_serving("MEDICINE")}
    assert all(bed.single_room for bed in demo.beds if bed.negative_pressure)


def test_demo_features_mix(demo: Hospital) -> None:
    for label in ("CARDIAC", "STROKE"):
        for unit in demo.units_serving(label):
            assert any(b.telemetry for b in demo.beds_in_unit(unit.code)), unit.code
    assert any(b.telemetry for u in demo.units_serving("MEDICINE") for b in demo.beds_in_unit(u.code))
    assert sum(b.bariatric for b in demo.beds) >= 2
    assert any(b.near_station for b in demo.beds)
    singles = [b for b in demo.beds if b.single_room]
    bays = [b for b in demo.beds if not b.single_room]
    assert len(bays) > len(singles), "an NHS general hospital is mostly bays"
    assert {b.bay_sex for b in bays} == {"F", "M", None}, "female, male and flexible bays"
    assert all(b.bay_sex is None for b in singles)
    for room in {b.room_id for b in bays}:
        assert 4 <= len(demo.beds_in_room(room)) <= 8, room


def test_demo_rosters_and_clinicians(demo: Hospital) -> None:
    assert {"bed_manager", "critical_care_outreach", "rapid_response"} <= set(demo.roster)
    for unit in demo.units:
        assert {"nurse_in_charge", "ward_doctor"} <= set(unit.roster), unit.code
    assert 3 <= len(demo.clinicians) <= 5
    assert len(set(demo.clinicians)) == len(demo.clinicians)


def test_demo_overflow_makes_clinical_sense(demo: Hospital) -> None:
    medicine = {u.code for u in demo.units_serving("MEDICINE")}
    for unit in demo.units_serving("CARDIAC"):
        assert set(unit.overflow) & medicine, f"{unit.code} should overflow to medicine"
    for unit in demo.units_serving("STROKE"):
        assert set(unit.overflow) & medicine, f"{unit.code} should overflow to elderly care"
    surgery = [u.code for u in demo.units_serving("SURGERY")]
    for unit in demo.units_serving("SURGERY"):
        others = [code for code in surgery if code != unit.code]
        assert list(unit.overflow[: len(others)]) == others, "surgical wards overflow into each other first"
        assert set(unit.overflow[len(others):]) & medicine, "then a medical ward"
    for unit in demo.units_serving("PAEDIATRICS"):
        assert all(demo.unit(code).paediatric for code in unit.overflow), "children never overflow to adults"


# ---------------------------------------------------------------- format and lookups


def test_compact_rooms_generate_ids(small: Hospital) -> None:
    assert [b.bed_id for b in small.beds_in_unit("MED")] == [
        "MED-SR01", "MED-SR02",
        "MED-B1-A", "MED-B1-B", "MED-B1-C", "MED-B1-D",
        "MED-B2-A", "MED-B2-B", "MED-B2-C", "MED-B2-D",
    ]
    side = small.bed("MED-SR02")
    assert side is not None
    assert side.room_id == "MED-SR02" and side.single_room and side.bay_sex is None
    assert side.near_station and not side.telemetry
    assert [b.bed_id for b in small.beds_in_room("MED-B1")] == ["MED-B1-A", "MED-B1-B", "MED-B1-C", "MED-B1-D"]
    assert all(b.bay_sex == "F" and not b.single_room for b in small.beds_in_room("MED-B1"))
    assert all(b.bay_sex is None and b.telemetry for b in small.beds_in_room("MED-B2"))


def test_room_features_apply_to_beds_unless_a_bed_overrides(small: Hospital) -> None:
    beds = {b.bed_id: b for b in small.beds_in_room("SURG-B1")}
    assert list(beds) == ["SURG-B1-A", "SURG-B1-B", "SURG-B1-X"]
    assert beds["SURG-B1-A"].bariatric and beds["SURG-B1-A"].telemetry
    assert not beds["SURG-B1-B"].telemetry and not beds["SURG-B1-B"].bariatric
    assert beds["SURG-B1-X"].telemetry
    np_room = small.bed("SURG-NP")
    assert np_room is not None and np_room.negative_pressure and np_room.single_room


def test_lookups(small: Hospital) -> None:
    assert small.unit("PAED").paediatric
    with pytest.raises(KeyError):
        small.unit("NOPE")
    assert small.bed("NOPE") is None
    assert small.beds_in_unit("NOPE") == ()
    assert small.beds_in_room("NOPE") == ()
    assert [u.code for u in small.units_serving("MEDICINE")] == ["MED"]
    assert small.units_serving("UNKNOWN") == ()
    assert small.unit("MED").overflow == ("SURG",)
    assert small.unit("MED").roster["nurse_in_charge"] == "2000"
    assert small.roster["bed_manager"] == "1000"
    assert small.clinicians == ("dr-a", "dr-b")
    assert len(small.beds) == 17
    assert all(small.bed(b.bed_id) is b for b in small.beds)


def test_config_is_immutable_and_survives_copy_and_pickle(small: Hospital) -> None:
    with pytest.raises(TypeError):
        small.roster["bed_manager"] = "9999"  # type: ignore[index]  # deliberately: the roster is read-only
    with pytest.raises(TypeError):
        small.unit("MED").roster["ward_doctor"] = "9999"  # type: ignore[index]  # deliberately: the roster is read-only
    for clone in (pickle.loads(pickle.dumps(small)), copy.deepcopy(small)):
        assert clone == small
        assert clone.bed("MED-B1-A") == small.bed("MED-B1-A")
        assert clone.units_serving("MEDICINE") == small.units_serving("MEDICINE")
    assert hash(small.unit("MED")) == hash(copy.deepcopy(small.unit("MED")))


def test_one_file_may_hold_several_hospitals(tmp_path: Path) -> None:
    text = SMALL.read_text()
    body = text.split("hospitals:\n", 1)[1]
    second = body.replace("hospital_id: small", "hospital_id: other")
    path = tmp_path / "two.yaml"
    path.write_text("hospitals:\n" + body + second)
    hospitals = load_hospitals(str(path))
    assert list(hospitals) == ["small", "other"]
    assert len(hospitals["other"].beds) == 17


# ---------------------------------------------------------------- broken files

BROKEN = [
    # (id, snippet of the fixture, replacement, field path, words of the problem)
    ("bay sex", "sex: flexible", "sex: Q",
     "hospitals[0].units[0].rooms[2].sex", ["must be F, M or flexible", "'Q'"]),
    ("bay without sex", "{id: MED-B1, type: bay, sex: F, beds: 4}", "{id: MED-B1, type: bay, beds: 4}",
     "hospitals[0].units[0].rooms[1].sex", ["bay", "F, M or flexible"]),
    ("single room with a sex", "{id: MED-SR, type: single,", "{id: MED-SR, type: single, sex: F,",
     "hospitals[0].units[0].rooms[0].sex", ["single room"]),
    ("single room with two beds", "{id: SURG-NP, type: single,", "{id: SURG-NP, type: single, beds: 2,",
     "hospitals[0].units[1].rooms[0].beds", ["exactly 1 bed", "2"]),
    ("duplicate unit code", "code: PAED", "code: MED",
     "hospitals[0].units[2].code", ["duplicate", "'MED'", "hospitals[0].units[0]"]),
    ("duplicate room id", "{id: PAED-C, type: single, count: 3}", "{id: MED-SR, type: single, count: 3}",
     "hospitals[0].units[2].rooms[0].id", ["room id", "'MED-SR01'", "already"]),
    ("duplicate bed id", "{id: SURG-B1-X}", "{id: SURG-B1-A}",
     "hospitals[0].units[1].rooms[1].beds[2].id", ["bed id", "'SURG-B1-A'", "already"]),
    ("unknown overflow unit", "overflow: [SURG]", "overflow: [SURG, ICU]",
     "hospitals[0].units[0].overflow[1]", ["unknown unit", "'ICU'"]),
    ("overflow into itself", "overflow: [SURG]", "overflow: [MED]",
     "hospitals[0].units[0].overflow[0]", ["itself"]),
    ("overflow listed twice", "overflow: [SURG]", "overflow: [SURG, SURG]",
     "hospitals[0].units[0].overflow[1]", ["twice", "'SURG'"]),
    ("label not a string", "serves: [SURGERY]", "serves: [SURGERY, 7]",
     "hospitals[0].units[1].serves[1]", ["string", "7"]),
    ("empty label", "serves: [SURGERY]", "serves: [SURGERY, '']",
     "hospitals[0].units[1].serves[1]", ["non-empty"]),
    ("label served twice", "serves: [SURGERY]", "serves: [SURGERY, SURGERY]",
     "hospitals[0].units[1].serves[1]", ["twice", "'SURGERY'"]),
    ("no nurses", "nurses_on_duty: 4", "nurses_on_duty: 0",
     "hospitals[0].units[1].nurses_on_duty", ["greater than or equal to 1", "0"]),
    ("nurses as text", "nurses_on_duty: 4", "nurses_on_duty: four",
     "hospitals[0].units[1].nurses_on_duty", ["integer", "'four'"]),
    ("unit missing a required field", "        nurses_on_duty: 3\n", "",
     "hospitals[0].units[2].nurses_on_duty", ["required"]),
    ("hospital roster missing a role", '      rapid_response: "1002"\n', "",
     "hospitals[0].roster", ["rapid_response"]),
    ("unit roster missing a role", '{nurse_in_charge: "4000", ward_doctor: "4001"}', '{nurse_in_charge: "4000"}',
     "hospitals[0].units[2].roster", ["ward_doctor"]),
    ("pager as a number", 'bed_manager: "1000"', "bed_manager: 1000",
     "hospitals[0].roster.bed_manager", ["string", "1000"]),
    ("misspelt feature", "telemetry: true\n", "telemetery: true\n",
     "hospitals[0].units[1].rooms[1].telemetery", ["not a known field"]),
    ("boolean as text", "paediatric: true", "paediatric: 'yes'",
     "hospitals[0].units[2].paediatric", ["boolean", "'yes'"]),
    ("negative-pressure bay", "{id: MED-B1, type: bay, sex: F, beds: 4}",
     "{id: MED-B1, type: bay, sex: F, beds: 4, negative_pressure: true}",
     "hospitals[0].units[0].rooms[1].negative_pressure", ["single room"]),
    ("unknown room type", "{id: PAED-C, type: single,", "{id: PAED-C, type: ward,",
     "hospitals[0].units[2].rooms[0].type", ["'single' or 'bay'", "'ward'"]),
    ("beds neither number nor list", "sex: F, beds: 4}", "sex: F, beds: four}",
     "hospitals[0].units[0].rooms[1].beds", ["number of beds or a list", "'four'"]),
    ("count with explicit bed ids", "{id: SURG-B1-X}", "{id: SURG-B1-X}\n            count: 2",
     "hospitals[0].units[1].rooms[1].beds[2].id", ["count"]),
    ("zero beds", "sex: F, beds: 4}", "sex: F, beds: 0}",
     "hospitals[0].units[0].rooms[1].beds", ["greater than or equal to 1"]),
    ("unit without rooms", "        rooms:\n          - {id: PAED-C, type: single, count: 3}\n", "        rooms: []\n",
     "hospitals[0].units[2].rooms", ["at least 1"]),
    ("duplicate clinician", "clinicians: [dr-a, dr-b]", "clinicians: [dr-a, dr-a]",
     "hospitals[0].clinicians[1]", ["twice", "'dr-a'"]),
]


@pytest.mark.parametrize(("old", "new", "field", "words"), [case[1:] for case in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_file_names_file_field_and_problem(
    tmp_path: Path, old: str, new: str, field: str, words: list[str]
) -> None:
    text = SMALL.read_text()
    assert old in text, "the fixture changed; update this case"
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message
    assert isinstance(info.value, AllocatorError) and info.value.user_facing


def write(tmp_path: Path, text: str, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    lines = SMALL.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if "code: SURG" in line)
    lines[index] = lines[index].replace("code: SURG", "code: [SURG")
    path = write(tmp_path, "\n".join(lines))
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ")
    line = int(re.search(r"line (\d+)", message).group(1))  # type: ignore[union-attr]  # the message names its line
    assert index + 1 <= line <= index + 3, message
    assert "YAML" in message


def test_duplicate_yaml_key_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    text = SMALL.read_text().replace("        nurses_on_duty: 4\n", "        nurses_on_duty: 4\n        nurses_on_duty: 9\n")
    path = write(tmp_path, text)
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    message = str(info.value)
    expected_line = text.splitlines().index("        nurses_on_duty: 9") + 1
    assert f"line {expected_line}" in message and "duplicate key 'nurses_on_duty'" in message, message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    assert str(info.value).startswith(str(path)) and "not found" in str(info.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty"]),
        ("- just a list\n", ["top level", "hospitals"]),
        ("hospitals: []\n", ["hospitals", "at least 1"]),
        ("hospital: []\n", ["hospital", "not a known field"]),
    ],
    ids=["empty", "list", "no hospitals", "misspelt top key"],
)
def test_files_without_hospitals(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for word in words:
        assert word in message, message


def test_duplicate_hospital_id(tmp_path: Path) -> None:
    body = SMALL.read_text().split("hospitals:\n", 1)[1]
    path = write(tmp_path, "hospitals:\n" + body + body)
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    assert str(info.value).startswith(f"{path}: hospitals[1].hospital_id: ")
    assert "duplicate" in str(info.value)


def test_generated_bed_ids_are_limited_to_the_alphabet(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL.read_text().replace("sex: F, beds: 4}", "sex: F, beds: 27}"))
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    assert "hospitals[0].units[0].rooms[1].beds" in str(info.value)
    assert "26" in str(info.value)


def test_only_the_first_problem_is_spelled_out_with_a_count(tmp_path: Path) -> None:
    text = SMALL.read_text().replace("nurses_on_duty: 4", "nurses_on_duty: 0").replace("nurses_on_duty: 3", "nurses_on_duty: 0")
    path = write(tmp_path, text)
    with pytest.raises(HospitalConfigError) as info:
        load_hospitals(path)
    assert "hospitals[0].units[1].nurses_on_duty" in str(info.value)
    assert "1 more problem" in str(info.value)
