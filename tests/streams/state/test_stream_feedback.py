"""Feedback from the stream (issue 6): overrides and early transfers that vouch for a unit label.

In memory through the worker's processor; tests/streams/worker/test_stream_integration.py runs the override
path end to end on the broker.
"""

from __future__ import annotations

from streams.state.tables import TEXTS
from tests import events as ev
from tests.ward import HID
from tests.ward import Ward as BaseWard

TEXT = "Contractions every four minutes, 38 weeks pregnant."


class Ward(BaseWard):
    @property
    def feedback(self):
        return self.worker.sink.feedback


def admitted() -> tuple[Ward, str]:
    ward = Ward()
    (assignment,) = ward.send(ev.admission(HID, "P1", "E1", 0, age=31, sex="F", text=TEXT,
                                           requested_unit="MEDICINE", event_id="a1"))
    assert assignment.kind == "assignment" and assignment.unit == "MED"
    return ward, assignment.decision_id


def test_a_reassign_to_another_labels_unit_is_a_corrected_label_with_the_text():
    ward, decision_id = admitted()
    # another label's unit is outside the patient's units: refused unless the clinician says it is deliberate
    refused = ward.send(ev.override(HID, decision_id, "reassign", "dr-a", 5, bed="OBS-SR1", event_id="o0"))
    assert [d.kind for d in refused] == ["override_refused"] and ward.feedback == []
    out = ward.send(ev.override(HID, decision_id, "reassign", "dr-a", 10, bed="OBS-SR1", deliberate=True,
                                event_id="o1"))
    assert [d.kind for d in out] == ["override_applied", "assignment"]
    assert out[0].details["breaches"]  # the deliberate breach is recorded
    (record,) = ward.feedback
    assert (record.target_unit, record.previous_target_unit, record.corrected) == ("MATERNITY", "MEDICINE", True)
    assert (record.text, record.age, record.sex, record.who, record.source) == (TEXT, 31, "F", "dr-a", "override")
    assert record.caused_by == "o1" and record.at.isoformat() == ev.at(10)


def test_a_move_onto_an_overflow_unit_or_a_refused_override_says_nothing_about_the_label():
    ward, decision_id = admitted()
    refused = ward.send(ev.override(HID, decision_id, "reassign", "dr-a", 5, bed="MED-B2-A", event_id="o1"))
    assert [d.kind for d in refused] == ["override_refused"]  # a woman into the men's bay
    ward.send(ev.override(HID, decision_id, "reassign", "dr-a", 10, bed="SURG-SR1", event_id="o2"))
    assert ward.feedback == []  # SURG is MEDICINE's overflow unit: outlying, not a relabelling


def test_an_unauthorized_override_is_a_dead_letter_and_no_feedback():
    ward, decision_id = admitted()
    assert ward.send(ev.override(HID, decision_id, "reassign", "somebody", 10, bed="OBS-SR1", event_id="o1")) == []
    assert [d.code for d in ward.worker.sink.dead_letters] == ["unauthorized"] and ward.feedback == []


def test_an_early_transfer_to_another_labels_unit_corrects_the_label_and_a_late_one_does_not():
    ward, _ = admitted()
    ward.send(ev.transfer(HID, "P1", "E1", "OBS-SR1", 60, event_id="t1"))
    (record,) = ward.feedback
    assert (record.source, record.who, record.target_unit, record.corrected) == ("transfer", "ehr", "MATERNITY", True)

    late, _ = admitted()
    late.send(ev.transfer(HID, "P1", "E1", "OBS-SR1", 60 * 24 * 5, event_id="t1"))
    assert late.feedback == []  # days later: the patient's course changed, not the first label


def test_the_text_is_kept_only_while_the_stay_is_open_and_replays_give_the_same_record():
    ward, decision_id = admitted()
    assert ward.worker.tables[TEXTS][f"{HID}|E1"] == TEXT
    ward.send(ev.override(HID, decision_id, "reassign", "dr-a", 10, bed="OBS-SR1", deliberate=True, event_id="o1"))
    ward.send(ev.discharge(HID, "P1", "E1", 600, event_id="d1"))
    assert f"{HID}|E1" not in ward.worker.tables[TEXTS]

    again, decision_id_2 = admitted()
    again.send(ev.override(HID, decision_id_2, "reassign", "dr-a", 10, bed="OBS-SR1", deliberate=True, event_id="o1"))
    assert again.feedback == ward.feedback and len(again.feedback) == 1  # deterministic ids and bytes
