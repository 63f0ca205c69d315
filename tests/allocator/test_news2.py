"""NEWS2 (Royal College of Physicians, 2017): every band edge of every parameter, both sides."""
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allocator.news2 import (
    DEFAULT_RESPONSES,
    PARAMETERS,
    Band,
    Observation,
    Vitalset,
    clinical_response,
    combine,
    describe_scoring,
    news2_applicable,
    record,
    rename_roles,
    score,
    score_at_least,
)

# A complete set scoring 0 on every parameter (scale 1, on air).
NORMAL = Vitalset(
    resp_rate=16,
    spo2=97,
    on_oxygen=False,
    systolic_bp=120,
    heart_rate=70,
    consciousness="A",
    temperature_c=37.0,
)
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def points(vitals: Vitalset, name: str, scale2: bool = False) -> int:
    return {p.name: p.points for p in score(vitals, scale2=scale2).parameters}[name]


# --- single parameters: (value, expected points), each edge approached from both sides ---

RESP = [
    (0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3),
]
SPO2_SCALE1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [
    (40, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (300, 3),
]
PULSE = [
    (20, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2),
    (131, 3), (220, 3),
]
TEMPERATURE = [
    (30.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
    (39.1, 2), (42.0, 2),
]


@pytest.mark.parametrize(("value", "expected"), RESP)
def test_respiration_rate_bands(value, expected):
    assert points(replace(NORMAL, resp_rate=value), "resp_rate") == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE1)
def test_spo2_scale1_bands(value, expected):
    assert points(replace(NORMAL, spo2=value), "spo2") == expected


@pytest.mark.parametrize("on_oxygen", [False, True])
@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE1)
def test_spo2_scale1_ignores_oxygen_for_the_saturation_points(value, expected, on_oxygen):
    assert points(replace(NORMAL, spo2=value, on_oxygen=on_oxygen), "spo2") == expected


# Scale 2: the hypoxaemic bands are the same on air and oxygen; above 92 only oxygen scores.
SPO2_SCALE2_ANY = [(70, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0)]
SPO2_SCALE2_AIR = [(93, 0), (94, 0), (95, 0), (96, 0), (97, 0), (100, 0)]
SPO2_SCALE2_OXYGEN = [(93, 1), (94, 1), (95, 2), (96, 2), (97, 3), (100, 3)]


@pytest.mark.parametrize("on_oxygen", [False, True])
@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE2_ANY)
def test_spo2_scale2_low_bands_same_on_air_and_oxygen(value, expected, on_oxygen):
    vitals = replace(NORMAL, spo2=value, on_oxygen=on_oxygen)
    assert points(vitals, "spo2", scale2=True) == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE2_AIR)
def test_spo2_scale2_on_air_at_or_above_93_scores_zero(value, expected):
    vitals = replace(NORMAL, spo2=value, on_oxygen=False)
    assert points(vitals, "spo2", scale2=True) == expected


@pytest.mark.parametrize(("value", "expected"), SPO2_SCALE2_OXYGEN)
def test_spo2_scale2_on_oxygen_high_saturation_scores(value, expected):
    vitals = replace(NORMAL, spo2=value, on_oxygen=True)
    assert points(vitals, "spo2", scale2=True) == expected


def test_scale2_on_oxygen_at_97_scores_saturation_and_oxygen_separately():
    result = score(replace(NORMAL, spo2=97, on_oxygen=True), scale2=True)
    assert result.total == 5  # 3 for SpO2 >= 97 on O2, 2 for the oxygen itself
    assert result.band is Band.MEDIUM


def test_scale_choice_changes_the_score_for_the_same_reading():
    vitals = replace(NORMAL, spo2=88)
    assert points(vitals, "spo2", scale2=False) == 3
    assert points(vitals, "spo2", scale2=True) == 0


@pytest.mark.parametrize(("on_oxygen", "expected"), [(False, 0), (True, 2)])
def test_air_or_oxygen(on_oxygen, expected):
    assert points(replace(NORMAL, on_oxygen=on_oxygen), "on_oxygen") == expected


@pytest.mark.parametrize(("value", "expected"), SYSTOLIC)
def test_systolic_bp_bands(value, expected):
    assert points(replace(NORMAL, systolic_bp=value), "systolic_bp") == expected


@pytest.mark.parametrize(("value", "expected"), PULSE)
def test_pulse_bands(value, expected):
    assert points(replace(NORMAL, heart_rate=value), "heart_rate") == expected


@pytest.mark.parametrize(
    ("level", "expected"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)]
)
def test_consciousness_acvpu_new_confusion_counts_3(level, expected):
    assert points(replace(NORMAL, consciousness=level), "consciousness") == expected


@pytest.mark.parametrize(("value", "expected"), TEMPERATURE)
def test_temperature_bands(value, expected):
    assert points(replace(NORMAL, temperature_c=value), "temperature_c") == expected


# --- non-integer readings: round half up to the chart's resolution, then band ---

@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("resp_rate", 8.49, 3), ("resp_rate", 8.5, 1),
        ("resp_rate", 20.49, 0), ("resp_rate", 20.5, 2),
        ("resp_rate", 24.5, 3),
        ("spo2", 91.49, 3), ("spo2", 91.5, 2), ("spo2", 95.5, 0),
        ("systolic_bp", 90.49, 3), ("systolic_bp", 90.5, 2),
        ("systolic_bp", 219.49, 0), ("systolic_bp", 219.5, 3),
        ("heart_rate", 40.5, 1), ("heart_rate", 90.5, 1), ("heart_rate", 130.49, 2),
        ("heart_rate", 130.5, 3),
        ("temperature_c", 35.04, 3), ("temperature_c", 35.05, 1),
        ("temperature_c", 36.04, 1), ("temperature_c", 36.05, 0),
        ("temperature_c", 38.04, 0), ("temperature_c", 38.05, 1),
        ("temperature_c", 39.04, 1), ("temperature_c", 39.05, 2),
    ],
)
def test_fractional_values_round_half_up_to_chart_resolution(name, value, expected):
    assert points(replace(NORMAL, **{name: value}), name) == expected


def test_parameter_value_is_the_charted_value_the_points_were_given_for():
    result = score(replace(NORMAL, resp_rate=20.5, temperature_c=36.05), scale2=False)
    charted = {p.name: p.value for p in result.parameters}
    assert charted["resp_rate"] == 21
    assert charted["temperature_c"] == pytest.approx(36.1)


# --- aggregate score and bands ---

def test_all_normal_scores_zero_band():
    result = score(NORMAL, scale2=False)
    assert (result.total, result.band, result.any_red) == (0, Band.ZERO, False)
    assert [p.name for p in result.parameters] == list(PARAMETERS)


@pytest.mark.parametrize(
    ("changes", "total", "band"),
    [
        ({"heart_rate": 91}, 1, Band.LOW),
        ({"heart_rate": 91, "temperature_c": 39.1, "systolic_bp": 110}, 4, Band.LOW),
        ({"resp_rate": 25}, 3, Band.LOW_SINGLE_RED),
        ({"consciousness": "C"}, 3, Band.LOW_SINGLE_RED),
        ({"consciousness": "C", "heart_rate": 91}, 4, Band.LOW_SINGLE_RED),
        ({"systolic_bp": 100, "temperature_c": 35.5}, 3, Band.LOW),  # 3 from two params: no red
        ({"heart_rate": 111, "on_oxygen": True, "temperature_c": 35.5}, 5, Band.MEDIUM),
        ({"resp_rate": 25, "on_oxygen": True}, 5, Band.MEDIUM),  # red inside a medium total
        ({"resp_rate": 21, "heart_rate": 111, "temperature_c": 35.5, "systolic_bp": 110}, 6,
         Band.MEDIUM),
        ({"resp_rate": 21, "heart_rate": 111, "temperature_c": 39.1, "systolic_bp": 110}, 7,
         Band.HIGH),
        ({"resp_rate": 26, "spo2": 91, "on_oxygen": True, "consciousness": "V"}, 11, Band.HIGH),
    ],
)
def test_aggregate_bands(changes, total, band):
    result = score(replace(NORMAL, **changes), scale2=False)
    assert (result.total, result.band) == (total, band)


def test_any_red_flags_a_single_parameter_scoring_3():
    assert score(replace(NORMAL, heart_rate=131), scale2=False).any_red is True
    assert score(replace(NORMAL, heart_rate=130), scale2=False).any_red is False


@pytest.mark.parametrize(
    "bad",
    [
        {"resp_rate": None},
        {"consciousness": "X"},
        {"consciousness": "a"},
        {"spo2": 101},
        {"heart_rate": -1},
        {"temperature_c": float("nan")},
        {"on_oxygen": "yes"},
        {"systolic_bp": True},
    ],
)
def test_score_rejects_incomplete_or_impossible_sets(bad):
    with pytest.raises(ValueError):
        score(replace(NORMAL, **bad), scale2=False)


def test_incomplete_set_error_names_the_missing_parameters():
    with pytest.raises(ValueError, match="spo2.*temperature_c"):
        score(replace(NORMAL, spo2=None, temperature_c=None), scale2=False)


# --- describing a score for a page ---

def test_describe_scoring_names_scoring_parameters_and_values():
    vitals = replace(
        NORMAL, resp_rate=26, spo2=91, on_oxygen=True, consciousness="C", temperature_c=39.2
    )
    text = describe_scoring(score(vitals, scale2=False))
    assert text == (
        "NEWS2 13 (high): resp rate 26/min (3), SpO2 91% on scale 1 (3), on oxygen (2), "
        "new confusion (3), temperature 39.2 °C (2)."
    )


def test_describe_scoring_single_red_and_scale2():
    text = describe_scoring(score(replace(NORMAL, systolic_bp=88, spo2=90), scale2=True))
    assert text == "NEWS2 3 (low-medium, single red score): systolic BP 88 mmHg (3)."


@pytest.mark.parametrize(
    ("level", "words"),
    [("V", "responds to voice only (3)"), ("P", "responds to pain only (3)"),
     ("U", "unresponsive (3)")],
)
def test_describe_scoring_consciousness_in_words(level, words):
    text = describe_scoring(score(replace(NORMAL, consciousness=level), scale2=False))
    assert text == f"NEWS2 3 (low-medium, single red score): {words}."


def test_describe_scoring_zero():
    assert describe_scoring(score(NORMAL, scale2=False)) == "NEWS2 0 (zero): no parameter scored."


def test_describe_scoring_scale2_saturation():
    text = describe_scoring(score(replace(NORMAL, spo2=85, heart_rate=45), scale2=True))
    assert text == "NEWS2 3 (low): SpO2 85% on scale 2 (2), pulse 45/min (1)."


# --- clinical response table ---

@pytest.mark.parametrize(
    ("band", "role", "priority", "minutes"),
    [
        (Band.ZERO, None, "routine", 720),
        (Band.LOW, None, "routine", 240),  # the chart asks for a nurse's assessment, not a page
        (Band.LOW_SINGLE_RED, "ward_doctor", "urgent", 60),
        (Band.MEDIUM, "ward_doctor", "urgent", 60),
        (Band.HIGH, "critical_care_outreach", "emergency", 30),
    ],
)
def test_clinical_response_per_band(band, role, priority, minutes):
    response = clinical_response(band)
    assert (response.role, response.priority, response.monitoring_minutes) == (
        role, priority, minutes,
    )
    assert response.text.endswith(".")


def test_response_table_covers_every_band_and_is_read_only():
    assert set(DEFAULT_RESPONSES) == set(Band)
    with pytest.raises(TypeError):
        DEFAULT_RESPONSES[Band.LOW] = DEFAULT_RESPONSES[Band.HIGH]  # type: ignore[index]  # deliberately: the table is read-only


def test_rename_roles_gives_a_new_table_and_leaves_the_default_alone():
    table = rename_roles(DEFAULT_RESPONSES, {"ward_doctor": "fy1_on_call"})
    assert clinical_response(Band.MEDIUM, table).role == "fy1_on_call"
    assert clinical_response(Band.LOW_SINGLE_RED, table).role == "fy1_on_call"
    assert clinical_response(Band.HIGH, table).role == "critical_care_outreach"
    assert clinical_response(Band.MEDIUM).role == "ward_doctor"


# --- partial vitals ---

def history(at: datetime) -> dict[str, Observation]:
    return {name: Observation(getattr(NORMAL, name), at) for name in PARAMETERS}


def test_partial_set_uses_fresh_latest_values():
    latest = history(T0 - timedelta(minutes=30))
    result = combine(latest, Vitalset(heart_rate=120), T0, max_age=timedelta(hours=1))
    assert result.complete
    assert result.vitals == replace(NORMAL, heart_rate=120)
    assert result.carried == tuple(p for p in PARAMETERS if p != "heart_rate")
    assert score(result.vitals, scale2=False).total == 2


def test_latest_value_exactly_max_age_old_is_still_fresh():
    latest = history(T0 - timedelta(hours=1))
    assert combine(latest, Vitalset(), T0, max_age=timedelta(hours=1)).complete


def test_stale_latest_values_make_the_score_incomplete():
    latest = history(T0 - timedelta(minutes=30))
    latest["spo2"] = Observation(97, T0 - timedelta(hours=1, seconds=1))
    latest["on_oxygen"] = Observation(False, T0 - timedelta(hours=5))
    result = combine(latest, Vitalset(heart_rate=120), T0, max_age=timedelta(hours=1))
    assert not result.complete
    assert result.stale == ("spo2", "on_oxygen")
    assert result.missing == ()
    assert result.incomplete == ("spo2", "on_oxygen")


def test_never_recorded_parameters_are_missing():
    result = combine({}, Vitalset(heart_rate=120, spo2=95), T0, max_age=timedelta(hours=1))
    assert not result.complete
    assert result.missing == ("resp_rate", "on_oxygen", "systolic_bp", "consciousness",
                              "temperature_c")
    assert result.vitals.heart_rate == 120 and result.vitals.resp_rate is None


def test_new_values_win_over_history():
    latest = history(T0 - timedelta(minutes=5))
    result = combine(latest, replace(NORMAL, resp_rate=30), T0, max_age=timedelta(hours=1))
    assert result.vitals.resp_rate == 30 and result.carried == ()


def test_combine_rejects_unknown_parameter_names():
    with pytest.raises(ValueError, match="pulse"):
        combine({"pulse": Observation(80, T0)}, NORMAL, T0, max_age=timedelta(hours=1))


def test_record_keeps_the_newest_observation_per_parameter():
    latest = record({}, Vitalset(heart_rate=80, spo2=96), T0)
    latest = record(latest, Vitalset(heart_rate=90), T0 + timedelta(minutes=10))
    latest = record(latest, Vitalset(spo2=88), T0 - timedelta(minutes=10))  # arrived late
    assert latest == {
        "heart_rate": Observation(90, T0 + timedelta(minutes=10)),
        "spo2": Observation(96, T0),
    }


def test_record_does_not_mutate_its_input():
    before = {"heart_rate": Observation(80, T0)}
    record(before, Vitalset(heart_rate=90), T0 + timedelta(minutes=1))
    assert before == {"heart_rate": Observation(80, T0)}


# --- exclusions ---

@pytest.mark.parametrize(
    ("age", "pregnant", "applies", "words"),
    [
        (16, False, True, "applies"),
        (90, False, True, "applies"),
        (15.9, False, False, "under 16"),
        (0, False, False, "paediatric"),
        (30, True, False, "pregnan"),
        (15, True, False, "under 16"),
    ],
)
def test_news2_applicable(age, pregnant, applies, words):
    ok, reason = news2_applicable(age, pregnant)
    assert ok is applies
    assert words in reason and reason.endswith(".")


def test_pregnant_under_16_names_both_exclusions():
    _, reason = news2_applicable(15, True)
    assert "under 16" in reason and "pregnan" in reason


@pytest.mark.parametrize("age", [-1, float("nan")])
def test_news2_applicable_rejects_impossible_ages(age):
    with pytest.raises(ValueError):
        news2_applicable(age, False)


# --- an incomplete set: the lowest NEWS2 it can have ---

def test_an_incomplete_set_scores_at_least_its_measured_parameters():
    partial = Vitalset(resp_rate=26, spo2=None, on_oxygen=None, systolic_bp=95, heart_rate=None,
                       consciousness=None, temperature_c=None)
    result = score_at_least(partial, scale2=False)
    assert (result.total, result.band) == (5, Band.MEDIUM)  # 3 + 2: the missing ones can only add
    assert [p.name for p in result.parameters] == ["resp_rate", "systolic_bp"]  # nothing made up
    assert result.unmeasured == ("spo2", "on_oxygen", "heart_rate", "consciousness", "temperature_c")
    assert describe_scoring(result) == ("NEWS2 at least 5 (medium): resp rate 26/min (3), systolic BP 95 mmHg (2); "
                                        "not measured: SpO2, oxygen, pulse, consciousness, temperature.")


@pytest.mark.parametrize("scale2", [False, True])
def test_missing_parameters_never_add_points_on_either_scale(scale2):
    empty = Vitalset(**{name: None for name in PARAMETERS})
    assert score_at_least(empty, scale2=scale2).total == 0
    on_oxygen = replace(empty, on_oxygen=True)  # scale 2 on oxygen: the missing SpO2 could be 88-92 (0)
    assert score_at_least(on_oxygen, scale2=scale2).total == 2
    high_sat = replace(empty, spo2=97)  # scale 2 at 97%: 0 on air, 3 on oxygen; oxygen unknown: at least 0
    assert score_at_least(high_sat, scale2=scale2).total == 0


def test_a_complete_set_scores_the_same_at_least():
    assert score_at_least(NORMAL, scale2=False) == score(NORMAL, scale2=False)
