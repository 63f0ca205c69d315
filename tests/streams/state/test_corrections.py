"""Cancellations (HL7 A11/A12/A13) and swaps (A17) in the state machine: a cancel undoes, a swap swaps."""

from __future__ import annotations

import pytest

from allocator.hospital import load_hospitals
from streams.contract.validation import decode_event
from streams.state.tables import HospitalState, StagedTables
from tests import events as ev
from tests.ward import FIXTURE, HID, Ward


def cancel(pid: str, eid: str, cancels: str, minutes: float, bed: str | None = None, event_id: str | None = None):
    body = ev._event(HID, minutes, event_id, patient_id=pid, encounter_id=eid, cancels=cancels)
    if bed is not None:
        body["bed_id"] = bed
    return "cancellations", body


def swap(p1: str, e1: str, p2: str, e2: str, minutes: float):
    return "swaps", ev._event(HID, minutes, None, patient_id=p1, encounter_id=e1, other_patient_id=p2,
                              other_encounter_id=e2)


def beds(ward: Ward) -> dict[str, tuple[str, str | None]]:
    state = HospitalState(StagedTables(ward.worker.tables), load_hospitals(FIXTURE)[HID])
    return {b.bed_id: (s.status, s.encounter_id) for b in state.hospital.beds
            if (s := state.bed(b.bed_id)).status != "available"}


def admit(ward: Ward, pid: str, eid: str, minutes: float, sex: str = "F"):
    (d,) = ward.send(ev.admission(HID, pid, eid, minutes, sex=sex, requested_unit="MED"))
    assert d.kind == "assignment"
    return d.bed_id


def test_cancelled_admission_frees_the_bed_and_closes_the_stay():
    w = Ward()
    bed = admit(w, "P1", "E1", 0)
    (d,) = w.send(cancel("P1", "E1", "admission", 5))
    assert d.kind == "cancellation_applied" and d.bed_id == bed and d.reasons[0].code == "admission_cancelled"
    assert beds(w) == {bed: ("dirty", None)}
    # the stay is over: vitals for it are refused, the patient can be admitted again
    w.send(ev.vitals(HID, "P1", "E1", 6, resp_rate=20))
    assert w.worker.sink.dead_letters[-1].code == "unknown_encounter"
    assert admit(w, "P1", "E2", 10)


def test_cancelled_transfer_moves_back_without_feedback():
    w = Ward()
    bed = admit(w, "P1", "E1", 0)
    assert w.send(ev.transfer(HID, "P1", "E1", "MED-SR1", 5)) == []
    (d,) = w.send(cancel("P1", "E1", "transfer", 6, bed=bed))
    assert d.kind == "cancellation_applied" and d.bed_id == bed and d.reasons[0].code == "transfer_cancelled"
    assert beds(w) == {bed: ("occupied", "E1"), "MED-SR1": ("dirty", None)}
    assert w.worker.sink.feedback == []


def test_cancelled_discharge_reopens_the_stay_in_its_bed_or_finds_one():
    w = Ward()
    bed = admit(w, "P1", "E1", 0)
    w.send(ev.discharge(HID, "P1", "E1", 30))
    assert beds(w) == {bed: ("dirty", None)}
    (d,) = w.send(cancel("P1", "E1", "discharge", 35, bed=bed))
    assert d.kind == "cancellation_applied" and d.reasons[0].code == "discharge_cancelled"
    assert beds(w) == {bed: ("occupied", "E1")}
    w.send(ev.vitals(HID, "P1", "E1", 36, resp_rate=18))  # the stay is open again
    assert w.worker.sink.dead_letters == []
    # without a bed: the reopened stay waits for one and is placed
    w.send(ev.discharge(HID, "P1", "E1", 40))
    got = w.send(cancel("P1", "E1", "discharge", 45))
    assert [x.kind for x in got] == ["cancellation_applied", "assignment"]
    assert got[1].unit == "MED"


def test_swap_moves_two_patients_at_once():
    w = Ward()
    a = admit(w, "P1", "E1", 0)
    b = admit(w, "P2", "E2", 1)
    got = w.send(swap("P1", "E1", "P2", "E2", 5))
    assert [(x.kind, x.encounter_id, x.bed_id) for x in got] == [("swap_applied", "E1", b), ("swap_applied", "E2", a)]
    assert beds(w) == {a: ("occupied", "E2"), b: ("occupied", "E1")}


@pytest.mark.parametrize("item,code", [
    (cancel("P9", "E9", "admission", 1), "unknown_encounter"),
    (cancel("P1", "E1", "discharge", 1), "impossible_transition"),   # not discharged
    (cancel("P1", "E1", "transfer", 1, bed="NOPE"), "unknown_bed"),
    (swap("P1", "E1", "P9", "E9", 1), "unknown_encounter"),
])
def test_impossible_corrections_are_dead_lettered(item, code):
    w = Ward()
    admit(w, "P1", "E1", 0)
    assert w.send(item) == []
    assert w.worker.sink.dead_letters[-1].code == code


def test_contract_rules():
    import orjson

    from streams.contract.validation import ContractViolation

    _, body = cancel("P1", "E1", "transfer", 0)
    with pytest.raises(ContractViolation) as info:
        decode_event("cancellations", orjson.dumps(body))
    assert (info.value.code, info.value.field) == ("missing_field", "bed_id")
    _, body = swap("P1", "E1", "P2", "E1", 0)
    with pytest.raises(ContractViolation) as info:
        decode_event("swaps", orjson.dumps(body))
    assert info.value.field == "other_encounter_id"


def test_beds_view_names_encounters_not_text():
    from streams.state.views import beds_snapshot

    w = Ward()
    bed = admit(w, "P1", "E1", 0)
    from streams.gateway.fhir import fhir_beds

    snap = fhir_beds(beds_snapshot(w.worker.tables, load_hospitals(FIXTURE)[HID]))
    assert snap[bed] == {"unit": "MED", "status": "occupied", "since": ev.at(0), "encounter_id": "E1",
                         "patient_id": "P1"}
    assert snap["SURG-SR1"]["status"] == "available" and "encounter_id" not in snap["SURG-SR1"]
    assert "cough" not in str(snap)


def test_an_admission_to_the_ehrs_bed_is_recorded_not_chosen():
    w = Ward()
    (d,) = w.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MED", bed_id="MED-SR1"))
    assert (d.kind, d.bed_id, d.unit, d.reasons[0].code) == ("assignment", "MED-SR1", "MED", "ehr_bed")
    assert beds(w) == {"MED-SR1": ("occupied", "E1")}
    assert w.send(ev.admission(HID, "P2", "E2", 1, bed_id="MED-SR1")) == []
    assert w.worker.sink.dead_letters[-1].code == "impossible_transition"
    assert w.send(ev.admission(HID, "P3", "E3", 2, bed_id="NOPE")) == []
    assert w.worker.sink.dead_letters[-1].code == "unknown_bed"
