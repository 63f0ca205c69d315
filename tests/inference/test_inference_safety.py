"""The ESI v4 safety layer and the joint cost-sensitive decoder (inference.safety, inference.decoding)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from inference.decoding import adjusted_unit_probs, check_policy, decode, expected_acuity_costs
from inference.exceptions import ModelConfigError
from inference.labels import DEFAULT_LABELS as L
from inference.labels import LabelSet
from inference.policy import DEFAULT_POLICY_PATH, load_policy
from inference.safety import floors
from inference.signals import parse_signals

POLICY = load_policy()
UNITS = list(L.units)


def floor_level(text: str, age: float = 50, model_acuity: int | None = 4) -> int | None:
    fl = floors(parse_signals(text), age, model_acuity, POLICY)
    return min((f.level for f in fl), default=None)


def rules(text: str, age: float = 50, model_acuity: int | None = 4) -> set[str]:
    return {f.rule for f in floors(parse_signals(text), age, model_acuity, POLICY)}


# ------------------------------------------------------------------ ESI 1 decision points, at their edges
@pytest.mark.parametrize("text, level", [
    ("BP 89/50 HR 101", 1), ("BP 90/50 HR 101", 2), ("BP 89/50 HR 100", 2), ("BP 76/44, HR 128", 1),
])
def test_adult_shock_is_hypotension_with_tachycardia(text, level):
    assert floor_level(text) == level


def test_shock_sends_to_icu():
    fl = floors(parse_signals("BP 76/44 HR 128"), 55, 2, POLICY)
    assert any(f.rule == "shock" and f.to_icu for f in fl)


@pytest.mark.parametrize("gcs, level", [(3, 1), (8, 1), (9, 2), (13, 2), (14, None), (15, None)])
def test_gcs_edges(gcs, level):
    assert floor_level(f"GCS {gcs}") == level


@pytest.mark.parametrize("spo2, on, level", [
    (89, "on 15L", 1), (90, "on 15L", 2), (91, "on 2L", 2), (92, "on 2L", None), (89, "RA", 2), (91, "RA", 2),
    (92, "RA", None),
])
def test_spo2_edges_on_oxygen_and_air(spo2, on, level):
    assert floor_level(f"sats {spo2}% {on}") == level


def test_hypercapnic_target_moves_the_spo2_thresholds():
    assert floor_level("COPD, target sats 88-92%. sats 88% on 2L") is None
    assert floor_level("COPD, target sats 88-92%. sats 84% on 2L") == 1
    assert floor_level("COPD, target 88-92%. sats 83% on air") == 2


@pytest.mark.parametrize("text", ["apnoeic", "pulseless, CPR in progress", "BP unrecordable", "AVPU U",
                                  "responds to pain only"])
def test_immediate_life_saving_signs_give_esi_1_at_any_age(text):
    for age in (0.1, 4, 12, 40, 90):
        assert floor_level(text, age=age) == 1, (text, age)


@pytest.mark.parametrize("hr, level", [(39, 1), (40, 2), (41, None)])
def test_adult_bradycardia_edges(hr, level):
    assert floor_level(f"HR {hr}") == level


def test_bradycardia_floor_is_adult_only():
    assert floor_level("HR 39", age=0.5) is None


# ------------------------------------------------------------------ ESI 2: NEWS2 red parameters (adults)
@pytest.mark.parametrize("text, level", [
    ("RR 25", 2), ("RR 24", None), ("RR 8", 2), ("RR 9", None), ("HR 131", 2), ("HR 130", None),
    ("BP 90/60 HR 80", 2), ("BP 91/60 HR 80", None), ("T 35.0", 2), ("T 35.1", None),
])
def test_news2_red_parameters(text, level):
    assert floor_level(text) == level


def test_news2_parameters_are_adult_only():
    assert floor_level("RR 28, HR 135", age=9) is None        # normal-ish for a child; the danger zone decides
    assert floor_level("RR 28, HR 135", age=16) == 2


@pytest.mark.parametrize("text, level", [
    ("BM 2.9", 2), ("BM 3.0", None), ("glucose 30", 2), ("glucose 29.9", None),
    ("ketones 3.0, BM 18", 2), ("ketones 2.9, BM 18", None), ("ketones 3.5, BM 8", None), ("ketones 3.5", 2),
    ("lactate 4", 2), ("lactate 3.9", None),
])
def test_metabolic_floors(text, level):
    assert floor_level(text) == level


@pytest.mark.parametrize("text, level", [
    ("34/40, BP 160/95", 2), ("34/40, BP 158/110", 2), ("34/40, BP 158/108", None), ("BP 165/112", None),
    ("day 4 post LSCS, BP 170/100", 2),
])
def test_severe_hypertension_in_pregnancy(text, level):
    assert floor_level(text, age=29) == level


@pytest.mark.parametrize("age, temp, level", [(0.2, 38.0, 2), (0.2, 37.9, None), (0.25, 38.5, None), (2, 39.5, None)])
def test_infant_fever(age, temp, level):
    assert floor_level(f"T {temp}", age=age) == level


@pytest.mark.parametrize("age, sbp, level", [
    (0.05, 59, 1), (0.05, 60, None), (0.5, 69, 1), (0.5, 70, None), (5, 79, 1), (5, 80, None), (12, 89, 1),
    (12, 90, None),
])
def test_paediatric_hypotension_for_age(age, sbp, level):
    assert floor_level(f"BP {sbp}/40", age=age) == level


# ------------------------------------------------------------------ danger zone by age band (decision point D)
@pytest.mark.parametrize("age, hr, rr, level", [
    (0.1, 181, 30, 2), (0.1, 180, 50, None), (0.1, 150, 51, 2),
    (1, 161, 30, 2), (1, 160, 40, None), (1, 120, 41, 2),
    (5, 141, 20, 2), (5, 140, 30, None), (5, 100, 31, 2),
    (30, 101, 16, 2), (30, 100, 20, None), (30, 80, 21, 2),
])
def test_danger_zone_bands_for_a_patient_rated_esi_3(age, hr, rr, level):
    assert floor_level(f"HR {hr} RR {rr}", age=age, model_acuity=3) == level


def test_danger_zone_applies_only_to_esi_3_as_in_the_handbook():
    assert floor_level("HR 105 RR 22", model_acuity=4) is None
    assert floor_level("HR 105 RR 22", model_acuity=3) == 2


# ------------------------------------------------------------------ the floor never lowers, decoding stays consistent
def _random_probs(rng: random.Random, n: int) -> list[float]:
    xs = [rng.random() ** 3 for _ in range(n)]
    s = sum(xs)
    return [x / s for x in xs]


NOTES = ["BP 76/44 HR 128", "sats 85% on 15L", "GCS 6", "HR 150 RR 30", "cut finger", "RR 26 sats 91 RA", "BM 2.1",
         "T 38.2", "ketones 4.1 BM 25", "", "apnoeic", "HR 105"]


def test_floor_never_lowers_acuity_and_urgent_patients_are_never_sent_home():
    rng = random.Random(7)
    for _ in range(600):
        up, ap, npb = _random_probs(rng, 10), _random_probs(rng, 5), [rng.random() for _ in range(7)]
        text, age = rng.choice(NOTES), rng.choice([0.1, 2, 9, 15, 16, 40, 85])
        without = decode(up, ap, npb, L, age=age, text="", policy=POLICY, threshold=0.6)
        d = decode(up, ap, npb, L, age=age, text=text, policy=POLICY, threshold=0.6)
        assert d.acuity <= without.acuity, (text, age)
        if d.acuity <= 2:
            assert d.unit != "DISCHARGE"
        else:
            assert d.unit != "ICU"
        if age < 16:
            assert d.unit in ("ICU", "DISCHARGE", "PAEDIATRICS")
        else:
            assert d.unit != "PAEDIATRICS"
        fl = floors(parse_signals(text), age, without.acuity, POLICY)
        if fl:
            assert d.acuity <= min(f.level for f in fl)


def test_shocked_patient_rated_esi_5_discharge_becomes_esi_1_icu_with_reasons():
    up = [0.01] * 9 + [0.91]
    ap = [0.01, 0.02, 0.07, 0.2, 0.7]
    d = decode(up, ap, [0.0] * 7, L, age=55, text="variceal bleed, HR 128, BP 76/44", policy=POLICY, threshold=0.6)
    assert (d.unit, d.acuity) == ("ICU", 1)
    assert d.uncertain  # the model and the measured signs disagree: a clinician confirms
    texts = " ".join(r.text for r in d.reasons)
    assert "Acuity raised to 1" in texts and "BP 76/44 with HR 128" in texts and "ESI4" in texts
    assert "variceal" not in texts  # numbers only, never the note's words


def test_hypoxic_pneumonia_sent_home_by_the_model_is_admitted_with_oxygen():
    up = [0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7]
    ap = [0.0, 0.02, 0.08, 0.3, 0.6]
    d = decode(up, ap, [0.0] * 7, L, age=70, text="cough, sats 91% on air, RR 26", policy=POLICY, threshold=0.6)
    assert d.acuity == 2 and d.unit == "MEDICINE" and "respiratory_support" in d.needs


def test_a_child_admitted_goes_to_paediatrics_with_the_specialty_mass():
    up = [0.05, 0.0, 0.0, 0.3, 0.3, 0.0, 0.0, 0.05, 0.0, 0.3]
    p = adjusted_unit_probs(up, L, 7, POLICY)
    assert p[UNITS.index("PAEDIATRICS")] == pytest.approx(0.65)
    d = decode(up, [0.0, 0.1, 0.6, 0.2, 0.1], [0.0] * 7, L, age=7, text="", policy=POLICY, threshold=0.6)
    assert d.unit == "PAEDIATRICS"
    assert any(r.code == "consistency" for r in d.reasons)


def test_expected_cost_picks_the_more_urgent_level_when_urgency_is_likely_enough():
    costs = expected_acuity_costs([0.0, 0.45, 0.55, 0.0, 0.0], POLICY)
    assert costs.index(min(costs)) == 1   # P(ESI 2) = 0.45: ESI 2 although 3 is more likely
    costs = expected_acuity_costs([0.0, 0.35, 0.65, 0.0, 0.0], POLICY)
    assert costs.index(min(costs)) == 2


def test_no_signals_and_a_confident_model_change_nothing():
    up = [0.0, 0.0, 0.0, 0.9, 0.02, 0.02, 0.02, 0.0, 0.02, 0.02]
    d = decode(up, [0.0, 0.02, 0.95, 0.02, 0.01], [0.9, 0, 0, 0, 0, 0, 0], L, age=40, text="cough for a week",
               policy=POLICY, threshold=0.6)
    assert (d.unit, d.acuity, d.needs, d.reasons, d.uncertain) == ("MEDICINE", 3, ("airborne_isolation",), (), False)


def test_policy_checks(tmp_path: Path):
    text = DEFAULT_POLICY_PATH.read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text.replace("source: NEWS2}", "source: NOPE}", 1))
    with pytest.raises(ModelConfigError, match="NOPE"):
        load_policy(bad)
    bad.write_text(text.replace("- [0, 1.5, 3, 4.5, 6]", "- [1, 1.5, 3, 4.5, 6]"))
    with pytest.raises(ModelConfigError, match="diagonal"):
        load_policy(bad)
    with pytest.raises(ModelConfigError, match="acuity levels"):
        check_policy(POLICY, LabelSet(acuities=(1, 2, 3)))


def test_every_threshold_names_a_listed_source():
    import yaml

    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())

    def walk(x):
        if isinstance(x, dict):
            if "value" in x or "bands" in x:
                assert x.get("source") in raw["sources"], x
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(raw["safety"])


@pytest.mark.parametrize("news, level", [(7, 2), (6, None)])
def test_stated_news2_total(news, level):
    assert floor_level(f"NEWS2 {news}") == level


def test_a_real_chance_of_more_urgency_flags_the_prediction():
    up = [0.0, 0.0, 0.0, 0.95, 0.01, 0.01, 0.01, 0.0, 0.01, 0.01]
    d = decode(up, [0.0, 0.25, 0.7, 0.05, 0.0], [0.0] * 7, L, age=40, text="", policy=POLICY, threshold=0.6)
    assert d.acuity == 3 and d.uncertain          # 0.7 is confident, but P(ESI 1-2) = 0.25
    assert any(r.code == "urgency_risk" and "0.25" in r.text for r in d.reasons)
    d = decode(up, [0.0, 0.05, 0.9, 0.05, 0.0], [0.0] * 7, L, age=40, text="", policy=POLICY, threshold=0.6)
    assert not d.uncertain and not d.reasons


def test_meaningful_mass_on_esi_1_2_flags_a_decision_of_3_or_less_urgent():
    x = POLICY.decoding.flag_urgent_mass_at_least
    up = [0.0, 0.0, 0.0, 0.95, 0.01, 0.01, 0.01, 0.0, 0.01, 0.01]
    above = decode(up, [0.0, x, 0.9 - x, 0.1, 0.0], [0.0] * 7, L, age=40, text="", policy=POLICY, threshold=0.6)
    assert above.acuity == 3 and above.uncertain
    assert [r.code for r in above.reasons] == ["urgency_risk"] and "P(ESI 1-2)" in above.reasons[0].text
    below = decode(up, [0.0, x - 0.01, 0.91 - x, 0.1, 0.0], [0.0] * 7, L, age=40, text="", policy=POLICY, threshold=0.6)
    assert below.acuity == 3 and not below.uncertain
    # at ESI 4 the same mass flags too (the decision is not urgent)
    d = decode(up, [0.0, x, 0.0, 0.9 - x, 0.1], [0.0] * 7, L, age=40, text="", policy=POLICY, threshold=0.6)
    assert d.acuity == 4 and d.uncertain


def test_a_chance_of_esi_1_2_keeps_a_patient_the_model_would_send_home():
    c = POLICY.decoding.discharge_urgent_cost
    assert c > 0
    up = [0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.0, 0.95]   # DISCHARGE 0.95, ORTHO 0.05
    home = decode(up, [0.0, 0.0, 0.05, 0.9, 0.05], [0.0] * 7, L, age=35, text="", policy=POLICY, threshold=0.6)
    assert home.unit == "DISCHARGE"                             # no chance of urgency: home
    # P(ESI 1-2) = m: discharging costs 2 * 0.05 + c * m, a ward bed 1 - 0.05; kept once c * m > 0.85
    m = round(min(0.4, 0.9 / c), 3)
    assert c * m > 0.85
    acuity = [0.0, m, 0.0, 0.95 - m, 0.05]
    kept = decode(up, acuity, [0.0] * 7, L, age=35, text="", policy=POLICY, threshold=0.6)
    assert kept.unit == "ORTHO" and kept.acuity == 4 and kept.uncertain
    assert any(r.code == "consistency" for r in kept.reasons)
    child = decode(up, acuity, [0.0] * 7, L, age=9, text="", policy=POLICY, threshold=0.6)
    assert child.unit == "PAEDIATRICS"
    # a smaller chance that the cost lets go home is still flagged when it reaches flag_urgent_mass_at_least
    x = POLICY.decoding.flag_urgent_mass_at_least
    if x is not None and c * x < 0.85:
        flagged = decode(up, [0.0, x, 0.0, 0.95 - x, 0.05], [0.0] * 7, L, age=35, text="", policy=POLICY,
                         threshold=0.6)
        assert flagged.unit == "DISCHARGE" and flagged.uncertain


@pytest.mark.parametrize("text, level", [
    ("PEF 32% of best", 1), ("PEF 33% of best", 2), ("peak flow 50% predicted", 2), ("PEFR 51% predicted", None),
    ("PEF 150 L/min", None), ("usual PEF 30% when well", None)])
def test_peak_flow_asthma_severity_edges(text, level):
    assert floor_level(text, age=30) == level
    if level == 1:
        assert rules(text, age=30) == {"life_threatening_asthma"}
