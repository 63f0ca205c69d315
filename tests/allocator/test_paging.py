"""Paging by the NEWS2 chart, one page per episode, over a controllable clock: every function takes `now`."""
import dataclasses
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allocator.news2 import (
    DEFAULT_RESPONSES,
    PARAMETERS,
    Band,
    Vitalset,
    describe_scoring,
    rename_roles,
    score,
    score_at_least,
)
from allocator.paging import (
    AckOutcome,
    Escalation,
    ObservationsOverdue,
    OverdueRound,
    Page,
    PagingConfig,
    PagingState,
    RepeatObservation,
    ReviewDue,
    escalation_page_id,
    next_action_at,
    on_ack,
    on_score,
    overdue_round,
    previous_round,
    suspect_artefact,
    tick,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CFG = PagingConfig()
NORMAL = Vitalset(
    resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=120, heart_rate=70, consciousness="A",
    temperature_c=37.0,
)
VITALS = {
    Band.ZERO: NORMAL,
    Band.LOW: replace(NORMAL, heart_rate=95),  # 1
    Band.LOW_SINGLE_RED: replace(NORMAL, resp_rate=26),  # 3 in one parameter
    Band.MEDIUM: replace(NORMAL, heart_rate=115, on_oxygen=True, temperature_c=35.5),  # 2 + 2 + 1
    Band.HIGH: replace(NORMAL, resp_rate=26, spo2=91, on_oxygen=True),  # 3 + 3 + 2
}
SCORES = {band: score(v, scale2=False) for band, v in VITALS.items()}
PROBE_OFF = score(replace(NORMAL, spo2=40), scale2=False)  # SpO2 40% with normal pulse and breathing


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def scored(band, minutes: float, state: PagingState | None = None, page_id: str = "p1", cfg: PagingConfig = CFG):
    result = SCORES[band] if isinstance(band, Band) else band
    return on_score(state or PagingState(), result, at(minutes), cfg, page_id=page_id)


def pages(actions) -> list:
    return [a for a in actions if isinstance(a, Page)]


def test_score_sets_are_in_the_intended_bands():
    assert {band: s.band for band, s in SCORES.items()} == {band: band for band in Band}
    assert PROBE_OFF.band is Band.LOW_SINGLE_RED and PROBE_OFF.total == 3


# --- each band's response ---

def test_zero_pages_nobody_and_puts_the_12_hourly_observations_on_the_board():
    state, actions = scored(Band.ZERO, 0)
    assert actions == [ReviewDue(band=Band.ZERO, total=0, monitoring_minutes=720, next_obs_due_at=at(720),
                                 nurse_assessment=False, reasons=(describe_scoring(SCORES[Band.ZERO]),
                                                                  DEFAULT_RESPONSES[Band.ZERO].text))]
    assert state.last_page_id is None and state.next_obs_due_at == at(720)


def test_one_to_four_pages_nobody_and_asks_for_a_nurse_assessment_on_the_board():
    state, actions = scored(Band.LOW, 0)
    [review] = actions
    assert isinstance(review, ReviewDue) and review.nurse_assessment is True
    assert (review.band, review.total, review.monitoring_minutes) == (Band.LOW, 1, 240)
    assert "registered nurse" in review.reasons[1]
    assert state.last_page_id is None and state.page_band is None


def test_the_board_hears_about_a_non_paging_band_once_per_change_not_per_score():
    state, first = scored(Band.LOW, 0)
    state, again = scored(Band.LOW, 240, state, page_id="p2")
    assert len(first) == 1 and again == []
    assert state.next_obs_due_at == at(480)  # the due time still moves with every set
    _, zero = scored(Band.ZERO, 480, state, page_id="p3")
    assert [type(a) for a in zero] == [ReviewDue]


@pytest.mark.parametrize(
    ("band", "role", "priority", "due_minutes", "wording"),
    [
        (Band.LOW_SINGLE_RED, "ward_doctor", "urgent", 60, "urgent ward-based review"),
        (Band.MEDIUM, "ward_doctor", "urgent", 60, "urgent"),
        (Band.HIGH, "critical_care_outreach", "emergency", 30, "emergency"),
    ],
)
def test_paging_bands_page_the_charts_role_at_once(band, role, priority, due_minutes, wording):
    state, actions = scored(band, 0)
    [page] = actions
    assert (page.page_id, page.role, page.priority, page.band) == ("p1", role, priority, band)
    assert page.reasons[0] == describe_scoring(SCORES[band]) and wording in page.reasons[1].lower()
    assert state.page_role == role and state.next_obs_due_at == at(due_minutes)
    assert state.last_page_at == T0 and state.acked is False


def test_a_page_carries_the_parameters_that_scored_and_the_trend():
    state, _ = scored(Band.ZERO, 0)
    state, _ = scored(Band.LOW, 60, state, page_id="p2")
    _, actions = scored(Band.HIGH, 120, state, page_id="p3")
    [page] = pages(actions)
    assert [(p.name, p.points) for p in page.scoring] == [("resp_rate", 3), ("spo2", 3), ("on_oxygen", 2)]
    assert [(t.at, t.total, t.band) for t in page.trend] == [
        (at(0), 0, Band.ZERO), (at(60), 1, Band.LOW), (at(120), 8, Band.HIGH)]


def test_the_trend_keeps_only_the_configured_number_of_scores():
    cfg = PagingConfig(trend_length=3)
    state = PagingState()
    for i in range(5):
        state, _ = scored(Band.ZERO, i * 60, state, cfg=cfg)
    assert [t.at for t in state.trend] == [at(120), at(180), at(240)]


# --- one page per episode ---

def test_the_same_band_again_is_the_same_episode_however_long_it_lasts():
    state, _ = scored(Band.MEDIUM, 0)
    for minute in (60, 120, 600):
        state, actions = scored(Band.MEDIUM, minute, state, page_id=f"p{minute}")
        assert pages(actions) == []
    assert state.page_ids == ("p1",)


def test_a_higher_band_re_pages_its_own_role():
    state, _ = scored(Band.LOW_SINGLE_RED, 0)
    state, actions = scored(Band.MEDIUM, 60, state, page_id="p2")
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p2", "ward_doctor")]
    state, actions = scored(Band.HIGH, 70, state, page_id="p3")
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p3", "critical_care_outreach")]
    assert state.page_band is Band.HIGH and state.page_ids == ("p3",)


def test_a_fall_does_not_page_and_a_rise_back_to_the_paged_band_does_not_either():
    state, _ = scored(Band.HIGH, 0)
    state, fall = scored(Band.MEDIUM, 30, state, page_id="p2")
    state, back = scored(Band.HIGH, 60, state, page_id="p3")
    assert pages(fall) == [] and pages(back) == []
    assert state.last_band is Band.HIGH and state.page_band is Band.HIGH


def test_the_episode_ends_after_scores_stay_below_the_paging_bands_for_the_configured_time():
    cfg = PagingConfig(episode_end_minutes=240)
    state, _ = scored(Band.MEDIUM, 0, cfg=cfg)
    state, _ = on_ack(state, "p1", at(5))
    state, _ = scored(Band.LOW, 60, state, page_id="p2", cfg=cfg)  # below since 60
    state, _ = scored(Band.ZERO, 299, state, page_id="p3", cfg=cfg)  # 239 minutes below: still on
    assert state.page_band is Band.MEDIUM
    state, _ = scored(Band.ZERO, 300, state, page_id="p4", cfg=cfg)  # 240 minutes below: over
    assert state.page_band is None and state.page_ids == () and state.below_since is None
    _, actions = scored(Band.MEDIUM, 400, state, page_id="p5", cfg=cfg)
    assert [a.page_id for a in pages(actions)] == ["p5"]  # a new episode, a new page


def test_a_paging_score_before_the_end_keeps_the_episode_and_restarts_the_count():
    """Unacknowledged (escalation still running): no rise pages again, and the end count restarts. (After an
    acknowledgement the same rise is a new deterioration: see below.)"""
    cfg = PagingConfig(episode_end_minutes=240)
    state, _ = scored(Band.MEDIUM, 0, cfg=cfg)
    state, _ = scored(Band.LOW, 60, state, page_id="p2", cfg=cfg)
    state, actions = scored(Band.MEDIUM, 200, state, page_id="p3", cfg=cfg)
    assert pages(actions) == [] and state.below_since is None
    state, _ = scored(Band.LOW, 260, state, page_id="p4", cfg=cfg)
    state, _ = scored(Band.LOW, 400, state, page_id="p5", cfg=cfg)  # 140 below since 260: still on
    assert state.page_band is Band.MEDIUM


def test_an_episode_whose_page_is_still_escalating_does_not_end():
    cfg = PagingConfig(episode_end_minutes=20, escalate_after_minutes=15)
    state, _ = scored(Band.MEDIUM, 0, cfg=cfg)  # never acknowledged
    state, _ = scored(Band.ZERO, 1, state, page_id="p2", cfg=cfg)
    state, _ = scored(Band.ZERO, 25, state, page_id="p3", cfg=cfg)
    assert state.page_band is Band.MEDIUM  # outreach has not been reached yet: keep escalating
    _, actions = tick(state, at(25), cfg)
    assert [a.role for a in actions if isinstance(a, Escalation)] == ["critical_care_outreach"]


# --- acknowledgements and escalation ---

def test_an_unacknowledged_page_escalates_after_the_configured_time_one_role_at_a_time():
    state, _ = scored(Band.MEDIUM, 0)
    same, actions = tick(state, at(14.99), CFG)
    assert actions == [] and same == state
    state, actions = tick(state, at(15), CFG)
    assert actions == [Escalation(
        page_id=escalation_page_id("p1", 2), role="critical_care_outreach", from_role="ward_doctor",
        priority="urgent", band=Band.MEDIUM, escalation_level=2,
        reasons=("Page p1 to ward_doctor was not acknowledged within 15 minutes; escalating to "
                 "critical_care_outreach.", describe_scoring(SCORES[Band.MEDIUM])), first=True)]
    state, actions = tick(state, at(29), CFG)
    assert actions == []
    state, actions = tick(state, at(30), CFG)
    assert [a.role for a in actions] == ["rapid_response"]
    assert [a.first for a in actions] == [False]  # the page escalated once, however far it goes
    _, actions = tick(state, at(300), CFG)
    assert not [a for a in actions if isinstance(a, Escalation)]  # the end of the chain


def test_an_ack_ends_escalation_for_the_whole_episode():
    state, _ = scored(Band.MEDIUM, 0)
    state, outcome = on_ack(state, "p1", at(3))
    assert outcome is AckOutcome.ACKED and state.acked_at == at(3)
    state, _ = scored(Band.MEDIUM, 60, state, page_id="p2")
    _, actions = tick(state, at(120), CFG)
    assert not [a for a in actions if isinstance(a, Escalation)]


def test_acking_the_escalation_or_the_first_page_both_stop_it():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = tick(state, at(15), CFG)
    for page_id in ("p1", escalation_page_id("p1", 2)):
        acked, outcome = on_ack(state, page_id, at(20))
        assert outcome is AckOutcome.ACKED
        assert not [a for a in tick(acked, at(40), CFG)[1] if isinstance(a, Escalation)]


def test_a_higher_band_page_needs_its_own_ack():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(2))
    state, _ = scored(Band.HIGH, 30, state, page_id="p2")
    assert state.acked is False
    after, outcome = on_ack(state, "p1", at(31))  # the superseded page: nothing left to stop
    assert outcome is AckOutcome.UNKNOWN and after == state
    _, actions = tick(state, at(45), CFG)
    assert [a.role for a in actions if isinstance(a, Escalation)] == ["rapid_response"]


def test_a_second_ack_is_already_acked_and_an_unknown_one_changes_nothing():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(3))
    again, outcome = on_ack(state, "p1", at(4))
    assert outcome is AckOutcome.ALREADY_ACKED and again == state
    assert on_ack(state, "nope", at(4)) == (state, AckOutcome.UNKNOWN)
    assert on_ack(PagingState(), "p1", T0) == (PagingState(), AckOutcome.UNKNOWN)


def test_a_late_ack_read_before_the_escalation_is_recorded_at_its_own_time():
    """An ack processed after its escalation went out still ends the episode's escalation, at its event time."""
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = tick(state, at(15), CFG)  # escalated before the ack arrived
    state, outcome = on_ack(state, "p1", at(9))
    assert outcome is AckOutcome.ACKED and state.acked_at == at(9)
    assert not [a for a in tick(state, at(60), CFG)[1] if isinstance(a, Escalation)]


def test_a_lower_score_never_cancels_escalation_of_an_unacknowledged_page():
    state, _ = scored(Band.HIGH, 0)
    state, _ = scored(Band.ZERO, 5, state, page_id="p2")
    _, actions = tick(state, at(15), CFG)
    assert [a.role for a in actions] == ["rapid_response"]


# --- a probe artefact asks for a repeat before anyone is paged; a 7 never waits ---

def test_spo2_40_with_normal_pulse_and_breathing_is_a_suspected_artefact():
    assert suspect_artefact(PROBE_OFF) == "spo2"
    assert suspect_artefact(score(replace(NORMAL, spo2=40, heart_rate=125), scale2=False)) is None
    assert suspect_artefact(score(replace(NORMAL, spo2=40, resp_rate=23), scale2=False)) is None
    assert suspect_artefact(SCORES[Band.LOW_SINGLE_RED]) is None  # breathing 26: nothing implausible


def test_an_artefact_asks_for_a_repeat_and_pages_nobody():
    state, actions = scored(PROBE_OFF, 0)
    assert actions == [RepeatObservation(
        suspect="spo2", repeat_by=at(CFG.repeat_within_minutes), band=Band.LOW_SINGLE_RED, total=3,
        reasons=(describe_scoring(PROBE_OFF),
                 f"SpO2 40% with normal pulse and breathing looks like a probe artefact: repeat the "
                 f"observations within {CFG.repeat_within_minutes:g} minutes; the page goes out if they "
                 "confirm it or do not come."))]
    assert state.pending_page_id == "p1" and state.page_ids == ()


def test_a_reassuring_repeat_clears_the_suspicion_without_a_page():
    state, _ = scored(PROBE_OFF, 0)
    state, actions = scored(Band.ZERO, 4, state, page_id="p2")
    assert pages(actions) == [] and state.pending_page_id is None
    assert tick(state, at(60), CFG)[1] == []


def test_a_repeat_that_confirms_pages_at_once():
    state, _ = scored(PROBE_OFF, 0)
    state, actions = scored(PROBE_OFF, 5, state, page_id="p2")  # the same reading twice is no artefact
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p2", "ward_doctor")]
    assert state.pending_page_id is None


def test_no_repeat_in_time_pages_on_the_suspect_reading():
    state, _ = scored(PROBE_OFF, 0)
    assert next_action_at(state, CFG) == at(CFG.repeat_within_minutes)
    _, actions = tick(state, at(CFG.repeat_within_minutes) - timedelta(seconds=1), CFG)
    assert actions == []
    state, actions = tick(state, at(CFG.repeat_within_minutes), CFG)
    [page] = actions
    assert (page.page_id, page.role, page.total) == ("p1", "ward_doctor", 3)
    assert "not repeated" in page.reasons[-1]
    assert state.page_ids == ("p1",) and state.pending_page_id is None


def test_seven_or_more_pages_at_once_even_with_an_implausible_reading():
    seven = score(replace(NORMAL, spo2=40, on_oxygen=True, temperature_c=39.2), scale2=False)
    assert seven.total == 7 and suspect_artefact(seven) == "spo2"
    _, actions = scored(seven, 0)
    assert [type(a) for a in actions] == [Page] and actions[0].priority == "emergency"


# --- overdue observations: per unit per ward round; a 5 or more on its own at once ---

def test_rounds_fall_on_the_configured_interval_from_midnight_utc():
    cfg = PagingConfig(overdue_round_minutes=240)
    assert previous_round(datetime(2024, 3, 1, 13, 59, tzinfo=UTC), cfg) == datetime(
        2024, 3, 1, 12, 0, tzinfo=UTC)
    assert previous_round(datetime(2024, 3, 1, 16, 0, tzinfo=UTC), cfg) == datetime(
        2024, 3, 1, 16, 0, tzinfo=UTC)


def test_a_ward_round_lists_each_units_overdue_patients_by_urgency_in_one_decision():
    low, _ = scored(Band.LOW, 0)  # due at 240
    zero, _ = scored(Band.ZERO, -600)  # due at 120
    red, _ = scored(Band.LOW_SINGLE_RED, 100)  # due at 160
    fresh, _ = scored(Band.LOW, 200)  # due at 440: not overdue
    red, _ = on_ack(red, "p1", at(101))
    patients = [("E1", "MED", low), ("E2", "MED", zero), ("E3", "MED", red), ("E4", "MED", fresh),
                ("E5", "SURG", zero)]
    rounds, updated = overdue_round(patients, at(300), CFG)
    assert [(r.unit, [p.encounter_id for p in r.patients]) for r in rounds] == [
        ("MED", ["E3", "E1", "E2"]), ("SURG", ["E5"])]
    med = rounds[0]
    assert isinstance(med, OverdueRound) and med.role == "nurse_in_charge" and med.round_at == at(300)
    assert [(p.band, p.due_at, p.minutes_overdue) for p in med.patients] == [
        (Band.LOW_SINGLE_RED, at(160), 140), (Band.LOW, at(240), 60), (Band.ZERO, at(120), 180)]
    assert "3 patients" in med.reasons[0]
    assert set(updated) == {"E1", "E2", "E3", "E5"}
    again, _ = overdue_round([(e, u, updated.get(e, s)) for e, u, s in patients], at(540), CFG)
    assert [(r.unit, [p.encounter_id for p in r.patients]) for r in again] == [("MED", ["E4"])]  # once per due time


def test_within_the_grace_time_nobody_is_overdue_yet():
    state, _ = scored(Band.LOW, 0)
    assert overdue_round([("E1", "MED", state)], at(240 + CFG.overdue_grace_minutes), CFG) == ([], {})


def test_a_patient_whose_last_score_was_5_or_more_is_overdue_on_their_own_at_once():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(1))
    assert next_action_at(state, CFG) == at(60 + CFG.overdue_grace_minutes)
    _, actions = tick(state, at(75), CFG)
    assert actions == []
    state, actions = tick(state, at(75.01), CFG)
    assert actions == [ObservationsOverdue(
        due_at=at(60), band=Band.MEDIUM, total=5, role="nurse_in_charge",
        reasons=("Observations were due at 2024-03-01T13:00:00+00:00 (every 60 minutes for NEWS2 5, "
                 "medium) and are more than 15 minutes overdue.",))]
    assert tick(state, at(200), CFG)[1] == []  # once per due time
    assert overdue_round([("E1", "MED", state)], at(240), CFG)[0] == []  # never again in a round


def test_an_urgent_patient_is_not_left_for_the_round():
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(1))
    assert overdue_round([("E1", "MED", state)], at(240), CFG) == ([], {})


# --- determinism, serialisation, config ---

def test_state_round_trips_through_json():
    state, _ = scored(Band.LOW, 0)
    state, _ = scored(PROBE_OFF, 30, state, page_id="p2")
    state, _ = scored(Band.HIGH, 35, state, page_id="p3")
    state, _ = tick(state, at(50), CFG)
    data = json.loads(json.dumps(state.to_dict()))
    assert PagingState.from_dict(data) == state
    assert PagingState.from_dict(json.loads(json.dumps(PagingState().to_dict()))) == PagingState()
    with pytest.raises(ValueError, match="colour"):
        PagingState.from_dict({**PagingState().to_dict(), "colour": "red"})


def test_the_stored_state_leaves_defaults_out_and_still_reads_every_field_written_out():
    assert PagingState().to_dict() == {}
    state, _ = scored(Band.LOW, 0)
    assert set(state.to_dict()) == {"last_band", "last_total", "last_obs_at", "next_obs_due_at", "trend",
                                    "last_complete_at"}
    state, _ = scored(Band.HIGH, 35, state, page_id="p3")
    full = {f.name: None for f in dataclasses.fields(PagingState)}  # records written with every field spelled out
    full.update(page_ids=[], pending_reasons=[], pending_scoring=[], trend=[], acked=False, reassessed=False)
    assert PagingState.from_dict({**full, **state.to_dict()}) == state


@pytest.mark.parametrize(
    "bad",
    [
        {"chain": ()},
        {"chain": ("nurse_in_charge", "nurse_in_charge")},
        {"chain": ("nurse_in_charge", "rapid_response")},  # ward_doctor pages are unreachable
        {"escalate_after_minutes": 0},
        {"episode_end_minutes": -1},
        {"repeat_within_minutes": 0},
        {"repeat_within_minutes": 20, "escalate_after_minutes": 15},  # a repeat must not outlast an escalation
        {"overdue_grace_minutes": -1},
        {"overdue_round_minutes": 0},
        {"overdue_round_minutes": 7 * 60},  # must divide a day
        {"trend_length": 0},
    ],
)
def test_config_rejects_inconsistent_settings(bad):
    with pytest.raises(ValueError):
        PagingConfig(**bad)


def test_renamed_roles_page_and_escalate_under_their_new_names():
    cfg = PagingConfig(
        responses=rename_roles(DEFAULT_RESPONSES, {"ward_doctor": "fy1_on_call"}),
        chain=("nurse_in_charge", "fy1_on_call", "critical_care_outreach", "rapid_response"),
    )
    state, actions = scored(Band.MEDIUM, 0, cfg=cfg)
    assert [a.role for a in actions] == ["fy1_on_call"]
    _, actions = tick(state, at(15), cfg)
    assert [(a.from_role, a.role) for a in actions] == [("fy1_on_call", "critical_care_outreach")]


def test_next_action_at_is_never_later_than_the_first_tick_that_acts():
    """The worker ticks a patient only once `next_action_at` has come: no action may be missed by that."""
    rng = random.Random(5)
    choices = [*SCORES.values(), PROBE_OFF]
    for trial in range(300):
        state, t = PagingState(), 0.0
        for step in range(rng.randrange(1, 6)):
            t += rng.uniform(0, 90)
            kind = rng.random()
            if kind < 0.6:
                state, _ = on_score(state, rng.choice(choices), at(t), CFG, page_id=f"p{trial}-{step}")
            elif kind < 0.8 and state.page_ids:
                state, _ = on_ack(state, rng.choice(state.page_ids), at(t))
            else:
                state, _ = tick(state, at(t), CFG)
        due = next_action_at(state, CFG)
        first_acting = next((m for m in range(int(t), int(t) + 24 * 60) if tick(state, at(m), CFG)[1]), None)
        if due is None:
            assert first_acting is None
        else:
            assert first_acting is None or at(first_acting) >= due
            assert tick(state, max(due, at(t)) + timedelta(minutes=1), CFG)[1]  # and it does act once due


def test_a_fall_below_the_episodes_band_for_the_configured_time_ends_it_and_the_lower_band_is_paged():
    cfg = PagingConfig(episode_end_minutes=60)
    state, _ = scored(Band.HIGH, 0, cfg=cfg)
    state, _ = on_ack(state, "p1", at(5))
    state, actions = scored(Band.MEDIUM, 30, state, page_id="p2", cfg=cfg)  # below the episode's band since 30
    assert pages(actions) == []
    state, actions = scored(Band.MEDIUM, 90, state, page_id="p3", cfg=cfg)  # 60 minutes below: a new episode
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p3", "ward_doctor")]
    state, actions = scored(Band.HIGH, 100, state, page_id="p4", cfg=cfg)  # and a rise from it pages again
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p4", "critical_care_outreach")]


# --- a new deterioration inside an open episode pages again ---

def test_an_acknowledged_episode_that_improves_and_rises_again_pages_again():
    """An improvement below the episode's band after review, then a rise into a paging band: a new
    deterioration the reviewing doctor has not seen. It pages its band's role, with a new page id."""
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(5))
    state, actions = scored(Band.LOW, 40, state, page_id="p2")
    assert pages(actions) == []
    state, actions = scored(Band.MEDIUM, 80, state, page_id="p3")  # before the episode's end time
    [page] = pages(actions)
    assert (page.page_id, page.role, page.repage) == ("p3", "ward_doctor", "new_deterioration")
    assert "improv" in page.reasons[2]
    assert state.page_ids == ("p3",) and state.acked is False  # the new page needs its own ack


def test_a_rise_after_falling_from_seven_to_five_pages_the_outreach_team_again():
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(3))
    state, fall = scored(Band.MEDIUM, 30, state, page_id="p2")
    state, steady = scored(Band.MEDIUM, 60, state, page_id="p3")  # still 5-6: no rise, nothing new
    state, rise = scored(Band.HIGH, 90, state, page_id="p4")
    assert pages(fall) == [] and pages(steady) == []
    assert [(a.page_id, a.role) for a in pages(rise)] == [("p4", "critical_care_outreach")]


def test_a_rise_from_four_to_five_after_a_seven_pages_the_ward_doctor():
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(3))
    state, _ = scored(Band.LOW, 30, state, page_id="p2")
    state, actions = scored(Band.MEDIUM, 50, state, page_id="p3")
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p3", "ward_doctor")]
    assert state.page_band is Band.MEDIUM


def test_a_rise_while_the_page_is_still_escalating_adds_no_page():
    """Nobody has reviewed yet: the escalation already takes the episode up the chain."""
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = scored(Band.LOW, 5, state, page_id="p2")
    state, actions = scored(Band.MEDIUM, 10, state, page_id="p3")
    assert pages(actions) == [] and state.page_ids == ("p1",)


def test_scores_below_the_band_for_the_end_time_end_the_episode_however_long_the_gap_to_the_next():
    """One reassuring set, then nothing for hours: the scores stayed below the band for longer than the end
    time, so the next paging score is a new episode, even at the same band."""
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(3))
    state, _ = scored(Band.ZERO, 30, state, page_id="p2")
    state, actions = scored(Band.HIGH, 30 + CFG.episode_end_minutes, state, page_id="p3")
    assert [(a.page_id, a.role, a.repage) for a in pages(actions)] == [("p3", "critical_care_outreach", None)]


def test_no_improvement_an_hour_after_review_pages_the_next_role_once():
    """Still 5-6 `reassess_after_minutes` after the ward doctor acknowledged: the outreach team is asked to
    review; once per episode, and a 7 or more (already the outreach team's) is never reassessed this way."""
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(5))
    state, early = scored(Band.MEDIUM, 60, state, page_id="p2")  # 55 minutes after the ack
    assert pages(early) == []
    state, actions = scored(Band.MEDIUM, 65, state, page_id="p3")
    [page] = pages(actions)
    assert (page.page_id, page.role, page.band, page.repage) == (
        "p3", "critical_care_outreach", Band.MEDIUM, "no_improvement")
    assert state.page_ids == ("p3",) and state.acked is False
    state, _ = on_ack(state, "p3", at(70))
    state, again = scored(Band.MEDIUM, 200, state, page_id="p4")
    assert pages(again) == []


def test_an_improving_patient_is_not_reassessed():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(5))
    _, actions = scored(Band.LOW, 70, state, page_id="p2")
    assert pages(actions) == []


def test_seven_or_more_watched_at_that_level_is_not_reassessed_by_time():
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(5))
    for minute in (30, 60, 90):
        state, actions = scored(Band.HIGH, minute, state, page_id=f"p{minute}")
        assert pages(actions) == []


def test_seven_or_more_after_an_hour_without_a_complete_set_asks_the_outreach_team_again_once():
    """After the review, only incomplete sets for an hour (no improvement can be seen in them): the next
    complete 7 or more asks the outreach team to review again; once per episode."""
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(5))
    incomplete = score_at_least(replace(NORMAL, resp_rate=25, spo2=None), scale2=False)
    assert incomplete.unmeasured
    state, _ = scored(incomplete, 50, state, page_id="p2")
    state, early = scored(Band.HIGH, 55, state, page_id="p3")  # 55 minutes after the last complete set
    assert pages(early) == []
    state, _ = scored(incomplete, 100, state, page_id="p4")
    state, actions = scored(Band.HIGH, 160, state, page_id="p5")
    [page] = pages(actions)
    assert (page.page_id, page.role, page.band, page.repage) == (
        "p5", "critical_care_outreach", Band.HIGH, "no_improvement")
    assert any("review again" in r for r in page.reasons)
    state, _ = on_ack(state, "p5", at(165))
    state, _ = scored(incomplete, 200, state, page_id="p6")
    _, again = scored(Band.HIGH, 300, state, page_id="p7")
    assert pages(again) == []


def test_spo2_91_with_normal_breathing_is_plausible_and_pages_at_once():
    """A mildly low SpO2 is a real reading (early hypoxaemia); only an implausibly low one waits for a repeat."""
    ninety_one = score(replace(NORMAL, spo2=91), scale2=False)
    assert ninety_one.band is Band.LOW_SINGLE_RED and suspect_artefact(ninety_one) is None
    _, actions = scored(ninety_one, 0)
    assert [type(a) for a in actions] == [Page]


def test_a_very_low_spo2_with_normal_breathing_and_a_pulse_up_to_110_is_a_suspected_artefact():
    assert suspect_artefact(score(replace(NORMAL, spo2=CFG.artefact_spo2_max), scale2=False)) == "spo2"
    assert suspect_artefact(score(replace(NORMAL, spo2=CFG.artefact_spo2_max + 1), scale2=False)) is None
    assert suspect_artefact(score(replace(NORMAL, spo2=70, heart_rate=105), scale2=False)) == "spo2"
    assert suspect_artefact(score(replace(NORMAL, spo2=70, heart_rate=115), scale2=False)) is None
    assert suspect_artefact(score(replace(NORMAL, spo2=70, resp_rate=22), scale2=False)) is None


# --- an incomplete set pages when its measured values alone reach a paging band ---

def partial(**values) -> Vitalset:
    return Vitalset(**{name: values.get(name) for name in PARAMETERS})


def test_an_incomplete_set_at_least_in_a_paging_band_pages_and_says_so():
    at_least_5 = score_at_least(partial(resp_rate=26, systolic_bp=95), scale2=False)
    _, actions = scored(at_least_5, 0)
    [page] = pages(actions)
    assert page.role == "ward_doctor" and page.reasons[0].startswith("NEWS2 at least 5")


def test_an_incomplete_set_is_no_evidence_of_improvement():
    """Its score is a lower bound: below the episode's band it neither starts the end count nor sets up a rise."""
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(3))
    at_least_5 = score_at_least(partial(resp_rate=26, systolic_bp=95), scale2=False)
    state, actions = scored(at_least_5, 30, state, page_id="p2")
    assert pages(actions) == [] and state.below_since is None and state.page_band is Band.HIGH
    _, actions = scored(Band.HIGH, 60, state, page_id="p3")
    assert pages(actions) == []  # no improvement was seen, so no new deterioration either


def test_a_low_spo2_without_breathing_or_pulse_measured_is_not_called_an_artefact():
    """Plausibility needs the breathing and the pulse: without them the reading pages at once."""
    assert suspect_artefact(score_at_least(partial(spo2=70), scale2=False)) is None


def test_a_rise_after_improvement_on_a_suspected_artefact_asks_for_a_repeat_first():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(5))
    state, _ = scored(Band.LOW, 40, state, page_id="p2")
    state, actions = scored(PROBE_OFF, 80, state, page_id="p3")
    assert [type(a) for a in actions] == [RepeatObservation]
    reassured, actions = scored(Band.ZERO, 84, state, page_id="p4")
    assert pages(actions) == [] and tick(reassured, at(120), CFG)[1] == []
    _, actions = tick(state, at(80 + CFG.repeat_within_minutes), CFG)  # no repeat came: it pages
    assert [(a.page_id, a.role) for a in pages(actions)] == [("p3", "ward_doctor")]


# --- a rising score inside 0-4: the nurse is asked to observe sooner (the board), nobody is paged ---

THREE = score(replace(NORMAL, heart_rate=95, systolic_bp=105, temperature_c=38.5), scale2=False)  # 1 + 1 + 1
FOUR = score(replace(NORMAL, heart_rate=95, systolic_bp=105, temperature_c=38.5, spo2=95), scale2=False)


def test_the_rising_score_sets_are_in_the_intended_bands():
    assert (THREE.band, THREE.total, FOUR.band, FOUR.total) == (Band.LOW, 3, Band.LOW, 4)


def test_a_rise_of_two_points_inside_the_non_paging_bands_asks_for_observations_sooner_and_pages_nobody():
    state, _ = scored(Band.ZERO, 0)
    state, actions = scored(THREE, 60, state, page_id="p2")
    [review] = actions
    assert isinstance(review, ReviewDue) and review.rising_from == 0
    assert (review.band, review.total, review.monitoring_minutes, review.next_obs_due_at) == (Band.LOW, 3, 30, at(90))
    assert review.nurse_assessment is True
    assert "rose from 0 to 3" in review.reasons[-1] and "30 minutes" in review.reasons[-1]
    assert state.next_obs_due_at == at(90) and state.page_band is None and state.last_page_id is None


def test_a_rise_inside_the_same_band_is_news_for_the_board_too():
    state, _ = scored(Band.LOW, 0)  # 1
    state, actions = scored(THREE, 60, state, page_id="p2")  # 1 -> 3: the band has not changed
    assert [(type(a), a.rising_from, a.monitoring_minutes) for a in actions] == [(ReviewDue, 1, 30)]


def test_a_rise_of_one_point_or_a_fall_keeps_the_charts_own_frequency():
    state, _ = scored(Band.ZERO, 0)
    state, actions = scored(Band.LOW, 60, state, page_id="p2")  # 0 -> 1: the band changes, the chart's 4-hourly
    assert [(a.rising_from, a.monitoring_minutes) for a in actions] == [(None, 240)]
    state, _ = scored(FOUR, 120, state, page_id="p3")  # 1 -> 4: rising
    state, actions = scored(THREE, 150, state, page_id="p4")  # 4 -> 3: falling
    assert actions == [] and state.next_obs_due_at == at(150 + 240)
    state, actions = scored(FOUR, 180, state, page_id="p5")  # 3 -> 4: one point
    assert actions == [] and state.next_obs_due_at == at(180 + 240)


def test_a_rise_into_a_paging_band_pages_as_the_chart_says():
    state, _ = scored(Band.ZERO, 0)
    _, actions = scored(Band.MEDIUM, 60, state, page_id="p2")
    assert [type(a) for a in actions] == [Page]


def test_the_rise_needed_is_configurable():
    cfg = PagingConfig(rising_points=3, rising_observe_minutes=45)
    state, _ = scored(Band.ZERO, 0, cfg=cfg)
    state, actions = scored(THREE, 60, state, page_id="p2", cfg=cfg)
    assert [(a.rising_from, a.monitoring_minutes, a.next_obs_due_at) for a in actions] == [(0, 45, at(105))]
    _, actions = scored(FOUR, 90, scored(Band.LOW, 0, cfg=cfg)[0], page_id="p3", cfg=cfg)  # 1 -> 4
    assert [a.rising_from for a in actions] == [1]


def test_a_patient_not_observed_after_a_rise_is_on_the_next_ward_rounds_overdue_list():
    state, _ = scored(Band.ZERO, 0)
    state, _ = scored(THREE, 60, state, page_id="p2")  # observe again by 90
    rounds, _ = overdue_round([("E1", "MED", state)], at(240), CFG)  # T0 is noon: a round at 16:00
    assert [(p.encounter_id, p.due_at) for r in rounds for p in r.patients] == [("E1", at(90))]


@pytest.mark.parametrize("bad", [{"rising_points": 0}, {"rising_observe_minutes": 0},
                                 {"rising_observe_minutes": 240}])  # must be sooner than the chart's 4-hourly
def test_config_rejects_a_rising_rule_that_asks_for_nothing(bad):
    with pytest.raises(ValueError, match="rising"):
        PagingConfig(**bad)


# --- a reassuring repeat that is itself a rise is no reassurance ---

def test_a_repeat_two_points_above_the_set_before_the_suspect_reading_pages_the_suspect_set():
    state, _ = scored(Band.ZERO, 0)
    state, asked = scored(PROBE_OFF, 60, state, page_id="p2")  # suspect SpO2: a repeat first
    assert [type(a) for a in asked] == [RepeatObservation]
    state, actions = scored(THREE, 64, state, page_id="p3")  # 0 -> (suspect) -> 3: below the bands, but rising
    [page] = pages(actions)
    assert (page.page_id, page.role, page.band, page.total) == ("p2", "ward_doctor", Band.LOW_SINGLE_RED, 3)
    assert "rose from 0 to 3" in page.reasons[-1]
    assert state.page_ids == ("p2",) and state.pending_page_id is None
    assert [type(a) for a in actions] == [Page]  # the page says it all: no rising review besides


def test_a_repeat_less_than_two_points_above_the_set_before_clears_the_suspicion():
    state, _ = scored(Band.LOW, 0)  # 1
    state, _ = scored(PROBE_OFF, 60, state, page_id="p2")
    state, actions = scored(Band.LOW, 64, state, page_id="p3")  # 1 -> (suspect) -> 1
    assert pages(actions) == [] and state.pending_page_id is None and tick(state, at(120), CFG)[1] == []
    state, _ = scored(FOUR, 120, state, page_id="p4")  # 1 -> 4: a rise with no suspect reading is a board task
    state, _ = scored(PROBE_OFF, 180, state, page_id="p5")
    state, actions = scored(THREE, 184, state, page_id="p6")  # 4 -> (suspect) -> 3: not a rise
    assert pages(actions) == [] and state.pending_page_id is None


def test_state_with_a_pending_rise_check_round_trips_through_json():
    state, _ = scored(Band.ZERO, 0)
    state, _ = scored(PROBE_OFF, 60, state, page_id="p2")
    assert state.pending_from_total == 0
    assert PagingState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    legacy = {k: v for k, v in state.to_dict().items() if k != "pending_from_total"}  # a state stored before
    assert PagingState.from_dict(legacy).pending_from_total is None


# --- a repeat whose SpO2 is still low does not reassure ---

def test_a_repeat_with_spo2_still_at_92_pages_the_suspect_set():
    """80% with a normal pulse looks like the probe; 92% two minutes later (2 points on scale 1) says the
    hypoxaemia is real even if the deep reading was not (found by the paging report: the repeat "reassured"
    at 92% and the next set, 50 minutes later, scored 10)."""
    state, _ = scored(Band.LOW, 0)  # 1: the repeat's 2 is no rise
    state, _ = scored(PROBE_OFF, 60, state, page_id="p2")
    repeat = score(replace(NORMAL, spo2=92), scale2=False)
    assert repeat.total == 2 and not CFG.paging_band(repeat.band)
    state, actions = scored(repeat, 63, state, page_id="p3")
    [page] = pages(actions)
    assert (page.page_id, page.after_repeat) == ("p2", "repeat_still_low")
    assert "SpO2 is 92%" in page.reasons[-1]
    assert state.pending_page_id is None


def test_a_repeat_with_spo2_at_94_reassures():
    state, _ = scored(Band.ZERO, 0)
    state, _ = scored(PROBE_OFF, 60, state, page_id="p2")
    state, actions = scored(score(replace(NORMAL, spo2=94), scale2=False), 63, state, page_id="p3")  # 1 point
    assert pages(actions) == [] and state.pending_page_id is None
