"""The board's state as a pure function of decisions, page acks and the worker's views (no Kafka, no HTTP)."""

from __future__ import annotations

from allocator.hospital import load_hospitals
from streams.board.state import HospitalBoard, duration
from tests.conftest import FIXTURES

HID = "board-hosp"


def board() -> HospitalBoard:
    return HospitalBoard(load_hospitals(FIXTURES / "board_hospital.yaml")[HID])


def decision(kind: str, n: int, minute: int, **fields) -> dict:
    return {"decision_id": f"d{n}", "kind": kind, "hospital_id": HID, "caused_by": f"e{n}",
            "created_at": f"2026-11-24T08:{minute:02d}:00Z", "reasons": [{"code": kind, "text": f"{kind}."}], **fields}


PRED = {"target_unit": "CARDIAC", "unit_probs": {"CARDIAC": 0.55}, "acuity": 2, "uncertain": True,
        "model_version": "m1", "needs": ["telemetry"]}


def test_a_held_proposal_is_queued_then_confirmed_onto_its_tile():
    b = board()
    b.apply(decision("needs_confirmation", 1, 0, patient_id="P1", encounter_id="E1", unit="CARD", bed_id="CARD-B1-A",
                     prediction=PRED, details={"hold_expires_at": "2026-11-24T08:30:00+00:00"}))
    tile = b.tile(b.hospital.bed("CARD-B1-A"))
    assert (tile["status"], tile["patient_id"], tile["acuity"], tile["pending_decision"]) == ("held", "P1", 2, "d1")
    [item] = b.queue_items()
    assert item["actions"] == ["confirm", "reassign", "reject"] and item["prediction"]["probability"] == 0.55
    b.apply(decision("override_applied", 2, 1, patient_id="P1", encounter_id="E1", bed_id="CARD-B1-A",
                     details={"action": "confirm", "overridden_decision": "d1"}))
    b.apply(decision("assignment", 3, 1, patient_id="P1", encounter_id="E1", unit="CARD", bed_id="CARD-B1-A",
                     prediction=PRED))
    tile = b.tile(b.hospital.bed("CARD-B1-A"))
    assert (tile["status"], tile["patient_id"], tile["pending_decision"]) == ("occupied", "P1", None)
    assert b.queue_items() == []
    assert b.overview()["totals"]["occupied"] == 1


def test_a_reject_frees_the_held_bed_and_leaves_the_patient_waiting_for_a_reassign():
    b = board()
    b.apply(decision("needs_confirmation", 1, 0, patient_id="P1", encounter_id="E1", unit="CARD", bed_id="CARD-B1-A",
                     prediction=PRED))
    b.apply(decision("override_applied", 2, 2, patient_id="P1", encounter_id="E1",
                     details={"action": "reject", "overridden_decision": "d1"}))
    assert b.bed_entry("CARD-B1-A").status == "available"
    [item] = b.queue_items()
    assert item["state"] == "rejected" and item["actions"] == ["reassign"] and item["decision_id"] == "d1"


def test_a_lapsed_hold_and_a_refused_override_stay_actionable_on_the_original_decision():
    b = board()
    b.apply(decision("needs_confirmation", 1, 0, patient_id="P1", encounter_id="E1", unit="CARD", bed_id="CARD-B1-A"))
    b.apply(decision("override_refused", 2, 1, patient_id="P1", encounter_id="E1", bed_id="ORTH-SR1",
                     details={"action": "reassign", "code": "bed_unavailable"}))
    [item] = b.queue_items()
    assert (item["state"], item["refused_code"], item["decision_id"]) == ("refused", "bed_unavailable", "d1")
    b.apply(decision("hold_lapsed", 3, 30, patient_id="P1", encounter_id="E1", bed_id="CARD-B1-A"))
    [item] = b.queue_items()
    assert item["state"] == "lapsed" and item["actions"] == ["reassign"]
    assert b.bed_entry("CARD-B1-A").status == "available"


def test_the_worker_view_wins_when_newer_and_decisions_win_when_newer():
    b = board()
    b.apply(decision("assignment", 1, 5, patient_id="P1", encounter_id="E1", unit="CARD", bed_id="CARD-B1-A"))
    view = {"as_of": "2026-11-24T08:04:00+00:00", "waiting": [], "holds": [],
            "beds": [{"bed_id": "CARD-B1-A", "unit": "CARD", "status": "available", "since": "2026-11-24T07:00:00+00:00"}]}
    b.set_views(view, None)
    assert b.bed_entry("CARD-B1-A").status == "occupied"  # the view has not caught up yet
    view["beds"][0].update(status="dirty", since="2026-11-24T09:00:00+00:00")  # discharged later: no decision says so
    view["as_of"] = "2026-11-24T09:00:00+00:00"
    b.set_views(view, None)
    assert b.bed_entry("CARD-B1-A").status == "dirty"
    assert b.clock == "2026-11-24T09:00:00+00:00"
    # a worker that does not own the hospital (or is still recovering) answers with an older picture: ignored
    assert not b.set_views({"as_of": None, "waiting": [], "holds": [], "beds": []}, None)
    assert b.bed_entry("CARD-B1-A").status == "dirty"


def test_repeats_are_ignored_and_pages_clear_when_acknowledged():
    b = board()
    page = decision("page", 1, 0, patient_id="P1", encounter_id="E1", unit="CARD", page_id="pg1", role="ward_doctor",
                    priority="urgent", details={"band": "medium"})
    assert b.apply(page) and not b.apply(page)
    b.apply(decision("escalation", 2, 20, patient_id="P1", encounter_id="E1", unit="CARD", page_id="pg1",
                     role="critical_care_outreach", priority="emergency"))
    [p] = b.unit_page("CARD")["pages"]
    assert (p["role"], p["escalations"], p["age"]) == ("critical_care_outreach", 1, "20m")
    assert b.apply_ack({"page_id": "pg1", "clinician_id": "dr-a"})
    assert b.unit_page("CARD")["pages"] == []
    # an acknowledgement read before its page (they are on different topics) still clears it
    assert b.apply_ack({"page_id": "pg2", "clinician_id": "dr-a"})
    b.apply(decision("page", 3, 30, patient_id="P2", encounter_id="E2", unit="CARD", page_id="pg2", role="ward_doctor"))
    assert b.unit_page("CARD")["pages"] == []


def test_waiting_patients_come_from_the_view_with_the_reasons_they_were_given():
    b = board()
    b.apply(decision("no_bed", 1, 0, patient_id="P9", encounter_id="E9", prediction=PRED))
    b.set_views({"as_of": "2026-11-24T10:00:00+00:00", "holds": [], "beds": [],
                 "waiting": [{"encounter_id": "E9", "patient_id": "P9", "target_unit": "CARDIAC",
                              "since": "2026-11-24T08:00:00+00:00", "acuity": 2}]}, None)
    [w] = b.unit_page("CARD")["waiting"]
    assert (w["patient_id"], w["waited"], w["reasons"][0]["code"]) == ("P9", "2h 00m", "no_bed")
    summary = b.overview()["units"][0]
    assert (summary["unit"], summary["waiting"], summary["longest_wait"]) == ("CARD", 1, "2h 00m")
    # once the worker says the patient no longer waits (placed by a transfer), the no_bed item is done
    b.set_views({"as_of": "2026-11-24T10:05:00+00:00", "holds": [], "beds": [], "waiting": []}, None)
    assert b.queue_items() == []


def test_durations():
    assert duration("2026-11-24T08:00:00Z", "2026-11-24T08:07:00+00:00") == "7m"
    assert duration("2026-11-24T08:00:00Z", "2026-11-24T10:05:00Z") == "2h 05m"
    assert duration(None, "2026-11-24T10:05:00Z") == ""


def test_a_bed_s_since_reads_the_same_from_a_decision_or_from_the_worker_s_view():
    """The same instant arrives as `...Z` on decisions and `...+00:00` from the views: a board
    rebuilt after a restart must show what it showed before, whichever source it took."""
    from streams.board.state import same_form

    assert same_form("2026-12-07T00:02:04.372719Z") == same_form("2026-12-07T00:02:04.372719+00:00")
    assert same_form(None) is None and same_form("not a time") == "not a time"


def planned(n: int, patient: str, date: str, *, plan: str = "plan-a", created: str = "2026-11-20T09:00:00Z",
            unit: str = "ORTH", room: str = "ORTH-B1", mandatory: bool = False) -> dict:
    return {"decision_id": f"p{n}", "kind": "planned_admission", "hospital_id": HID, "caused_by": plan,
            "created_at": created, "patient_id": patient, "unit": unit,
            "reasons": [{"code": "planned_admission", "text": "Elective admission planned."}],
            "details": {"plan_id": plan, "day": 0, "date": date, "room": room, "theatre": "T1", "surgeon": "s1",
                        "length_of_stay": 3, "mandatory": mandatory, "delay_days": 0}}


def test_planned_admissions_show_on_their_unit_soonest_first_and_the_newest_plan_wins():
    b = board()
    b.apply(decision("news2", 1, 0, patient_id="P0", encounter_id="E0"))  # the hospital's clock: 2026-11-24 08:00
    b.apply(planned(1, "PA", "2026-11-26", room="ORTH-SR1", mandatory=True))
    b.apply(planned(2, "PB", "2026-11-25"))
    b.apply(planned(3, "PC", "2026-11-23"))                     # before the hospital's today: not shown
    b.apply(planned(4, "PD", "2026-11-25", unit="CARD", room="CARD-B2"))
    assert b.clock == "2026-11-24T08:00:00+00:00"              # a plan's creation time is not hospital time
    rows = b.unit_page("ORTH")["planned"]
    assert [(r["patient_id"], r["date"], r["room"], r["status"]) for r in rows] == [
        ("PB", "2026-11-25", "ORTH-B1", "planned"), ("PA", "2026-11-26", "ORTH-SR1", "planned")]
    assert rows[1]["mandatory"] and rows[1]["theatre"] == "T1" and rows[1]["length_of_stay"] == 3
    assert [r["patient_id"] for r in b.unit_page("CARD")["planned"]] == ["PD"]
    assert b.unit_summary("ORTH")["planned"] == 2
    # a re-plan moves PB; the older plan arriving late changes nothing; a repeat is ignored
    b.apply(planned(5, "PB", "2026-11-27", plan="plan-b", created="2026-11-21T09:00:00Z"))
    assert not b.apply(planned(5, "PB", "2026-11-27", plan="plan-b", created="2026-11-21T09:00:00Z"))
    b.apply(planned(6, "PB", "2026-11-25", plan="plan-0", created="2026-11-19T09:00:00Z"))
    assert [(r["patient_id"], r["date"]) for r in b.unit_page("ORTH")["planned"]] == [
        ("PA", "2026-11-26"), ("PB", "2026-11-27")]


def test_a_planned_patient_who_arrives_is_marked_arrived():
    b = board()
    b.apply(planned(1, "PA", "2026-11-24"))
    b.apply(decision("assignment", 2, 5, patient_id="PA", encounter_id="EA", unit="ORTH", bed_id="ORTH-SR1"))
    [row] = b.unit_page("ORTH")["planned"]
    assert row["status"] == "arrived" and row["arrived_at"] == "2026-11-24T08:05:00Z"
    b.apply(decision("assignment", 3, 6, patient_id="PB", encounter_id="EB", unit="ORTH", bed_id="ORTH-B1-A"))
    assert [r["patient_id"] for r in b.unit_page("ORTH")["planned"]] == ["PA"]  # nobody else is marked
