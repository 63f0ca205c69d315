"""Feedback records for the model: which overrides and transfers vouch for a label, which correct
it, which say nothing, and the record's wire form (free text included, on purpose)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allocator.feedback import LabelledCase, feedback_from_override, feedback_from_transfer
from allocator.hospital import Hospital, load_hospitals
from allocator.overrides import check_override
from allocator.placement import Assignment, BedSnapshot, PatientToPlace
from tests.allocator.test_allocator_placement import HEAD, unit

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def build(tmp_path: Path, allocation: str = "") -> Hospital:
    units = [
        unit("AMU", "{id: A, type: single, count: 2}", serves=["MEDICINE"], overflow=["W11"]),
        unit("W11", "{id: S, type: single, count: 2}", serves=["SURGERY"]),
        unit("ICU", "{id: I, type: single, count: 2}", serves=["ICU"], overflow=["HDU"]),
        unit("HDU", "{id: H, type: single}", serves=[]),
        unit("ORTH", "{id: O, type: single}", serves=["ORTHO"]),
        unit("MIX", "{id: X, type: single}", serves=["ORTHO", "SURGERY"]),
    ]
    extra = "    clinicians: [dr-a]\n" + (textwrap.indent(allocation, " " * 4) if allocation else "")
    path = tmp_path / "h.yaml"
    path.write_text(HEAD.replace("    units:\n", extra + "    units:\n") + textwrap.indent("\n".join(units), " " * 6) + "\n")
    return load_hospitals(path)["t"]


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    return build(tmp_path)


CASE = LabelledCase("enc-7", "72M, 3 days of cough and fever, CXR right lower lobe consolidation", 72.0, "M",
                    "MEDICINE", 3, frozenset({"respiratory_support", "droplet_isolation"}))
PATIENT = PatientToPlace(CASE.encounter_id, CASE.age, CASE.sex, CASE.target_unit, CASE.needs)
PROPOSED = Assignment("A01", "AMU", False, ())


def reassign(h: Hospital, bed_id: str, deliberate: bool = True):
    return check_override("reassign", "dr-a", h, proposed=PROPOSED, patient=PATIENT, bed_id=bed_id,
                          beds={"A01": BedSnapshot("held", "M")}, deliberate=deliberate)


def test_confirm_vouches_for_the_label(hospital: Hospital) -> None:
    outcome = check_override("confirm", "dr-a", hospital, proposed=PROPOSED, patient=PATIENT, bed_id=None,
                             beds={"A01": BedSnapshot("held", "M")}, deliberate=False)
    record = feedback_from_override(CASE, outcome, hospital, clinician_id="dr-a", at=T0)
    assert record is not None
    assert (record.target_unit, record.previous_target_unit, record.corrected) == ("MEDICINE", "MEDICINE", False)
    assert (record.source, record.who, record.text) == ("override", "dr-a", CASE.text)


def test_reassign_outside_the_labels_units_corrects_it(hospital: Hospital) -> None:
    record = feedback_from_override(CASE, reassign(hospital, "I01"), hospital, clinician_id="dr-a", at=T0)
    assert record is not None
    assert (record.target_unit, record.previous_target_unit, record.corrected) == ("ICU", "MEDICINE", True)
    same_label = feedback_from_override(CASE, reassign(hospital, "A02"), hospital, clinician_id="dr-a", at=T0)
    assert same_label is not None and not same_label.corrected


@pytest.mark.parametrize("bed_id", ["S01", "H", "X"], ids=["overflow unit", "serves no label", "serves two labels"])
def test_reassign_that_cannot_name_a_label_writes_nothing(hospital: Hospital, bed_id: str) -> None:
    assert feedback_from_override(CASE, reassign(hospital, bed_id), hospital, clinician_id="dr-a", at=T0) is None


def test_reject_refused_and_unauthorized_write_nothing(hospital: Hospital) -> None:
    rejected = check_override("reject", "dr-a", hospital, proposed=PROPOSED, patient=PATIENT, bed_id=None, beds={},
                              deliberate=False)
    assert rejected.applied and feedback_from_override(CASE, rejected, hospital, clinician_id="dr-a", at=T0) is None
    refused = reassign(hospital, "I01", deliberate=False)
    refused_free = check_override("reassign", "dr-a", hospital, proposed=PROPOSED, patient=PATIENT, bed_id="A02",
                                  beds={"A02": BedSnapshot("dirty")}, deliberate=True)
    nobody = check_override("confirm", "dr-x", hospital, proposed=PROPOSED, patient=PATIENT, bed_id=None, beds={},
                            deliberate=False)
    assert (refused.code, refused_free.code, nobody.code) == ("breach_refused", "bed_unavailable", "unauthorized")
    for outcome in (refused, refused_free, nobody):
        assert feedback_from_override(CASE, outcome, hospital, clinician_id="dr-a", at=T0) is None


def test_early_transfer_to_another_labels_unit_corrects_the_label(hospital: Hospital) -> None:
    record = feedback_from_transfer(CASE, hospital, to_bed_id="O", admitted_at=T0, at=T0 + timedelta(hours=20),
                                    who="ehr-transfer")
    assert record is not None
    assert (record.target_unit, record.corrected, record.source, record.who) == ("ORTHO", True, "transfer", "ehr-transfer")
    assert record.at == T0 + timedelta(hours=20)


@pytest.mark.parametrize(("bed_id", "hours"), [("O", 30), ("A02", 2), ("S01", 2), ("H", 2), ("X", 2), ("O", -1)],
                         ids=["too late", "same label", "overflow unit", "serves none", "serves two", "before admission"])
def test_transfers_that_say_nothing_about_the_label(hospital: Hospital, bed_id: str, hours: float) -> None:
    assert feedback_from_transfer(CASE, hospital, to_bed_id=bed_id, admitted_at=T0, at=T0 + timedelta(hours=hours),
                                  who="ehr") is None


def test_the_window_comes_from_the_config(tmp_path: Path) -> None:
    h = build(tmp_path, "allocation:\n  transfer_correction_hours: 6\n")
    assert feedback_from_transfer(CASE, h, to_bed_id="O", admitted_at=T0, at=T0 + timedelta(hours=5), who="e") is not None
    assert feedback_from_transfer(CASE, h, to_bed_id="O", admitted_at=T0, at=T0 + timedelta(hours=7), who="e") is None
    with pytest.raises(ValueError):
        feedback_from_transfer(CASE, h, to_bed_id="nope", admitted_at=T0, at=T0, who="e")


def test_record_to_dict_is_json_with_the_text_and_sorted_needs(hospital: Hospital) -> None:
    record = feedback_from_transfer(CASE, hospital, to_bed_id="I02", admitted_at=T0, at=T0 + timedelta(hours=3),
                                    who="ehr")
    assert record is not None
    data = json.loads(json.dumps(record.to_dict()))
    assert data == {
        "encounter_id": "enc-7", "text": CASE.text, "age": 72.0, "sex": "M", "target_unit": "ICU", "acuity": 3,
        "needs": ["droplet_isolation", "respiratory_support"], "source": "transfer", "who": "ehr",
        "at": "2026-11-24T11:00:00+00:00", "previous_target_unit": "MEDICINE", "corrected": True,
    }
