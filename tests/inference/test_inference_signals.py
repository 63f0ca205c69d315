"""The signal parser: formats, units, negation, ranges, implausible values (inference.signals)."""

from __future__ import annotations

import pytest

from inference.signals import parse_signals


def one(values):
    assert len(values) == 1, values
    v = values[0]
    return (v.low, v.high) if v.low != v.high else v.low


@pytest.mark.parametrize("text, value, on_o2", [
    ("sats 91 RA", 91, False),
    ("SpO2 91% on air", 91, False),
    ("O2 sat 91", 91, None),
    ("o2 sats: 91%", 91, None),
    ("saturating 89% on 15L NRB", 89, True),
    ("sats 88% on 4l via nasal cannula", 88, True),
    ("SpO2 on room air 90%", 90, False),
    ("pulse ox 93", 93, None),
    ("sats were 87 on 2L O2", 87, True),
    ("88% on air at the scene", 88, False),
    ("92% RA", 92, False),
    ("SaO2 85 on high flow", 85, True),
    ("Obs: HR 110, sats 94% on 28% venturi, RR 22", 94, True),
])
def test_spo2_formats_and_oxygen(text, value, on_o2):
    s = parse_signals(text)
    assert one(s.spo2) == value
    assert s.spo2[0].on_oxygen is on_o2


def test_spo2_two_readings_each_with_its_own_context():
    s = parse_signals("sats 82% RA, 93% on 15L")
    assert sorted((x.low, x.on_oxygen) for x in s.spo2) == [(82, False), (93, True)]


def test_spo2_range_and_decade_keep_both_ends():
    assert one(parse_signals("sats 88-90%").spo2) == (88, 90)
    assert one(parse_signals("sats high 80s").spo2) == (86, 89)
    assert parse_signals("sats 88-90%").lowest("spo2") == 88


def test_targets_and_baselines_are_not_readings():
    s = parse_signals("COPD, target sats 88-92%. Baseline sats 89% RA.")
    assert s.spo2 == ()
    assert s.hypercapnic_target


@pytest.mark.parametrize("text, sys, dia", [
    ("BP 76/44", 76, 44), ("B/P: 76/44 mmHg", 76, 44), ("blood pressure 76 over 44", 76, 44),
    ("bp76/44", 76, 44), ("NIBP 165/112", 165, 112), ("BP 80/palp", 80, None), ("SBP 78", 78, None),
    ("systolic 70", 70, None), ("BP 85 systolic", 85, None),
])
def test_blood_pressure(text, sys, dia):
    bp = parse_signals(text).lowest_bp()
    assert bp.systolic.low == sys and bp.diastolic == dia


@pytest.mark.parametrize("text", ["BP not recordable", "BP unrecordable", "BP too low to record",
                                  "unable to obtain a BP", "blood pressure unrecordably low", "no recordable BP"])
def test_unrecordable_bp_is_a_finding(text):
    s = parse_signals(text)
    assert s.bp_unrecordable and s.blood_pressure == ()


@pytest.mark.parametrize("text", ["BP not done", "BP not taken yet", "no BP recorded by crew"])
def test_bp_not_measured_is_no_value_and_no_finding(text):
    s = parse_signals(text)
    assert not s.bp_unrecordable and s.blood_pressure == ()


@pytest.mark.parametrize("text, value", [
    ("HR 128", 128), ("pulse 128 reg", 128), ("P 128, BP 100/60", 128), ("heart rate: 128bpm", 128),
    ("fast AF at 150", 150), ("SVT @ 220", 220), ("complete heart block, rate 30", 30), ("CHB HR 30", 30),
    ("tachycardic at 140", 140), ("HR 140s", (140, 149)), ("HR 120-130", (120, 130)),
])
def test_heart_rate(text, value):
    assert one(parse_signals(text).heart_rate) == value


def test_pulse_oximetry_is_not_a_pulse():
    s = parse_signals("pulse ox 95%")
    assert s.heart_rate == () and one(s.spo2) == 95


@pytest.mark.parametrize("text, value", [
    ("RR 26", 26), ("resp rate 26/min", 26), ("resps 26", 26), ("respiratory rate of 26", 26),
    ("P 120 R 24 T 38.1", 24), ("RR 30s", (30, 39)), ("tachypnoeic at 40", 40),
])
def test_resp_rate(text, value):
    assert one(parse_signals(text).resp_rate) == value


def test_single_letters_outside_a_run_of_vitals_are_not_signs():
    s = parse_signals("R 2nd toe injury. P 1 of 3 referrals")
    assert s.resp_rate == () and s.heart_rate == ()


@pytest.mark.parametrize("text, value", [
    ("GCS 11", 11), ("GCS 11/15", 11), ("gcs: 3", 3), ("GCS E2V2M4", 8), ("E2 V2 M4", 8), ("GCS 13-14", (13, 14)),
    ("GCS E1VTM3", 5),
])
def test_gcs(text, value):
    assert one(parse_signals(text).gcs) == value


@pytest.mark.parametrize("text, level", [
    ("AVPU: P", "P"), ("U on AVPU", "U"), ("responds to pain only", "P"), ("unresponsive on arrival", "U"),
    ("responds to voice", "V"),
])
def test_avpu(text, level):
    assert parse_signals(text).avpu == level


@pytest.mark.parametrize("text", ["found unresponsive at home, now alert", "was unresponsive briefly",
                                  "not unresponsive"])
def test_past_or_negated_unresponsiveness_is_not_current(text):
    assert parse_signals(text).avpu is None


@pytest.mark.parametrize("text, value", [
    ("T 39.4", 39.4), ("temp 39.4C", 39.4), ("Temp: 39.4 °C", 39.4), ("T 102.8F", 39.3), ("temp 101", 38.3),
    ("pyrexial 39.1", 39.1), ("T 34.2", 34.2), ("temperature 38-38.5", (38, 38.5)),
])
def test_temperature_and_fahrenheit(text, value):
    assert one(parse_signals(text).temperature_c) == value


def test_t_followed_by_something_else_is_not_a_temperature():
    assert parse_signals("T1DM, T 12 vertebral fracture at T12").temperature_c == ()


@pytest.mark.parametrize("text, value", [
    ("BM 28", 28), ("BMs 2.1", 2.1), ("CBG 2.1 mmol/L", 2.1), ("glucose 450 mg/dL", 25), ("blood sugar 54 mg/dl", 3),
    ("BSL 31", 31), ("sugar 600", 33.3), ("BM HI", 33.4), ("glucose reads LO", 1.0),
])
def test_glucose_units(text, value):
    assert one(parse_signals(text).glucose_mmol) == value


def test_ketones_and_lactate():
    s = parse_signals("ketones 3.4, lactate 5, VBG lac 6.1")
    assert one(s.ketones_mmol) == 3.4
    assert sorted(v.low for v in s.lactate_mmol) == [5, 6.1]


def test_urine_ketones_are_not_blood_ketones():
    s = parse_signals("urine ketones 3+")
    assert s.ketones_mmol == ()
    assert s.ignored and "urine" in s.ignored[0].reason


@pytest.mark.parametrize("text, sign", [
    ("SpO2 130%", "spo2"), ("HR 900", "heart_rate"), ("GCS 2", "gcs"), ("GCS 17", "gcs"), ("T 52 C", "temperature_c"),
    ("BP 400/90", "systolic"), ("RR 95", "resp_rate"),
])
def test_implausible_values_are_ignored_with_a_reason(text, sign):
    s = parse_signals(text)
    assert s.empty
    assert [i.sign for i in s.ignored] == [sign]
    assert "plausible" in s.ignored[0].reason


def test_reversed_bp_is_ignored_with_a_reason():
    s = parse_signals("BP 60/90")
    assert s.blood_pressure == () and s.ignored[0].reason == "diastolic not below systolic"


@pytest.mark.parametrize("text, expected", [
    ("apnoeic on arrival, BVM", True), ("not breathing, CPR started", True), ("agonal breathing", True),
    ("known obstructive sleep apnoea on CPAP", False), ("OSA, sleep apnea", False), ("no apnoeas", False),
    ("was apnoeic briefly at scene, now breathing", False),
])
def test_apnoea(text, expected):
    assert parse_signals(text).apnoeic is expected


def test_apnoea_episodes_are_apart():
    s = parse_signals("6 week old, bronchiolitis, 2 apnoeic episodes at home")
    assert s.apnoea_episodes and not s.apnoeic


@pytest.mark.parametrize("text, expected", [
    ("pulseless", True), ("no pulse, CPR in progress", True), ("no central pulse", True), ("in cardiac arrest", True),
    ("no pulse in the left foot", False), ("no pulse deficit", False), ("pulses present", False),
    ("cold leg, no pulses distally", False), ("no palpable pedal pulses", False),
])
def test_pulseless(text, expected):
    assert parse_signals(text).pulseless is expected


@pytest.mark.parametrize("text, pregnant, weeks", [
    ("32/40 primip", True, 32), ("G2P1 34 weeks pregnant", True, 34), ("pregnant, 12+3 weeks gestation", True, 12),
    ("she is pregnant", True, None), ("not pregnant", False, None), ("pregnancy test negative", False, None),
    ("could she be pregnant?", False, None), ("2/52 cough", False, None), ("pregnancy test positive", True, None),
])
def test_pregnancy(text, pregnant, weeks):
    s = parse_signals(text)
    assert s.pregnant is pregnant and s.gestation_weeks == weeks


def test_postpartum():
    assert parse_signals("day 5 post LSCS, headache").postpartum


def test_a_whole_handover():
    s = parse_signals("ATMIST: 67M, A: collapse at home. I: ?GI bleed, melaena x3. M: HR 128, BP 76/44, RR 26, "
                      "sats 94% on 15L, GCS 14, BM 6.2, T 36.1. S: pale, clammy. T: 2 large bore IV, 500ml NaCl.")
    assert one(s.heart_rate) == 128 and s.lowest_bp().systolic.low == 76 and one(s.resp_rate) == 26
    assert s.spo2[0].on_oxygen is True and one(s.gcs) == 14 and one(s.glucose_mmol) == 6.2
    assert one(s.temperature_c) == 36.1 and s.ignored == ()


def test_a_comma_clause_with_usual_does_not_hide_the_next_reading():
    assert one(parse_signals("Feeding <50% usual, sats 91% RA").spo2) == 91


def test_news2_total_and_postpartum_after_delivery():
    s = parse_signals("Day 5 after normal delivery. NEWS 9.")
    assert s.postpartum and one(s.news2) == 9


def test_broad_complex_tachycardia_rate():
    assert one(parse_signals("Broad complex tachy 180 on monitor").heart_rate) == 180


def test_weeks_pregnant_said_by_the_patient():
    s = parse_signals("I'm 32 weeks and the baby has been quiet; cough for 2 weeks")
    assert s.pregnant and s.gestation_weeks == 32


@pytest.mark.parametrize("text, sign, value", [
    ("her sats are eighty eight percent on room air", "spo2", 88),
    ("heart rate is one twenty and irregular", "heart_rate", 120),
    ("heart rate a hundred and thirty two", "heart_rate", 132),
    ("blood pressure one oh five over seventy", "blood_pressure", 105),
    ("temperature thirty nine point two", "temperature_c", 39.2),
    ("GCS eight", "gcs", 8),
    ("resp rate twenty eight", "resp_rate", 28),
])
def test_dictated_numbers_in_words(text, sign, value):
    s = parse_signals(text)
    got = s.lowest(sign)
    assert got == value


def test_dictated_oxygen_context_and_plain_words_untouched():
    from inference.signals import spoken_numbers_to_digits

    s = parse_signals("sats ninety one percent on two litres")
    assert one(s.spo2) == 91 and s.spo2[0].on_oxygen is True
    assert spoken_numbers_to_digits("a cup of tea and a biscuit") == "a cup of tea and a biscuit"


def test_a_dash_between_list_items_is_not_a_range():
    s = parse_signals("complete heart block, ventricular rate 32 - 2 syncopal episodes today")
    assert one(s.heart_rate) == 32 and s.ignored == ()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("text", ["sats " * 5000, "blood sugar level reading " * 1000, "on air " * 3000])
def test_repeated_keywords_do_not_stall_the_parser(text):
    """A hang guard (no backtracking blow-up on adversarial text), not a speed target: this took 72 s before."""
    assert parse_signals(text).spo2 == ()


@pytest.mark.parametrize("text, value", [
    ("PEF 25% of best", (25, 25)), ("PEFR 40% predicted", (40, 40)), ("peak flow 30%", (30, 30)),
    ("peak expiratory flow rate 45 % of predicted", (45, 45)), ("PEF 30-35%", (30, 35))])
def test_peak_flow_as_a_percentage(text, value):
    pef = parse_signals(text).peak_flow_pct
    assert [(v.low, v.high) for v in pef] == [value]


@pytest.mark.parametrize("text", ["PEF 150 L/min", "PEF unrecordable", "target PEF 80%", "usual PEF 60%"])
def test_peak_flow_in_litres_targets_and_baselines_are_not_read(text):
    assert parse_signals(text).peak_flow_pct == ()


def test_implausible_peak_flow_is_ignored_with_a_reason():
    s = parse_signals("PEF 250%")
    assert s.peak_flow_pct == () and [i.sign for i in s.ignored] == ["peak_flow_pct"]


@pytest.mark.parametrize("text, value, on_oxygen", [
    ("hypoxic, sats 89% on air - on 4l o2 - bg", 89, False),   # the nearer statement is the reading's
    ("sats 86% on air, on 4L O2", 86, False),
    ("sats 93% on 2L - was on air", 93, True),
    ("sats 92% on 15L NRB", 92, True),
])
def test_oxygen_context_is_the_statement_nearest_the_reading(text, value, on_oxygen):
    (s,) = parse_signals(text).spo2
    assert (s.low, s.on_oxygen) == (value, on_oxygen)


def test_a_misheard_dictated_number_is_not_read_as_another():
    sig = parse_signals("sats 97 percent on room air temperature thirty eigt point four full stop")
    assert sig.temperature_c == ()                                 # not 30 (hypothermia), not 30.4
    assert sig.spo2[0].low == 97
    assert parse_signals("temperature thirty eight point four").temperature_c[0].low == 38.4
