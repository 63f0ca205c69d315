"""`wardflow evaluate` on hand-written notes: argmax vs served, the baseline, the curve, the listed misses
(tiny model); and the packaged hand-written set itself."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise

import pytest

from tests import inference_support as sup

TOY_NOTES = [  # id, text, age, sex, unit, acuity, needs  (toy label set: CARDIAC, ORTHO, MENTAL_HEALTH, DISCHARGE)
    ("toy-miss", "stubbed toe walking normally", 60, "M", "CARDIAC", 2, ["telemetry"]),
    ("toy-shock", "small cut on finger. BP 70/40 HR 140", 50, "F", "CARDIAC", 1, ["telemetry"]),
    ("toy-ok-1", "crushing chest pain with st elevation", 64, "M", "CARDIAC", 2, ["telemetry"]),
    ("toy-ok-2", "runny nose and mild cold", 30, "F", "DISCHARGE", 5, []),
    ("toy-ok-3", "broken hip after a fall", 80, "F", "ORTHO", 3, []),
]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    model = sup.tiny_trained_model()
    d = tmp_path_factory.mktemp("served")
    notes = d / "notes.jsonl"
    with open(notes, "w", encoding="utf-8") as f:
        f.write(json.dumps({"label_set": sup.TOY_LABELS}) + "\n")
        for i, text, age, sex, unit, acuity, needs in TOY_NOTES:
            f.write(json.dumps({"id": i, "group": i, "text": text, "age": age, "sex": sex, "target_unit": unit,
                                "acuity": acuity, "needs": needs, "split": "test"}) + "\n")
    args = sup.parse_cli(["evaluate", "--model", str(model), "--out", str(d / "rep"), "--handwritten", str(notes),
                          "--threads", "1", "--no-progress"])
    assert args.func(args) == 0
    return json.loads((d / "rep" / "report.json").read_text()), (d / "rep" / "report.md").read_text()


def test_argmax_misses_are_listed_with_probabilities(report):
    rep, md = report
    hw = rep["handwritten"]
    assert hw["n"] == len(TOY_NOTES)
    misses = {c["id"]: c for c in hw["model"]["under_triage_cases"]}
    assert "toy-miss" in misses and "toy-shock" in misses
    c = misses["toy-miss"]
    assert c["true_acuity"] == 2 and c["predicted_acuity"] > 2
    assert set(c["acuity_probs"]) == {"1", "2", "3", "4", "5"} and abs(sum(c["acuity_probs"].values()) - 1) < 0.01
    assert hw["model"]["under_triaged"] == len(misses)
    assert "toy-miss" in md and "Under-triaged true ESI 1-2" in md


def test_served_prediction_catches_the_shocked_patient_and_never_sends_esi_1_2_home(report):
    rep, _ = report
    served = rep["handwritten"]["model_decoded"]
    ids = {c["id"] for c in served["under_triage_cases"]}
    assert "toy-shock" not in ids
    assert served["inconsistent_predictions"] == 0
    assert served["esi_1_2_sent_home"] <= rep["handwritten"]["model"]["esi_1_2_sent_home"]
    assert served["raised_by_safety"] >= 1
    assert served["under_triaged"] <= rep["handwritten"]["model"]["under_triaged"]


def test_baseline_side_by_side_curve_and_threshold(report):
    rep, md = report
    hw = rep["handwritten"]
    assert {"model", "model_decoded", "baseline", "baseline_decoded"} <= set(hw["summary"])
    curve = hw["model_decoded"]["coverage_accuracy"]
    assert curve[0]["threshold"] == 0.0 and curve[0]["coverage"] == 1.0
    assert all(a["coverage"] >= b["coverage"] for a, b in pairwise(curve))
    t = hw["model_decoded"]["threshold_meeting_target"]
    assert t is None or t["unit_accuracy"] >= 0.9
    assert "TF-IDF served" in md and "Coverage vs unit accuracy" in md
    # how precisely a set of this size measures the targets: intervals and the ECE's sampling floor
    s = hw["summary"]["model_decoded"]
    lo, hi = s["over_triage_ci95"]
    assert lo <= s["over_triage_esi_3_5"] <= hi
    lo, hi = s["flagged_ci95"]
    assert lo <= s["flagged_rate"] <= hi
    assert 0 < s["unit_ece_if_calibrated_median"] <= s["unit_ece_if_calibrated_p95"]
    assert "over-triage, 95% interval" in md and "perfectly calibrated head shows here" in md
    assert "served_test" in rep and rep["served_test"]["model_decoded"]["n"] == rep["n_test"]


def test_under_triage_weight_curve_and_flag_reasons(report):
    rep, md = report
    served = rep["handwritten"]["model_decoded"]
    curve = served["under_triage_weight_curve"]
    assert [r["weight"] for r in curve] == [1.0, 1.5, 2.0, 2.5, 3.0]
    # a heavier under-triage weight never under-triages more patients, and never over-triages fewer
    assert all(a["under_triaged"] >= b["under_triaged"] for a, b in pairwise(curve))
    assert all(a["over_triage_esi_3_5"] <= b["over_triage_esi_3_5"] for a, b in pairwise(curve))
    fb = served["flagged_by"]
    assert sum(fb.values()) == pytest.approx(served["flagged_rate"])
    assert fb["safety_raise"] > 0          # the shocked patient is raised, hence flagged
    assert rep["handwritten"]["model"]["flagged_by"] is None
    assert "Under-triage weight of the cost matrix" in md and "raised by the safety floor" in md


def test_values_derived_on_validation_meet_their_own_rules():
    import numpy as np

    from inference.data import Example
    from inference.evaluate_decoded import (
        DERIVE_DISCHARGE_COSTS,
        DISCHARGE_SAFETY_FACTOR,
        derive_on_validation,
        system_metrics,
        with_under_triage_weight,
    )
    from inference.labels import DEFAULT_LABELS as L
    from inference.policy import load_policy

    rng = np.random.default_rng(3)
    units = list(L.units)
    exs, up, ap = [], [], []
    for i in range(120):  # a noisy model: the truth is usually, not always, its most likely label
        acuity = int(rng.integers(1, 6))
        unit = "DISCHARGE" if acuity >= 4 else ("ICU" if acuity == 1 else "MEDICINE")
        exs.append(Example(text="", age=50.0, sex="F", unit=unit, acuity=acuity, needs=(), split="validation",
                           group=f"v{i}"))
        u, a = rng.dirichlet(np.ones(10) * 0.3), rng.dirichlet(np.ones(5) * 0.3)
        u[units.index(unit)] += 1.0
        a[acuity - 1] += rng.choice([0.2, 1.5])
        up.append(u / u.sum())
        ap.append(a / a.sum())
    probs = {"unit": np.array(up), "acuity": np.array(ap), "needs": np.zeros((120, 7))}
    pol = load_policy()
    d = derive_on_validation({"m": probs}, exs, L, pol)
    assert d["discharge_urgent_cost"] is not None and d["flag_urgent_mass_at_least"] is not None
    r = d["resulting"]["m"]
    assert r["esi_1_2_sent_home"] == 0 and r["under_triaged_not_flagged"] == 0
    if d["under_triage_weight"] is not None:
        assert r["under_triage_esi_1_2"] <= 0.05
    t = d["uncertainty_threshold"]["m"]
    assert t is None or r["unit_accuracy_not_flagged"] >= 0.9
    # the lowest cost that works is found (one step lower sends an urgent patient home), and the cost chosen
    # is the first grid value at or above the safety factor times it
    lowest = d["discharge_urgent_cost_lowest"]
    k = DERIVE_DISCHARGE_COSTS.index(lowest)
    if k > 0:
        lower = with_under_triage_weight(pol, L, d["under_triage_weight"] or 1.5)
        lower = lower.model_copy(update={"decoding": lower.decoding.model_copy(
            update={"discharge_urgent_cost": DERIVE_DISCHARGE_COSTS[k - 1]})})
        assert system_metrics(probs, exs, L, lower, threshold=0.6, decoded=True,
                              list_misses=False)["esi_1_2_sent_home"] > 0
    chosen = d["discharge_urgent_cost"]
    assert chosen >= DISCHARGE_SAFETY_FACTOR * lowest or chosen == DERIVE_DISCHARGE_COSTS[-1]
    assert all(c < DISCHARGE_SAFETY_FACTOR * lowest for c in DERIVE_DISCHARGE_COSTS if c < chosen)
    # the acuity's confidence: no fewer unflagged under-triages elsewhere, and no fewer flags among equals
    figures = d["acuity_confidence_figures"]
    best = figures[d["acuity_confidence"]]
    assert set(figures) == {"top", "not_under"} and d["policy_now"]["acuity_confidence"] == pol.decoding.acuity_confidence
    for f in figures.values():
        assert best["under_triaged_not_flagged"] < f["under_triaged_not_flagged"] or (
            best["under_triaged_not_flagged"] == f["under_triaged_not_flagged"]
            and best["flagged_rate"] <= f["flagged_rate"])
    # the urgency risk flag, by the same rule
    risk = d["flag_urgent_risk_figures"]
    chosen = risk[str(d["flag_urgent_risk_at_least"])]
    assert set(risk) == {"0.1", "0.15", "0.2", "0.25", "0.3"}
    assert d["policy_now"]["flag_urgent_risk_at_least"] == pol.decoding.flag_urgent_risk_at_least
    for f in risk.values():
        assert chosen["under_triaged_not_flagged"] < f["under_triaged_not_flagged"] or (
            chosen["under_triaged_not_flagged"] == f["under_triaged_not_flagged"]
            and chosen["flagged_rate"] <= f["flagged_rate"])


def test_the_acuity_confidence_flagging_fewer_wins_unless_it_leaves_an_under_triage_unflagged():
    import numpy as np

    from inference.data import Example
    from inference.evaluate_decoded import derive_on_validation
    from inference.labels import DEFAULT_LABELS as L
    from inference.policy import load_policy

    units = list(L.units)
    u = np.zeros(len(units))
    u[units.index("MEDICINE")] = 1.0
    # truth ESI 3, served 3: P(ESI 3) 0.5 is under `top`'s threshold 0.6, while P(more urgent) 0.1 keeps
    # `not_under` at 0.9: only `top` flags it
    calm = [0.0, 0.1, 0.5, 0.4, 0.0]
    exs = [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=3, needs=(), split="validation", group="v0")]
    probs = {"unit": u[None, :], "acuity": np.array([calm]), "needs": np.zeros((1, 7))}
    pol = load_policy()
    pol = pol.model_copy(update={"decoding": pol.decoding.model_copy(
        update={"flag_urgent_risk_at_least": None, "flag_urgent_mass_at_least": None})})
    d = derive_on_validation({"m": probs}, exs, L, pol)
    assert d["acuity_confidence_figures"]["top"]["flagged_rate"] == 1.0
    assert d["acuity_confidence_figures"]["not_under"]["flagged_rate"] == 0.0
    assert d["acuity_confidence"] == "not_under"
    # a true ESI 2 served 3 at every weight of the grid, whom only `top` flags (P(ESI 3) 0.5; P(more
    # urgent) 0.04 keeps `not_under` at 0.96, and is under every `flag_urgent_mass_at_least` of the grid)
    urgent = [0.0, 0.04, 0.5, 0.46, 0.0]
    exs2 = exs + [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=2, needs=(), split="validation",
                          group="v1")]
    probs2 = {"unit": np.stack([u, u]), "acuity": np.array([calm, urgent]), "needs": np.zeros((2, 7))}
    d2 = derive_on_validation({"m": probs2}, exs2, L, pol)
    figures = d2["acuity_confidence_figures"]
    assert figures["top"]["under_triaged_not_flagged"] == 0 and figures["not_under"]["under_triaged_not_flagged"] == 1
    assert d2["acuity_confidence"] == "top"


def test_the_discharge_cost_keeps_a_margin_over_the_lowest_that_works():
    import numpy as np

    from inference.data import Example
    from inference.evaluate_decoded import DISCHARGE_SAFETY_FACTOR, derive_on_validation
    from inference.labels import DEFAULT_LABELS as L
    from inference.policy import load_policy

    units = list(L.units)
    # one urgent patient the unit head would send home: P(DISCHARGE) 0.9, P(ESI 1-2) 0.3. Home costs
    # 2 * 0.1 + c * 0.3 against 0.9 for MEDICINE, so 3 is the lowest grid cost keeping them in
    u = np.zeros(len(units))
    u[units.index("DISCHARGE")], u[units.index("MEDICINE")] = 0.9, 0.1
    exs = [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=2, needs=(), split="validation", group="v0")]
    probs = {"unit": u[None, :], "acuity": np.array([[0.0, 0.3, 0.1, 0.5, 0.1]]), "needs": np.zeros((1, 7))}
    d = derive_on_validation({"m": probs}, exs, L, load_policy())
    assert d["discharge_urgent_cost_lowest"] == 3.0
    assert DISCHARGE_SAFETY_FACTOR == 2.0 and d["discharge_urgent_cost"] == 6.0
    assert d["resulting"]["m"]["esi_1_2_sent_home"] == 0


def test_the_need_threshold_is_the_best_on_validation_and_the_highest_of_equals():
    import numpy as np

    from inference.data import Example
    from inference.evaluate_decoded import NEED_THRESHOLD_GRID, choose_need_threshold
    from inference.labels import DEFAULT_LABELS as L
    from inference.policy import load_policy

    k = len(L.needs)
    exs = [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=3, needs=(L.needs[0],), split="validation",
                   group="a"),
           Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=3, needs=(), split="validation", group="b")]
    unit = np.full((2, len(L.units)), 1.0 / len(L.units))
    acuity = np.tile([0.0, 0.0, 1.0, 0.0, 0.0], (2, 1))

    def probs(p_true: float, p_false: float) -> dict:
        needs = np.zeros((2, k))
        needs[0, 0], needs[1, 0] = p_true, p_false
        return {"unit": unit, "acuity": acuity, "needs": needs}

    # the true need at 0.32, a false one at 0.27: only thresholds in (0.27, 0.32] get both right
    t, scores = choose_need_threshold({"m": probs(0.32, 0.27)}, exs, L, load_policy())
    assert t == 0.3 and scores["0.3"] == 1.0 and scores["0.25"] < 1.0 and scores["0.35"] == 0.0
    # averaged over the exports: one that needs 0.3 and one where 0.3 and 0.35 both work
    t, _ = choose_need_threshold({"a": probs(0.32, 0.27), "b": probs(0.37, 0.27)}, exs, L, load_policy())
    assert t == 0.3
    # every grid value equal (nothing to assert): the highest
    t, _ = choose_need_threshold({"m": probs(0.9, 0.0)}, exs, L, load_policy())
    assert t == max(NEED_THRESHOLD_GRID)


def test_the_report_ends_with_the_derived_values(report):
    rep, md = report
    dv = rep["derived_on_validation"]          # the tiny model's data has a validation split
    assert dv["models"] == ["model"] and set(dv["uncertainty_threshold"]) == {"model"}
    assert "Decoding values derived on the validation split" in md
    assert dv["acuity_confidence"] in ("top", "not_under") and "`acuity_confidence`" in md


def test_the_weight_curve_policy_has_the_shipped_shape():
    from inference.evaluate_decoded import with_under_triage_weight
    from inference.labels import DEFAULT_LABELS
    from inference.policy import load_policy

    pol = load_policy()
    assert with_under_triage_weight(pol, DEFAULT_LABELS, 1.5).decoding.acuity_cost == tuple(
        tuple(float(x) for x in row) for row in pol.decoding.acuity_cost)
    sym = with_under_triage_weight(pol, DEFAULT_LABELS, 1.0).decoding.acuity_cost
    assert all(sym[i][j] == abs(i - j) for i in range(5) for j in range(5))


def test_packaged_handwritten_set_is_labelled_by_the_taxonomy():
    from inference.data import load_files
    from inference.evaluate_decoded import DEFAULT_HANDWRITTEN

    exs, labels = load_files([DEFAULT_HANDWRITTEN], require_train=False)
    assert len(exs) >= 150 and all(e.split == "test" for e in exs)
    assert len({e.group for e in exs}) == len(exs)
    acuity = Counter(e.acuity for e in exs)
    assert acuity[1] + acuity[2] >= 60
    assert set(e.unit for e in exs) == set(labels.units)
    for e in exs:  # the label set's own consistency rules hold for every note
        assert not (e.unit == "DISCHARGE" and e.acuity <= 2), e.group
        assert not (e.unit == "ICU" and e.acuity >= 3), e.group
        if e.age < 16:
            assert e.unit in ("ICU", "DISCHARGE", "PAEDIATRICS"), e.group
        else:
            assert e.unit != "PAEDIATRICS", e.group
    styles = {json.loads(line)["style"] for line in DEFAULT_HANDWRITTEN.read_text().splitlines()}
    assert len(styles) >= 8


def test_handwritten_notes_are_not_in_the_generated_corpus():
    from inference.corpus import generate_splits
    from inference.data import load_files
    from inference.evaluate_decoded import DEFAULT_HANDWRITTEN

    exs, _ = load_files([DEFAULT_HANDWRITTEN], require_train=False)
    texts = {e.text.strip().lower() for e in exs}
    generated = generate_splits(300, 50, 50, 13)
    assert not texts & {c.text.strip().lower() for cases in generated.values() for c in cases}


def test_the_urgency_risk_flag_leaves_the_fewest_under_triages_unflagged_then_flags_fewest():
    import numpy as np

    from inference.data import Example
    from inference.evaluate_decoded import derive_on_validation
    from inference.labels import DEFAULT_LABELS as L
    from inference.policy import load_policy

    units = list(L.units)
    u = np.zeros(len(units))
    u[units.index("MEDICINE")] = 1.0
    pol = load_policy()
    pol = pol.model_copy(update={"decoding": pol.decoding.model_copy(
        update={"flag_urgent_mass_at_least": None, "flag_urgent_risk_at_least": 0.2})})
    # a true ESI 1 served ESI 2 with P(ESI 1) 0.17: only a risk flag at 0.15 or under catches it
    urgent = [0.17, 0.8, 0.03, 0.0, 0.0]
    exs = [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=1, needs=(), split="validation", group="v0")]
    probs = {"unit": u[None, :], "acuity": np.array([urgent]), "needs": np.zeros((1, 7))}
    d = derive_on_validation({"m": probs}, exs, L, pol)
    figures = d["flag_urgent_risk_figures"]
    assert [figures[r]["under_triaged_not_flagged"] for r in ("0.1", "0.15", "0.2", "0.25", "0.3")] == [0, 0, 1, 1, 1]
    assert d["flag_urgent_risk_at_least"] == 0.15            # 0.1 catches it too, but no fewer: fewer flags wins
    # a calm ESI 3 with P(more urgent) 0.12 is flagged only at 0.1: with nothing under-triaged, 0.15-0.3 tie and
    # the policy's own (0.2) stays
    calm = [0.02, 0.1, 0.88, 0.0, 0.0]
    exs2 = [Example(text="", age=50.0, sex="F", unit="MEDICINE", acuity=3, needs=(), split="validation", group="v1")]
    d2 = derive_on_validation({"m": {"unit": u[None, :], "acuity": np.array([calm]), "needs": np.zeros((1, 7))}},
                              exs2, L, pol)
    assert d2["flag_urgent_risk_figures"]["0.1"]["flagged_rate"] == 1.0
    assert d2["flag_urgent_risk_at_least"] == 0.2
