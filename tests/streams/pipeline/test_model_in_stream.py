"""Admissions placed by the model's prediction: certain, uncertain (held bed), overrides, lapses."""

from __future__ import annotations

import orjson

from streams.state.handlers import HandlerContext
from tests import events as ev
from tests.ward import HID
from tests.ward import Ward as BaseWard


def prediction(unit: str, p: float = 0.9, uncertain: bool = False, needs=()) -> dict:
    return {"target_unit": unit, "unit_probs": {unit: p, "MEDICINE" if unit != "MEDICINE" else "SURGERY": 1 - p},
            "acuity": 3, "acuity_probs": {"3": 0.8, "2": 0.2}, "needs": list(needs),
            "need_probs": {n: 0.9 for n in needs}, "uncertain": uncertain, "model_version": "test-1"}


class Ward(BaseWard):
    def __init__(self) -> None:
        super().__init__(context=HandlerContext(model_available=True))

    def override(self, minutes: float, decision_id: str, action: str, clinician: str = "dr-a", **extra) -> list:
        body = {"event_id": f"o-{self.offset}", "hospital_id": HID, "occurred_at": ev.at(minutes),
                "decision_id": decision_id, "action": action, "clinician_id": clinician, "reason": "clinical", **extra}
        return self.send(("overrides", body))

    def bed(self, bed_id: str):
        return self.worker.tables["beds"].get(f"{HID}|{bed_id}")


def test_a_confident_prediction_places_the_patient_and_the_decision_carries_it():
    ward = Ward()
    (d,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", event_id="a1"), predicted=prediction("SURGERY", 0.93))
    assert (d.kind, d.unit, d.bed_id) == ("assignment", "SURG", "SURG-B1-A")
    assert d.prediction.target_unit == "SURGERY" and d.prediction.model_version == "test-1"
    assert "predicts SURGERY (93%)" in d.reasons[0].text


def test_a_safety_raise_on_the_prediction_is_a_reason_on_the_decision():
    raised = {"code": "safety_floor", "text": "Acuity raised to 1 (model 3): BP 76/44 with HR 128 (shock; ESI4)."}
    ward = Ward()
    (nc,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", event_id="a1"),
                      predicted={**prediction("SURGERY", 0.4, True), "acuity": 1, "reasons": [raised]})
    assert nc.kind == "needs_confirmation"
    assert raised in [{"code": x.code, "text": x.text} for x in nc.reasons]
    assert nc.prediction.reasons[0].text == raised["text"]
    applied, assigned = ward.override(5, nc.decision_id, "confirm")
    assert "safety_floor" in [r.code for r in assigned.reasons]


def test_requested_unit_wins_over_the_model():
    ward = Ward()
    (d,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", requested_unit="MEDICINE", event_id="a1"),
                     predicted=prediction("SURGERY"))
    assert d.unit == "MED" and d.reasons[0].code == "requested_unit"


def test_predicted_needs_drive_hard_constraints():
    ward = Ward()
    (d,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="F", event_id="a1"),
                     predicted=prediction("MEDICINE", needs=["airborne_isolation"]))
    assert d.bed_id == "MED-NP1"


def test_uncertain_prediction_holds_a_bed_until_a_clinician_confirms():
    ward = Ward()
    (nc,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", event_id="a1"), predicted=prediction("SURGERY", 0.4, True))
    assert nc.kind == "needs_confirmation" and nc.bed_id == "SURG-B1-A" and nc.details["hold_expires_at"]
    assert ward.bed("SURG-B1-A").status == "held"
    # Another patient cannot take the held bed meanwhile.
    (other,) = ward.send(ev.admission(HID, "P2", "E2", 1, sex="M", event_id="a2"), predicted=prediction("SURGERY"))
    assert other.bed_id == "SURG-B1-B"
    applied, assigned = ward.override(5, nc.decision_id, "confirm")
    assert (applied.kind, assigned.kind, assigned.bed_id) == ("override_applied", "assignment", "SURG-B1-A")
    assert ward.bed("SURG-B1-A").status == "occupied"


def test_an_unconfirmed_hold_lapses_and_says_so():
    ward = Ward()
    (nc,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", event_id="a1"), predicted=prediction("SURGERY", 0.4, True))
    out = ward.send(ev.bed_status(HID, "MED-SR1", "cleaning", 31, event_id="b1"))  # 31 min > 30 min hold
    assert [d.kind for d in out] == ["hold_lapsed"] and out[0].bed_id == "SURG-B1-A"
    assert ward.bed("SURG-B1-A").status == "available"
    # Confirming after the lapse finds no proposal any more.
    (refused,) = ward.override(40, nc.decision_id, "confirm")
    assert refused.kind == "override_refused" and refused.details["code"] == "nothing_to_confirm"


def test_reject_releases_the_bed_and_reassign_checks_hard_constraints():
    ward = Ward()
    (nc,) = ward.send(ev.admission(HID, "P1", "E1", 0, sex="F", event_id="a1"), predicted=prediction("MEDICINE", 0.4, True))
    assert nc.bed_id == "MED-B1-A"
    (refused,) = ward.override(2, nc.decision_id, "reassign", bed_id="MED-B2-A")  # a male bay
    assert refused.kind == "override_refused" and refused.details["code"] == "breach_refused"
    applied, assigned = ward.override(3, nc.decision_id, "reassign", bed_id="MED-B2-A", deliberate=True)
    assert applied.details["code"] == "reassigned_with_breaches" and applied.details["breaches"]
    assert assigned.bed_id == "MED-B2-A" and ward.bed("MED-B1-A").status == "available"


def test_overrides_from_unlisted_clinicians_are_dead_lettered():
    ward = Ward()
    (nc,) = ward.send(ev.admission(HID, "P1", "E1", 0, event_id="a1"), predicted=prediction("MEDICINE", 0.4, True))
    assert ward.override(2, nc.decision_id, "confirm", clinician="intruder") == []
    assert [d.code for d in ward.worker.sink.dead_letters] == ["unauthorized"]
    assert ward.bed(nc.bed_id).status == "held"


def test_predicted_discharge_needs_no_bed_and_a_failed_prediction_is_dead_lettered():
    ward = Ward()
    (d,) = ward.send(ev.admission(HID, "P1", "E1", 0, event_id="a1"), predicted=prediction("DISCHARGE", 0.95))
    assert d.kind == "no_bed_needed" and d.bed_id is None
    out = ward.send(ev.admission(HID, "P2", "E2", 1, event_id="a2"),
                    error={"code": "inference_failed", "message": "admissions: the model failed on field 'text'"})
    assert out == [] and ward.worker.sink.dead_letters[-1].code == "inference_failed"
    assert ward.worker.sink.dead_letters[-1].field == "text"
    assert "Productive cough" not in orjson.dumps(ward.worker.sink.dead_letters[-1].message).decode()
