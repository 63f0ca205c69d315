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
    assert [d.kind for d in calm] == ["news2", "review_due"] and calm[0].details["total"] == 0
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


def test_the_same_band_again_in_the_episode_pages_once():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **SICK))
    ward.send(("page-acks", {"event_id": "ack1", "hospital_id": HID, "occurred_at": ev.at(11),
                             "page_id": "pg-test-hosp-v1", "clinician_id": "dr-a"}))
    again = ward.send(ev.vitals(HID, "P1", "E1", 30, event_id="v2", **SICK))
    assert not [d for d in again if d.kind == "page"]


def test_a_rise_after_an_acknowledged_improvement_pages_again_and_says_why():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **SICK))
    ward.send(("page-acks", {"event_id": "ack1", "hospital_id": HID, "occurred_at": ev.at(12),
                             "page_id": "pg-test-hosp-v1", "clinician_id": "dr-a"}))
    assert not [d for d in ward.send(ev.vitals(HID, "P1", "E1", 40, event_id="v2", **CALM)) if d.kind == "page"]
    again = [d for d in ward.send(ev.vitals(HID, "P1", "E1", 60, event_id="v3", **SICK)) if d.kind == "page"]
    assert [(d.role, d.page_id, d.details["repage"]) for d in again] == [
        ("critical_care_outreach", "pg-test-hosp-v3", "new_deterioration")]
    assert [r.code for r in again[0].reasons] == ["news2", "response", "new_deterioration", "trend"]


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
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **{**CALM, "resp_rate": 26}))  # a single 3: doctor paged
    ward.send(ev.vitals(HID, "P1", "E1", 20, event_id="v2", **SICK))  # high: a new page supersedes it
    out = ward.send(("page-acks", {"event_id": "ack-old", "hospital_id": HID, "occurred_at": ev.at(21),
                                   "page_id": "pg-test-hosp-v1", "clinician_id": "dr-a"}))
    assert out == [] and ward.worker.sink.dead_letters == []
    later = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 40, event_id="b1"))
    assert [d.kind for d in later] == ["escalation"]  # the current, unacknowledged page still escalates


# --- issue 13: the chart decides who is interrupted, one page per episode ---

def _ack(page_id: str, minutes: float, event_id: str):
    return ("page-acks", {"event_id": event_id, "hospital_id": HID, "occurred_at": ev.at(minutes),
                          "page_id": page_id, "clinician_id": "dr-a"})


def test_one_to_four_goes_to_the_board_with_no_pager_and_pages_nobody():
    ward = admitted()
    out = ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **{**CALM, "resp_rate": 22}))  # 2: low
    assert [d.kind for d in out] == ["news2", "review_due"]
    review = out[1]
    assert review.pager is None and review.role is None and review.page_id is None
    assert review.details == {"total": 2, "band": "low", "observe_every_minutes": 240,
                              "next_obs_due_at": "2026-11-24T12:10:00+00:00", "nurse_assessment": True}
    later = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 60, event_id="b1"))
    assert later == []  # nothing to escalate


def test_a_page_names_the_role_the_parameters_that_scored_and_the_trend():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **{**CALM, "resp_rate": 22}))
    page = next(d for d in ward.send(ev.vitals(HID, "P1", "E1", 130, event_id="v3", **SICK)) if d.kind == "page")
    assert (page.role, page.priority, page.pager) == ("critical_care_outreach", "emergency", "1001")
    assert [s["name"] for s in page.details["scoring"]] == ["resp_rate", "spo2", "on_oxygen", "systolic_bp",
                                                           "heart_rate", "temperature_c"]
    assert [(t["total"], t["at"]) for t in page.details["trend"]] == [
        (0, "2026-11-24T08:10:00+00:00"), (2, "2026-11-24T09:10:00+00:00"), (13, "2026-11-24T10:10:00+00:00")]
    assert page.reasons[-1].text == "NEWS2 trend: 0 at 08:10, 2 at 09:10, 13 at 10:10."


def test_an_acknowledged_episode_pages_once_and_a_rise_pages_again():
    ward = admitted()
    red = {**CALM, "resp_rate": 26}  # a single 3
    first = [d for d in ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **red)) if d.kind == "page"]
    assert [d.role for d in first] == ["ward_doctor"]
    ward.send(_ack(first[0].page_id, 14, "ack1"))
    out = ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="r0", **red))
    assert [d.kind for d in out if d.kind in ("page", "escalation")] == []
    # still a single 3 an hour after the ack: the next role reviews, once
    out = [d for d in ward.send(ev.vitals(HID, "P1", "E1", 130, event_id="r1", **red)) if d.kind == "page"]
    assert [(d.role, d.details["repage"]) for d in out] == [("critical_care_outreach", "no_improvement")]
    ward.send(_ack(out[0].page_id, 133, "ack2"))
    out = ward.send(ev.vitals(HID, "P1", "E1", 190, event_id="r2", **red))
    assert [d.kind for d in out if d.kind in ("page", "escalation")] == []
    rise = ward.send(ev.vitals(HID, "P1", "E1", 200, event_id="v9", **SICK))
    assert [(d.kind, d.role) for d in rise if d.kind == "page"] == [("page", "critical_care_outreach")]


def test_an_incomplete_set_whose_measured_values_reach_a_paging_band_pages_at_once():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    # two hours later (the rest is stale): breathing 26 and systolic 95 alone are 3 + 2
    out = ward.send(ev.vitals(HID, "P1", "E1", 130, event_id="v2", resp_rate=26, systolic_bp=95))
    assert [d.kind for d in out] == ["news2", "page"]
    assert out[0].details["at_least"] is True and out[0].details["complete"] is False
    assert [p["name"] for p in out[0].details["parameters"]] == ["resp_rate", "systolic_bp"]  # nothing made up
    page = out[1]
    assert page.role == "ward_doctor" and page.reasons[0].text.startswith("NEWS2 at least 5 (medium)")
    # a stale set whose measured values do not reach a paging band is still not scored
    quiet = ward.send(ev.vitals(HID, "P1", "E1", 400, event_id="v3", heart_rate=95))
    assert [(d.kind, d.reasons[0].code) for d in quiet if d.kind == "news2"] == [("news2", "news2_incomplete")]


def test_a_probe_artefact_asks_for_a_repeat_and_pages_when_none_comes():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    out = ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **{**CALM, "spo2": 40}))
    assert [d.kind for d in out] == ["news2", "repeat_observation"]
    assert out[1].pager is None and out[1].details["repeat_by"] == "2026-11-24T09:20:00+00:00"
    assert ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 79, event_id="b1")) == []
    late = ward.send(ev.bed_status(HID, "SURG-SR1", "clean", 80, event_id="b2"))
    assert [(d.kind, d.role, d.page_id) for d in late] == [("page", "ward_doctor", "pg-test-hosp-v2")]
    assert "not repeated within 10 minutes" in late[0].reasons[2].text
    assert late[0].reasons[2].code == "repeat_not_taken"


def test_a_repeat_that_rose_two_points_since_the_set_before_the_suspect_reading_pages_and_says_why():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))  # 0
    ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **{**CALM, "spo2": 40}))  # suspect
    out = ward.send(ev.vitals(HID, "P1", "E1", 74, event_id="v3", **{**CALM, "resp_rate": 22, "heart_rate": 95}))
    [page] = [d for d in out if d.kind == "page"]  # the repeat scored 3: below the bands, but 3 above the 0
    assert (page.role, page.page_id, page.pager is not None) == ("ward_doctor", "pg-test-hosp-v2", True)
    assert page.reasons[2].code == "repeat_rising" and "rose from 0 to 3" in page.reasons[2].text


def test_a_reassuring_repeat_pages_nobody():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))
    ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **{**CALM, "spo2": 40}))
    ward.send(ev.vitals(HID, "P1", "E1", 74, event_id="v3", **CALM))
    assert [d.kind for d in ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 120, event_id="b1"))] == []


def test_a_score_of_7_with_an_implausible_reading_pages_at_once():
    ward = admitted()
    out = ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1",
                              **{**CALM, "spo2": 40, "on_oxygen": True, "temperature_c": 39.2}))  # 3 + 2 + 2
    assert [(d.kind, d.priority) for d in out if d.kind in ("page", "repeat_observation")] == [("page", "emergency")]


def test_overdue_observations_come_per_unit_at_the_ward_round_and_an_urgent_patient_at_once():
    ward = Ward()
    for i, (pid, eid) in enumerate((("P1", "E1"), ("P2", "E2"), ("P3", "E3"))):
        ward.send(ev.admission(HID, pid, eid, i, age=70, requested_unit="MEDICINE", event_id=f"adm{i}"))
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **{**CALM, "resp_rate": 22}))  # low: due 12:10
    ward.send(ev.vitals(HID, "P2", "E2", 20, event_id="v2", **{**CALM, "resp_rate": 21}))  # low: due 12:20
    medium = {**CALM, "heart_rate": 115, "on_oxygen": True, "temperature_c": 35.5}  # 5: hourly
    page = next(d for d in ward.send(ev.vitals(HID, "P3", "E3", 30, event_id="v3", **medium)) if d.kind == "page")
    ward.send(_ack(page.page_id, 32, "ack3"))
    urgent = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 106, event_id="b1"))  # due 09:30 + 15: overdue
    assert [(d.kind, d.encounter_id, d.priority, d.pager) for d in urgent] == [
        ("observations_overdue", "E3", "urgent", "2000")]
    quiet = ward.send(ev.bed_status(HID, "SURG-SR1", "clean", 300, event_id="b2"))  # 13:00: E1, E2 overdue; no round
    assert [d for d in quiet if d.kind == "observations_overdue"] == []
    rounds = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 481, event_id="b3"))  # 16:01: the 16:00 round
    [listing] = [d for d in rounds if d.kind == "observations_overdue"]
    assert (listing.unit, listing.role, listing.pager, listing.patient_id) == ("MED", "nurse_in_charge", "2000", None)
    assert [p["encounter_id"] for p in listing.details["patients"]] == ["E1", "E2"]  # E3 was reported on its own
    assert listing.details["round_at"] == "2026-11-24T16:00:00+00:00"


def test_a_late_ack_read_before_the_escalation_stops_any_further_one():
    """Escalation is judged on event time: an ack read at 09:15 but processed after the 09:25 escalation
    is recorded at 09:15; the escalation already sent stands and no further one follows."""
    ward = admitted()
    medium = {**CALM, "heart_rate": 115, "on_oxygen": True, "temperature_c": 35.5}
    page = next(d for d in ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v1", **medium)) if d.kind == "page")
    esc = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 86, event_id="b1"))
    assert [d.role for d in esc] == ["critical_care_outreach"]
    assert ward.send(_ack(page.page_id, 75, "ack-late")) == [] and ward.worker.sink.dead_letters == []
    later = ward.send(ev.bed_status(HID, "SURG-SR1", "clean", 200, event_id="b2"))
    assert [d for d in later if d.kind == "escalation"] == []


def test_a_rising_score_below_the_paging_bands_asks_the_board_for_observations_sooner_and_pages_nobody():
    ward = admitted()
    ward.send(ev.vitals(HID, "P1", "E1", 10, event_id="v1", **CALM))  # 0
    out = ward.send(ev.vitals(HID, "P1", "E1", 70, event_id="v2", **{**CALM, "resp_rate": 22, "heart_rate": 95}))
    assert [d.kind for d in out] == ["news2", "review_due"]  # 0 -> 3 (2 + 1): rising, still below the paging bands
    review = out[1]
    assert review.pager is None and review.role is None and review.page_id is None
    assert review.details == {"total": 3, "band": "low", "observe_every_minutes": 30,
                              "next_obs_due_at": "2026-11-24T09:40:00+00:00", "nurse_assessment": True,
                              "rising_from": 0}
    assert [r.code for r in review.reasons] == ["news2", "review", "rising"]
    assert "rose from 0 to 3" in review.reasons[2].text
