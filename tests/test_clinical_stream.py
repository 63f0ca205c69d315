"""Vitals through the worker's processing: NEWS2 pages, acknowledgements, escalation, exclusions."""

from __future__ import annotations

from tests import events as ev
from tests.ward import HID, Ward

CALM = dict(resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
            temperature_c=36.8)
SICK = dict(resp_rate=26, spo2=90, on_oxygen=True, systolic_bp=95, heart_rate=118, consciousness="A",
            temperature_c=38.6)  # 3 + 3 + 2 + 2 + 2 + 0 + 1 = 13: high


def admitted(age: float = 70) -> Ward:
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 0, age=age, requested_unit="MEDICINE", event_id="adm"))
    return ward


def test_a_deteriorating_patient_is_paged_with_the_parameters_that_scored():
    ward = admitted()
    calm = ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    assert [d.kind for d in calm] == ["news2"] and calm[0].details["total"] == 0
    sick = ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **SICK))
    page = next(d for d in sick if d.kind == "page")
    assert page.role == "critical_care_outreach" and page.priority == "emergency" and page.pager == "1001"
    assert "resp rate 26/min (3)" in page.reasons[0].text and page.details["total"] == 13
    assert page.page_id and page.unit == "MED"


def test_an_unacknowledged_page_escalates_and_an_ack_stops_it():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **{**CALM, "resp_rate": 22}))  # 2: low
    first = [d for d in ward.send(ev.vitals(HID, "P1", "E1", 20, event_id="v2", **SICK)) if d.kind == "page"][0]
    # 14 minutes later: nothing yet; 15 minutes later: escalated to the next role (any event moves the clock)
    assert [d.kind for d in ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 34, event_id="b1"))] == []
    esc = ward.send(ev.bed_status(HID, "SURG-SR1", "clean", 35, event_id="b2"))
    assert [(d.kind, d.role, d.caused_by) for d in esc] == [("escalation", "rapid_response", "b2")]
    ward.send(("page-acks", {"event_id": "ack1", "hospital_id": HID, "occurred_at": ev.at(36),
                             "page_id": esc[0].page_id, "clinician_id": "dr-a"}))
    later = ward.send(ev.bed_status(HID, "SURG-SR1", "blocked", 80, event_id="b3"))
    assert not [d for d in later if d.kind == "escalation"] and first.page_id != esc[0].page_id


def test_same_band_within_the_suppression_window_pages_once():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **SICK))
    ward.send(("page-acks", {"event_id": "ack1", "hospital_id": HID, "occurred_at": ev.at(11),
                             "page_id": "pg-test-hosp-v1", "clinician_id": "dr-a"}))
    again = ward.send(ev.vitals(HID, "P1", "E1", 30, event_id="v2", **SICK))
    assert not [d for d in again if d.kind == "page"]


def test_a_partial_set_uses_recent_values_else_is_incomplete():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    partial = ward.send(ev.vitals(HID, "P1", "E1", 40, event_id="v2", heart_rate=135))  # 3 points alone
    assert [d.kind for d in partial] == ["news2", "page"]
    assert partial[0].details["total"] == 3 and "heart_rate" not in partial[0].details["carried"]
    out = ward.send(ev.vitals(HID, "P1", "E1", 200, event_id="v3", heart_rate=80))
    assert "escalation" in [d.kind for d in out]  # the 40-minute page was never acknowledged
    stale = next(d for d in out if d.kind == "news2")
    assert stale.details["complete"] is False and "resp_rate" in stale.details["stale"]


def test_children_get_no_news2_page_and_the_decision_says_why():
    ward = Ward()
    ward.send(ev.admission(HID, "C1", "E9", 0, age=9, requested_unit="PAEDIATRICS", event_id="adm"))
    out = ward.send(ev.vitals(HID, "C1", "E9", 10, event_id="v1", **SICK))
    assert [d.kind for d in out] == ["news2"] and "under 16" in out[0].reasons[0].text
    assert not ward.send(ev.vitals(HID, "C1", "E9", 20, event_id="v2", **SICK))  # said once


def test_an_ack_for_an_unknown_page_is_dead_lettered():
    ward = admitted()
    ward.send(("page-acks", {"event_id": "ack1", "hospital_id": HID, "occurred_at": ev.at(5),
                             "page_id": "nope", "clinician_id": "dr-a"}))
    assert [d.code for d in ward.worker.sink.dead_letters] == ["unknown_page"]


def test_pregnant_patients_on_an_obstetric_unit_get_no_news2_page():
    ward = Ward()
    ward.send(ev.admission(HID, "M1", "E7", 0, age=29, requested_unit="MATERNITY", event_id="adm"))
    out = ward.send(ev.vitals(HID, "M1", "E7", 10, event_id="v1", **SICK))
    assert [d.kind for d in out] == ["news2"] and "pregnant" in out[0].reasons[0].text


def test_a_late_ack_for_a_superseded_page_is_accepted_quietly():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **{**CALM, "resp_rate": 22}))  # low: nurse paged
    ward.send(ev.vitals(HID, "P1", "E1", 20, event_id="v2", **SICK))  # high: a new episode supersedes it
    out = ward.send(("page-acks", {"event_id": "ack-old", "hospital_id": HID, "occurred_at": ev.at(21),
                                   "page_id": "pg-test-hosp-v1", "clinician_id": "dr-a"}))
    assert out == [] and ward.worker.sink.dead_letters == []
    later = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 40, event_id="b1"))
    assert [d.kind for d in later] == ["escalation"]  # the current, unacknowledged page still escalates
