"""Clinician overrides: who may, what a reassignment is checked against, when a breach is refused,
when it is applied and recorded, and that a bed that is not free is never given."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from allocator.hospital import Hospital, load_hospitals
from allocator.overrides import OverrideOutcome, check_override
from allocator.placement import Assignment, BedSnapshot, NoBed, PatientToPlace, Reason
from tests.allocator.test_allocator_placement import HEAD, check_sentences, unit


@pytest.fixture
def hospital(tmp_path: Path) -> Hospital:
    units = [
        unit("MED", "{id: BF, type: bay, sex: F, beds: 2}", "{id: BM, type: bay, sex: M, beds: 2}",
             "{id: FX, type: bay, sex: flexible, beds: 2}", "{id: SR, type: single, count: 2}",
             "{id: NP, type: single, negative_pressure: true}", serves=["MEDICINE"], overflow=["SURG"]),
        unit("SURG", "{id: S1, type: single}", serves=["SURGERY"]),
        unit("PAED", "{id: P1, type: single}", serves=["PAEDIATRICS"], paediatric=True),
    ]
    head = HEAD.replace("    units:\n", "    clinicians: [dr-a, sn-b]\n    units:\n")
    path = tmp_path / "h.yaml"
    path.write_text(head + textwrap.indent("\n".join(units), " " * 6) + "\n")
    return load_hospitals(path)["t"]


WOMAN = PatientToPlace("enc-1", 60.0, "F", "MEDICINE", frozenset())
PROPOSED = Assignment("BF-A", "MED", False, (Reason("target_unit", "Ward MED serves MEDICINE."),))
HELD = {"BF-A": BedSnapshot("held", "F")}


def outcome_ok(outcome: OverrideOutcome) -> None:
    """Every reason and breach is one sentence with a machine code, as decisions carry them."""
    check_sentences(NoBed(tuple(outcome.reasons) + tuple(outcome.breaches)))


@pytest.mark.parametrize("action", ["confirm", "reassign", "reject"])
def test_only_listed_clinicians_may_override(hospital: Hospital, action: str) -> None:
    outcome = check_override(action, "dr-nobody", hospital, proposed=PROPOSED, patient=WOMAN, bed_id="SR01",  # type: ignore[arg-type]  # the action comes from the parametrize list
                             beds=HELD, deliberate=True)
    assert (outcome.applied, outcome.code, outcome.new_bed_id) == (False, "unauthorized", None)
    assert "dr-nobody" in outcome.reasons[0].text
    outcome_ok(outcome)


def test_confirm_keeps_the_proposed_bed_held_for_the_patient(hospital: Hospital) -> None:
    outcome = check_override("confirm", "dr-a", hospital, proposed=PROPOSED, patient=WOMAN, bed_id=None, beds=HELD,
                             deliberate=False)
    assert (outcome.applied, outcome.code, outcome.new_bed_id, outcome.new_unit) == (True, "confirmed", "BF-A", "MED")
    assert outcome.breaches == []
    nothing = check_override("confirm", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id=None, beds={},
                             deliberate=False)
    assert (nothing.applied, nothing.code) == (False, "nothing_to_confirm")
    gone = check_override("confirm", "dr-a", hospital, proposed=PROPOSED, patient=WOMAN, bed_id=None,
                          beds={"BF-A": BedSnapshot("occupied", "F")}, deliberate=True)
    assert (gone.applied, gone.code) == (False, "bed_unavailable")


def test_reject_sends_the_patient_back_to_the_list(hospital: Hospital) -> None:
    outcome = check_override("reject", "sn-b", hospital, proposed=PROPOSED, patient=WOMAN, bed_id=None, beds=HELD,
                             deliberate=False)
    assert (outcome.applied, outcome.code, outcome.new_bed_id) == (True, "rejected", None)
    assert check_override("reject", "sn-b", hospital, proposed=None, patient=WOMAN, bed_id=None, beds={},
                          deliberate=False).code == "nothing_to_reject"


def test_reassign_to_a_suitable_bed_is_applied(hospital: Hospital) -> None:
    outcome = check_override("reassign", "dr-a", hospital, proposed=PROPOSED, patient=WOMAN, bed_id="SR02", beds=HELD,
                             deliberate=False)
    assert (outcome.applied, outcome.code, outcome.new_bed_id, outcome.new_unit) == (True, "reassigned", "SR02", "MED")
    assert outcome.breaches == []
    overflow = check_override("reassign", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id="S1", beds={},
                              deliberate=False)
    assert (overflow.applied, overflow.new_unit) == (True, "SURG"), "an overflow unit breaks no hard rule"
    outcome_ok(outcome)


def test_a_breach_is_refused_with_every_broken_rule(hospital: Hospital) -> None:
    airborne = PatientToPlace("enc-2", 60.0, "F", "MEDICINE", frozenset({"airborne_isolation"}))
    outcome = check_override("reassign", "dr-a", hospital, proposed=None, patient=airborne, bed_id="BM-A", beds={},
                             deliberate=False)
    assert (outcome.applied, outcome.code, outcome.new_bed_id) == (False, "breach_refused", None)
    assert [b.code for b in outcome.breaches] == ["needs_negative_pressure", "bay_sex"]
    assert "deliberate" in outcome.reasons[0].text and "2 hard rules" in outcome.reasons[0].text
    outcome_ok(outcome)


def test_a_deliberate_breach_is_applied_and_recorded(hospital: Hospital) -> None:
    outcome = check_override("reassign", "dr-a", hospital, proposed=PROPOSED, patient=WOMAN, bed_id="BM-B", beds=HELD,
                             deliberate=True)
    assert (outcome.applied, outcome.code, outcome.new_bed_id, outcome.new_unit) == \
        (True, "reassigned_with_breaches", "BM-B", "MED")
    assert [b.code for b in outcome.breaches] == ["bay_sex"]
    assert "male bay" in outcome.breaches[0].text
    outside = check_override("reassign", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id="P1", beds={},
                             deliberate=True)
    assert [b.code for b in outside.breaches] == ["not_candidate_unit", "age_mismatch"]
    assert outside.applied
    outcome_ok(outcome)


@pytest.mark.parametrize("status", ["occupied", "held", "dirty", "cleaning", "blocked", "closed"])
def test_a_bed_that_is_not_free_is_always_refused(hospital: Hospital, status: str) -> None:
    beds = {**HELD, "SR01": BedSnapshot(status, "F" if status in ("occupied", "held") else None)}
    outcome = check_override("reassign", "dr-a", hospital, proposed=PROPOSED, patient=WOMAN, bed_id="SR01", beds=beds,
                             deliberate=True)
    assert (outcome.applied, outcome.code, outcome.new_bed_id) == (False, "bed_unavailable", None)
    assert status in outcome.reasons[0].text


def test_reassign_needs_a_known_bed(hospital: Hospital) -> None:
    assert check_override("reassign", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id=None, beds={},
                          deliberate=False).code == "bed_required"
    assert check_override("reassign", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id="ZZ-9", beds={},
                          deliberate=False).code == "unknown_bed"
    with pytest.raises(ValueError):
        check_override("move", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id=None, beds={},  # type: ignore[arg-type]  # deliberately not an action
                       deliberate=False)


def test_the_patients_own_hold_does_not_count_against_the_new_bed(hospital: Hospital) -> None:
    proposed = Assignment("FX-A", "MED", False, ())
    beds = {"FX-A": BedSnapshot("held", None)}  # the hold was written before the sex was recorded
    outcome = check_override("reassign", "dr-a", hospital, proposed=proposed, patient=WOMAN, bed_id="FX-B", beds=beds,
                             deliberate=False)
    assert (outcome.applied, outcome.code, outcome.breaches) == (True, "reassigned", [])
    # someone else's occupied bed in the same flexible bay still counts
    other = check_override("reassign", "dr-a", hospital, proposed=None, patient=WOMAN, bed_id="FX-B",
                           beds={"FX-A": BedSnapshot("occupied", "M")}, deliberate=False)
    assert (other.applied, [b.code for b in other.breaches]) == (False, ["bay_sex"])
