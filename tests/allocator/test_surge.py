"""Surge level (OPEL 1-4) with hysteresis: up at once, down only with a margin."""
import json
from datetime import UTC, datetime, timedelta

import pytest

from allocator.surge import (
    LevelThresholds,
    SurgeConfig,
    SurgeFigures,
    SurgeState,
    evaluate_surge,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
# Defaults: OPEL 2 / 3 / 4 at occupancy 90 / 95 / 99 %, waiting 5 / 10 / 20,
# arrivals 10 / 15 / 25 an hour; margins 3 points, 2 waiting, 3 arrivals.
CFG = SurgeConfig()
CALM = SurgeFigures(occupancy=0.80, waiting=1, arrivals_last_hour=4)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def figures(occupancy: float = 0.80, waiting: int = 1, arrivals: int = 4) -> SurgeFigures:
    return SurgeFigures(occupancy=occupancy, waiting=waiting, arrivals_last_hour=arrivals)


def level_of(fig: SurgeFigures, previous: SurgeState | None = None, minutes: float = 0,
             cfg: SurgeConfig = CFG) -> int:
    return evaluate_surge(previous, fig, at(minutes), cfg)[0].level


def test_default_thresholds():
    assert CFG.thresholds == (
        LevelThresholds(occupancy=0.90, waiting=5, arrivals_per_hour=10),
        LevelThresholds(occupancy=0.95, waiting=10, arrivals_per_hour=15),
        LevelThresholds(occupancy=0.99, waiting=20, arrivals_per_hour=25),
    )


def test_first_evaluation_is_a_change_to_the_level_the_figures_reach():
    state, changed, reasons = evaluate_surge(None, CALM, T0, CFG)
    assert (state.level, state.since, changed) == (1, T0, True)
    assert reasons == [
        "All figures are below the OPEL 2 thresholds: occupancy 80%, 1 waiting for a bed, "
        "4 arrivals in the last hour."
    ]


@pytest.mark.parametrize(
    ("fig", "level"),
    [
        (figures(occupancy=0.8999), 1), (figures(occupancy=0.90), 2),
        (figures(occupancy=0.9499), 2), (figures(occupancy=0.95), 3),
        (figures(occupancy=0.9899), 3), (figures(occupancy=0.99), 4), (figures(occupancy=1.0), 4),
        (figures(waiting=4), 1), (figures(waiting=5), 2), (figures(waiting=9), 2),
        (figures(waiting=10), 3), (figures(waiting=19), 3), (figures(waiting=20), 4),
        (figures(arrivals=9), 1), (figures(arrivals=10), 2), (figures(arrivals=14), 2),
        (figures(arrivals=15), 3), (figures(arrivals=24), 3), (figures(arrivals=25), 4),
    ],
)
def test_each_input_alone_sets_the_level_at_its_threshold(fig, level):
    assert level_of(fig) == level


def test_level_is_the_highest_any_input_reaches():
    state, _, reasons = evaluate_surge(None, figures(occupancy=0.91, waiting=21), T0, CFG)
    assert state.level == 4
    assert reasons == ["Patients waiting for a bed (21) are at or above the OPEL 4 threshold of 20."]


def test_reasons_name_every_figure_that_reaches_the_level():
    _, _, reasons = evaluate_surge(None, figures(occupancy=0.96, waiting=12, arrivals=16), T0, CFG)
    assert reasons == [
        "Occupancy 96% is at or above the OPEL 3 threshold of 95%.",
        "Patients waiting for a bed (12) are at or above the OPEL 3 threshold of 10.",
        "Arrivals in the last hour (16) are at or above the OPEL 3 threshold of 15.",
    ]


def test_goes_up_immediately_and_by_more_than_one_level():
    state, _, _ = evaluate_surge(None, CALM, T0, CFG)
    state, changed, reasons = evaluate_surge(state, figures(occupancy=0.995), at(1), CFG)
    assert (state.level, state.since, changed) == (4, at(1), True)
    assert reasons == ["Occupancy 99.5% is at or above the OPEL 4 threshold of 99%."]


def test_same_level_is_not_a_change_and_keeps_its_start_time():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, CFG)
    state, changed, _ = evaluate_surge(state, figures(occupancy=0.97), at(5), CFG)
    assert (state.level, state.since, changed) == (3, T0, False)


# --- hysteresis ---

@pytest.mark.parametrize(
    ("occupancy", "level"),
    [(0.94, 3), (0.93, 3), (0.92, 3), (0.9199, 2), (0.87, 2), (0.8699, 1)],
)
def test_occupancy_must_fall_3_points_below_the_threshold_to_step_down(occupancy, level):
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, CFG)
    assert level_of(figures(occupancy=occupancy), state, minutes=10) == level


@pytest.mark.parametrize(("waiting", "level"), [(9, 3), (8, 3), (7, 2), (3, 2), (2, 1)])
def test_waiting_must_fall_2_below_the_threshold_to_step_down(waiting, level):
    state, _, _ = evaluate_surge(None, figures(waiting=10), T0, CFG)
    assert level_of(figures(waiting=waiting), state, minutes=10) == level


@pytest.mark.parametrize(("arrivals", "level"), [(12, 3), (11, 2), (7, 2), (6, 1)])
def test_arrivals_must_fall_3_below_the_threshold_to_step_down(arrivals, level):
    state, _, _ = evaluate_surge(None, figures(arrivals=15), T0, CFG)
    assert level_of(figures(arrivals=arrivals), state, minutes=10) == level


def test_one_figure_inside_its_margin_holds_the_level():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96, waiting=10), T0, CFG)
    state, changed, reasons = evaluate_surge(state, figures(occupancy=0.50, waiting=9), at(5), CFG)
    assert (state.level, changed) == (3, False)
    assert reasons == [
        "Holding OPEL 3: patients waiting for a bed (9) have not yet fallen below 8 "
        "(the OPEL 3 threshold of 10 less a margin of 2)."
    ]


def test_holding_reason_for_occupancy_names_the_figure_and_the_exit_point():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, CFG)
    _, _, reasons = evaluate_surge(state, figures(occupancy=0.93), at(5), CFG)
    assert reasons == [
        "Holding OPEL 3: occupancy 93% has not yet fallen below 92% "
        "(the OPEL 3 threshold of 95% less a margin of 3 points)."
    ]


def test_step_down_reasons_explain_the_drop_and_the_new_level():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, CFG)
    state, changed, reasons = evaluate_surge(state, figures(occupancy=0.91), at(5), CFG)
    assert (state.level, state.since, changed) == (2, at(5), True)
    assert reasons == [
        "All figures are below the OPEL 3 thresholds less their margins.",
        "Occupancy 91% is at or above the OPEL 2 threshold of 90%.",
    ]


def test_step_down_can_stop_at_a_level_held_by_its_own_margin():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.995), T0, CFG)
    state, _, reasons = evaluate_surge(state, figures(occupancy=0.93), at(5), CFG)
    assert state.level == 3  # 93% is below 99-3 but within the OPEL 3 margin
    assert reasons[0] == "All figures are below the OPEL 4 thresholds less their margins."
    assert reasons[1].startswith("Holding OPEL 3: occupancy 93%")


def test_no_flapping_when_a_figure_oscillates_around_a_threshold():
    state = None
    changes = []
    for minute, occupancy in enumerate([0.949, 0.951, 0.949, 0.951, 0.948, 0.952, 0.949] * 5):
        state, changed, _ = evaluate_surge(state, figures(occupancy=occupancy), at(minute), CFG)
        changes.append((minute, state.level) if changed else None)
    assert [c for c in changes if c] == [(0, 2), (1, 3)]


def test_a_tiny_margin_still_steps_down_promptly():
    cfg = SurgeConfig(occupancy_margin=0.0)
    state, _, _ = evaluate_surge(None, figures(occupancy=0.95), T0, cfg)
    assert level_of(figures(occupancy=0.9499), state, minutes=1, cfg=cfg) == 2


def test_a_figure_exactly_at_threshold_less_margin_holds_despite_float_arithmetic():
    # In floats 0.58 * 100 < 0.59 * 100 - 0.01 * 100; as charted, 58% is not below 58%.
    cfg = SurgeConfig(
        thresholds=(LevelThresholds(0.59, 5, 10), *CFG.thresholds[1:]), occupancy_margin=0.01
    )
    state, _, _ = evaluate_surge(None, figures(occupancy=0.60), T0, cfg)
    assert level_of(figures(occupancy=0.58), state, minutes=1, cfg=cfg) == 2
    assert level_of(figures(occupancy=0.5799), state, minutes=1, cfg=cfg) == 1


# --- minimum dwell ---

def test_minimum_dwell_delays_a_step_down_but_not_a_step_up():
    cfg = SurgeConfig(min_dwell_minutes=30)
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, cfg)
    held, changed, reasons = evaluate_surge(state, CALM, at(29), cfg)
    assert (held.level, held.since, changed) == (3, T0, False)
    assert reasons == [
        "Holding OPEL 3 for its minimum of 30 minutes from 2024-03-01T12:00:00+00:00; "
        "the figures now fit OPEL 1."
    ]
    down, changed, _ = evaluate_surge(held, CALM, at(30), cfg)
    assert (down.level, down.since, changed) == (1, at(30), True)
    up, changed, _ = evaluate_surge(state, figures(occupancy=0.995), at(1), cfg)
    assert (up.level, changed) == (4, True)


# --- validation and serialisation ---

@pytest.mark.parametrize(
    "bad",
    [
        {"occupancy": -0.01}, {"occupancy": 1.01}, {"occupancy": float("nan")},
        {"waiting": -1}, {"arrivals_last_hour": -1},
    ],
)
def test_figures_reject_impossible_values(bad):
    with pytest.raises(ValueError):
        SurgeFigures(**{"occupancy": 0.5, "waiting": 0, "arrivals_last_hour": 0, **bad})


@pytest.mark.parametrize(
    "bad",
    [
        {"thresholds": (LevelThresholds(0.9, 5, 10), LevelThresholds(0.9, 10, 15),
                        LevelThresholds(0.99, 20, 25))},
        {"thresholds": (LevelThresholds(0.9, 5, 10), LevelThresholds(0.95, 10, 15))},
        {"occupancy_margin": -0.01},
        {"waiting_margin": -1},
        {"min_dwell_minutes": -1},
    ],
)
def test_config_rejects_inconsistent_settings(bad):
    with pytest.raises(ValueError):
        SurgeConfig(**bad)


def test_state_round_trips_through_json():
    state, _, _ = evaluate_surge(None, figures(occupancy=0.96), T0, CFG)
    assert SurgeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_same_inputs_give_the_same_result():
    def run():
        return evaluate_surge(None, figures(occupancy=0.96, waiting=12), T0, CFG)

    assert run() == run()
