"""The worker places everyone waiting together (issue 6): the optimal policy by default, greedy as baseline.

In memory, through the same processor as on the broker. The hospital of the stream tests has
nine adult beds; once they are full, patients wait, and a freed bed goes to whoever the policy
says: first come under greedy, the sicker patient under optimal.
"""

from __future__ import annotations

import pytest

from streams.settings import SettingsError, WardflowSettings, settings_from_args
from streams.state.handlers import HandlerContext
from tests import events as ev
from tests.ward import HID
from tests.ward import Ward as BaseWard


def prediction(unit: str, acuity: int, needs: tuple[str, ...] = ()) -> dict:
    return {"target_unit": unit, "unit_probs": {unit: 0.93}, "acuity": acuity, "acuity_probs": {str(acuity): 0.8},
            "needs": list(needs), "need_probs": {n: 0.9 for n in needs}, "uncertain": False,
            "model_version": "test-model"}


class Ward(BaseWard):
    def __init__(self, policy: str) -> None:
        super().__init__(context=HandlerContext(model_available=True, policy=policy))  # type: ignore[arg-type]  # the tests pass policies, a wrong one included

    def send(self, *items, predicted: dict | None = None, error: dict | None = None) -> list:
        out = super().send(*items, predicted=predicted, error=error)
        assert not self.worker.sink.dead_letters, self.worker.sink.dead_letters
        return out


def full_hospital(policy: str) -> tuple[Ward, dict[str, str]]:
    """Every adult bed taken (women in the F bay and a single room, men elsewhere); returns bed -> patient."""
    ward = Ward(policy)
    occupants = {}
    plan = [("F", "MEDICINE")] * 3 + [("M", "MEDICINE")] * 2 + [("M", "SURGERY")] * 3 + [("M", "MEDICINE")]
    for i, (sex, unit) in enumerate(plan):
        out = ward.send(ev.admission(HID, f"P{i}", f"E{i}", i, sex=sex, requested_unit=unit, event_id=f"a{i}"))
        (assignment,) = [d for d in out if d.kind == "assignment"]
        occupants[assignment.bed_id] = f"P{i}|E{i}"
    assert len(occupants) == 9
    return ward, occupants


def two_waiting_then_a_bed(policy: str):
    ward, occupants = full_hospital(policy)
    first = ward.send(ev.admission(HID, "PA", "EA", 20, sex="F", event_id="wa"), predicted=prediction("MEDICINE", acuity=4))
    second = ward.send(ev.admission(HID, "PB", "EB", 30, sex="F", event_id="wb"), predicted=prediction("MEDICINE", acuity=1))
    assert "no_bed" in [d.kind for d in first] and "no_bed" in [d.kind for d in second]
    patient, encounter = occupants["MED-B1-A"].split("|")
    ward.send(ev.discharge(HID, patient, encounter, 40, event_id="d1"))
    ward.send(ev.bed_status(HID, "MED-B1-A", "cleaning", 41, event_id="c1"))
    return ward.send(ev.bed_status(HID, "MED-B1-A", "clean", 90, event_id="c2"))


def test_greedy_gives_a_freed_bed_to_the_first_who_came():
    (assignment,) = [d for d in two_waiting_then_a_bed("greedy") if d.kind == "assignment"]
    assert assignment.encounter_id == "EA" and assignment.bed_id == "MED-B1-A"


def test_optimal_gives_it_to_the_sicker_patient_and_says_why():
    decisions = two_waiting_then_a_bed("optimal")
    (assignment,) = [d for d in decisions if d.kind == "assignment"]
    assert assignment.encounter_id == "EB" and assignment.bed_id == "MED-B1-A"
    codes = [r.code for r in assignment.reasons]
    assert codes[0] == "bed_freed" and "target_unit" in codes
    assert any("93%" in r.text for r in assignment.reasons)  # the model's probability for the unit is shown


def test_the_patient_left_waiting_gets_the_next_bed():
    ward, occupants = full_hospital("optimal")
    ward.send(ev.admission(HID, "PA", "EA", 20, sex="F", event_id="wa"), predicted=prediction("MEDICINE", acuity=4))
    for bed, minute in (("MED-B1-A", 40), ("MED-B1-B", 50)):
        patient, encounter = occupants[bed].split("|")
        ward.send(ev.discharge(HID, patient, encounter, minute, event_id=f"d-{bed}"))
        out = ward.send(ev.bed_status(HID, bed, "clean", minute + 1, event_id=f"c-{bed}"))
        if bed == "MED-B1-A":
            assert [(d.kind, d.encounter_id) for d in out if d.kind != "surge_level"] == [("assignment", "EA")]
        else:
            assert [d for d in out if d.kind != "surge_level"] == []  # nobody waits any more
    assert ward.worker.tables["waiting"][HID] == []


def test_optimal_keeps_the_negative_pressure_room_for_the_patient_who_needs_it():
    ward = Ward("optimal")
    # two men, one needing airborne isolation, arrive to an empty ward: the first must not take the NP room
    first = ward.send(ev.admission(HID, "P1", "E1", 0, sex="M", event_id="a1"), predicted=prediction("MEDICINE", acuity=3))
    second = ward.send(ev.admission(HID, "P2", "E2", 1, sex="M", event_id="a2"),
                       predicted=prediction("MEDICINE", acuity=2, needs=("airborne_isolation",)))
    assert [d.bed_id for d in first if d.kind == "assignment"] != ["MED-NP1"]
    assert [d.bed_id for d in second if d.kind == "assignment"] == ["MED-NP1"]


def test_the_policy_is_a_setting_and_a_wrong_one_is_refused():
    assert WardflowSettings().allocation_policy == "optimal"
    import argparse

    args = argparse.Namespace(setting_allocation_policy="random")
    with pytest.raises(SettingsError, match="--allocation-policy"):
        settings_from_args(args)
