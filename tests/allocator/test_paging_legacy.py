"""Today's (legacy) paging rules, kept only for the paging report's comparison: they must still behave as before."""
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allocator.news2 import Band, Vitalset, describe_scoring, rename_roles, score
from allocator.paging_legacy import LEGACY_RESPONSES as DEFAULT_RESPONSES
from allocator.paging_legacy import (
    AckOutcome,
    Escalation,
    ObservationsOverdue,
    Page,
    PagingConfig,
    PagingState,
    escalation_page_id,
    on_ack,
    on_score,
    tick,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CFG = PagingConfig()
NORMAL = Vitalset(
    resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=120, heart_rate=70, consciousness="A",
    temperature_c=37.0,
)
# One vital set per band.
SCORES = {
    Band.ZERO: score(NORMAL, scale2=False),
    Band.LOW: score(replace(NORMAL, heart_rate=95), scale2=False),
    Band.LOW_SINGLE_RED: score(replace(NORMAL, resp_rate=26), scale2=False),
    Band.MEDIUM: score(replace(NORMAL, heart_rate=115, on_oxygen=True, temperature_c=35.5),
                       scale2=False),
    Band.HIGH: score(replace(NORMAL, resp_rate=26, spo2=91, on_oxygen=True), scale2=False),
}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def scored(band: Band, minutes: float, state: PagingState | None = None, page_id: str = "p1",
           cfg: PagingConfig = CFG):
    return on_score(state or PagingState(), SCORES[band], at(minutes), cfg, page_id=page_id)


def test_score_sets_are_in_the_intended_bands():
    assert {band: s.band for band, s in SCORES.items()} == {band: band for band in Band}


# --- paging on a new score ---

def test_zero_band_pages_nobody_but_sets_the_12_hour_obs_due_time():
    state, actions = scored(Band.ZERO, 0)
    assert actions == []
    assert state.last_band is Band.ZERO and state.last_page_id is None
    assert state.last_obs_at == T0 and state.next_obs_due_at == at(12 * 60)


def test_low_band_informs_the_nurse_in_charge():
    state, actions = scored(Band.LOW, 0)
    assert actions == [
        Page(
            page_id="p1", role="nurse_in_charge", priority="routine", band=Band.LOW, total=1,
            reasons=(describe_scoring(SCORES[Band.LOW]),
                     DEFAULT_RESPONSES[Band.LOW].text),
        )
    ]
    assert (state.last_page_id, state.page_role, state.escalation_level) == (
        "p1", "nurse_in_charge", 0,
    )
    assert state.acked is False and state.last_page_at == T0
    assert state.next_obs_due_at == at(4 * 60)


@pytest.mark.parametrize(
    ("band", "role", "priority", "level", "due_minutes"),
    [
        (Band.LOW_SINGLE_RED, "ward_doctor", "urgent", 1, 60),
        (Band.MEDIUM, "ward_doctor", "urgent", 1, 60),
        (Band.HIGH, "critical_care_outreach", "emergency", 2, 30),
    ],
)
def test_higher_bands_page_their_role(band, role, priority, level, due_minutes):
    state, actions = scored(band, 0)
    [page] = actions
    assert (page.role, page.priority, page.band) == (role, priority, band)
    assert "NEWS2" in page.reasons[0]
    assert state.escalation_level == level and state.page_role == role
    assert state.next_obs_due_at == at(due_minutes)


def test_same_band_within_suppression_window_is_not_paged_again():
    state, _ = scored(Band.MEDIUM, 0)
    state, actions = scored(Band.MEDIUM, 59, state, page_id="p2")
    assert actions == []
    assert state.last_page_id == "p1" and state.last_page_at == T0
    assert state.last_obs_at == at(59)  # the observation still counts


def test_same_band_pages_again_once_the_window_has_passed():
    state, _ = scored(Band.MEDIUM, 0)
    state, actions = scored(Band.MEDIUM, 60, state, page_id="p2")
    assert [a.page_id for a in actions] == ["p2"]
    assert state.last_page_id == "p2"


def test_suppression_window_is_configurable():
    cfg = PagingConfig(suppression_minutes=10)
    state, _ = scored(Band.MEDIUM, 0, cfg=cfg)
    _, actions = scored(Band.MEDIUM, 10, state, page_id="p2", cfg=cfg)
    assert len(actions) == 1


@pytest.mark.parametrize(
    ("first", "second", "role"),
    [
        (Band.ZERO, Band.LOW, "nurse_in_charge"),
        (Band.LOW, Band.LOW_SINGLE_RED, "ward_doctor"),
        (Band.LOW_SINGLE_RED, Band.MEDIUM, "ward_doctor"),
        (Band.MEDIUM, Band.HIGH, "critical_care_outreach"),
        (Band.LOW, Band.HIGH, "critical_care_outreach"),
    ],
)
def test_a_rise_in_band_always_pages_even_inside_the_window(first, second, role):
    state, _ = scored(first, 0)
    state, actions = scored(second, 1, state, page_id="p2")
    assert [(a.page_id, a.role) for a in actions] == [("p2", role)]


def test_a_fall_in_band_inside_the_window_does_not_page():
    state, _ = scored(Band.HIGH, 0)
    state, actions = scored(Band.MEDIUM, 10, state, page_id="p2")
    assert actions == []
    assert state.last_band is Band.MEDIUM and state.page_band is Band.HIGH


def test_rise_is_measured_against_the_band_last_paged_not_the_last_score():
    state, _ = scored(Band.HIGH, 0)
    state, _ = scored(Band.MEDIUM, 10, state, page_id="p2")
    state, actions = scored(Band.HIGH, 20, state, page_id="p3")
    assert actions == []


def test_a_lower_band_after_the_window_pages_its_own_role():
    state, _ = scored(Band.HIGH, 0)
    state, _ = on_ack(state, "p1", at(5))
    state, actions = scored(Band.MEDIUM, 61, state, page_id="p2")
    assert [(a.role, a.band) for a in actions] == [("ward_doctor", Band.MEDIUM)]
    assert state.escalation_level == 1 and state.acked is False


def test_zero_after_a_page_pages_nobody_and_keeps_the_page_open():
    state, _ = scored(Band.LOW, 0)
    state, actions = scored(Band.ZERO, 70, state, page_id="p2")
    assert actions == []
    assert state.last_page_id == "p1" and state.acked is False


# --- acknowledgements ---

def test_ack_marks_the_page_acknowledged():
    state, _ = scored(Band.MEDIUM, 0)
    state, outcome = on_ack(state, "p1", at(3))
    assert outcome is AckOutcome.ACKED
    assert state.acked is True and state.acked_at == at(3)


def test_second_ack_is_reported_as_already_acked():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(3))
    again, outcome = on_ack(state, "p1", at(4))
    assert outcome is AckOutcome.ALREADY_ACKED and again == state


def test_ack_for_an_unknown_page_changes_nothing():
    state, _ = scored(Band.MEDIUM, 0)
    after, outcome = on_ack(state, "nope", at(3))
    assert outcome is AckOutcome.UNKNOWN and after == state


def test_ack_for_a_superseded_page_is_unknown():
    state, _ = scored(Band.LOW, 0)
    state, _ = scored(Band.HIGH, 5, state, page_id="p2")
    after, outcome = on_ack(state, "p1", at(6))
    assert outcome is AckOutcome.UNKNOWN and after.acked is False


def test_ack_with_no_page_ever_sent_is_unknown():
    state, outcome = on_ack(PagingState(), "p1", T0)
    assert outcome is AckOutcome.UNKNOWN and state == PagingState()


# --- escalation ---

def test_unacked_page_escalates_to_the_next_role_after_the_interval():
    state, _ = scored(Band.LOW, 0)
    same, actions = tick(state, at(14.99), CFG)
    assert actions == [] and same == state
    state, actions = tick(state, at(15), CFG)
    assert actions == [
        Escalation(
            page_id=escalation_page_id("p1", 1), role="ward_doctor", from_role="nurse_in_charge",
            priority="routine", band=Band.LOW, escalation_level=1,
            reasons=("Page p1 to nurse_in_charge was not acknowledged within 15 minutes; "
                     "escalating to ward_doctor.", describe_scoring(SCORES[Band.LOW])),
        )
    ]
    assert (state.page_role, state.escalation_level, state.last_page_at) == (
        "ward_doctor", 1, at(15),
    )
    assert state.last_page_id == escalation_page_id("p1", 1)


def test_escalation_walks_the_chain_one_step_per_interval_and_stops_at_the_end():
    state, _ = scored(Band.LOW, 0)
    roles = []
    for minute in range(1, 121):
        state, actions = tick(state, at(minute), CFG)
        roles += [(minute, a.role) for a in actions if isinstance(a, Escalation)]
    assert roles == [(15, "ward_doctor"), (30, "critical_care_outreach"), (45, "rapid_response")]
    assert state.escalation_level == 3


def test_a_late_tick_escalates_only_one_step():
    state, _ = scored(Band.LOW, 0)
    state, actions = tick(state, at(50), CFG)
    assert [a.role for a in actions] == ["ward_doctor"]
    state, actions = tick(state, at(64), CFG)
    assert actions == []
    _, actions = tick(state, at(65), CFG)
    assert [a.role for a in actions] == ["critical_care_outreach"]


def test_high_band_escalates_from_outreach_to_rapid_response_then_stops():
    state, _ = scored(Band.HIGH, 0)
    state, actions = tick(state, at(15), CFG)
    assert [(a.role, a.priority) for a in actions] == [("rapid_response", "emergency")]
    _, actions = tick(state, at(60), CFG)
    assert [a for a in actions if isinstance(a, Escalation)] == []


def test_ack_stops_escalation():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(10))
    _, actions = tick(state, at(20), CFG)
    assert actions == []


def test_acking_the_escalation_page_or_the_original_both_stop_escalation():
    state, _ = scored(Band.LOW, 0)
    state, _ = tick(state, at(15), CFG)
    for page_id in ("p1", escalation_page_id("p1", 1)):
        acked, outcome = on_ack(state, page_id, at(20))
        assert outcome is AckOutcome.ACKED
        assert tick(acked, at(40), CFG)[1] == []


def test_a_lower_score_does_not_cancel_escalation_of_an_unacked_page():
    state, _ = scored(Band.HIGH, 0)
    state, _ = scored(Band.ZERO, 5, state, page_id="p2")
    _, actions = tick(state, at(15), CFG)
    assert [a.role for a in actions] == ["rapid_response"]


def test_escalate_after_is_configurable():
    cfg = PagingConfig(escalate_after_minutes=5)
    state, _ = scored(Band.MEDIUM, 0, cfg=cfg)
    _, actions = tick(state, at(5), cfg)
    assert [a.role for a in actions] == ["critical_care_outreach"]


def test_a_new_page_starts_a_fresh_escalation_from_its_own_role():
    state, _ = scored(Band.LOW, 0)
    state, _ = tick(state, at(15), CFG)  # -> ward_doctor
    state, actions = scored(Band.HIGH, 20, state, page_id="p2")
    assert state.escalation_level == 2 and state.page_role == "critical_care_outreach"
    state, actions = tick(state, at(34), CFG)
    assert actions == []
    _, actions = tick(state, at(35), CFG)
    assert [a.page_id for a in actions] == [escalation_page_id("p2", 3)]


# --- overdue observations ---

def test_overdue_observations_reported_once_per_due_time():
    state, _ = scored(Band.MEDIUM, 0)
    state, _ = on_ack(state, "p1", at(1))
    state, actions = tick(state, at(75), CFG)  # due at 60, grace 15: not yet overdue
    assert actions == []
    state, actions = tick(state, at(75.01), CFG)
    assert actions == [
        ObservationsOverdue(
            due_at=at(60), band=Band.MEDIUM, role="nurse_in_charge",
            reasons=("Observations were due at 2024-03-01T13:00:00+00:00 (every 60 minutes "
                     "for NEWS2 medium) and are more than 15 minutes overdue.",),
        )
    ]
    assert state.overdue_reported_for == at(60)
    state, actions = tick(state, at(200), CFG)
    assert actions == []
    # A new set moves the due time; a later lapse is reported again.
    state, _ = scored(Band.MEDIUM, 210, state, page_id="p2")
    state, _ = on_ack(state, "p2", at(211))
    state, actions = tick(state, at(285), CFG)
    assert actions == []
    _, actions = tick(state, at(286), CFG)
    assert [a.due_at for a in actions] == [at(270)]


def test_overdue_grace_is_configurable():
    cfg = PagingConfig(overdue_grace_minutes=0)
    state, _ = scored(Band.ZERO, 0, cfg=cfg)
    assert tick(state, at(720), cfg)[1] == []
    assert len(tick(state, at(720.01), cfg)[1]) == 1


def test_no_overdue_before_any_observation():
    assert tick(PagingState(), at(10_000), CFG) == (PagingState(), [])


def test_escalation_and_overdue_can_come_from_one_tick():
    state, _ = scored(Band.HIGH, 0)
    _, actions = tick(state, at(46), CFG)  # obs due at 30 + 15 grace; page unacked
    assert [type(a) for a in actions] == [Escalation, ObservationsOverdue]


# --- determinism, serialisation, config ---

def test_same_inputs_give_the_same_actions():
    def run():
        state, out = scored(Band.LOW, 0)
        actions = list(out)
        for minute in (10, 15, 31, 47, 300):
            state, out = tick(state, at(minute), CFG)
            actions += out
        return state, actions

    assert run() == run()


def test_state_round_trips_through_json():
    state, _ = scored(Band.HIGH, 0)
    state, _ = tick(state, at(46), CFG)
    data = json.loads(json.dumps(state.to_dict()))
    assert PagingState.from_dict(data) == state
    assert PagingState.from_dict(json.loads(json.dumps(PagingState().to_dict()))) == PagingState()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="colour"):
        PagingState.from_dict({**PagingState().to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    "bad",
    [
        {"chain": ()},
        {"chain": ("nurse_in_charge", "nurse_in_charge")},
        {"chain": ("nurse_in_charge", "rapid_response")},  # ward_doctor pages are unreachable
        {"escalate_after_minutes": 0},
        {"suppression_minutes": -1},
        {"overdue_grace_minutes": -1},
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
    """The worker only ticks a patient once `next_action_at` has come: no action may be missed by that."""
    import random

    from allocator.paging_legacy import next_action_at

    rng = random.Random(5)
    for trial in range(300):
        state, t = PagingState(), 0.0
        for step in range(rng.randrange(1, 6)):
            t += rng.uniform(0, 90)
            kind = rng.random()
            if kind < 0.6:
                band = rng.choice(list(SCORES))
                state, _ = on_score(state, SCORES[band], at(t), CFG, page_id=f"p{trial}-{step}")
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
