"""Temperature scaling recovers a known miscalibration; ECE falls after scaling."""

from __future__ import annotations

import numpy as np

from inference.calibration import (
    ece_if_calibrated,
    ece_multilabel,
    ece_softmax,
    fit_temperature_sigmoid,
    fit_temperature_softmax,
    reliability,
    wilson_interval,
)
from inference.encoding import meta_vector, sigmoid, softmax


def test_softmax_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2.0
    y = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    overconfident = true_logits * 3.0            # a model 3x too sharp
    t = fit_temperature_softmax(overconfident, y)
    assert 2.5 < t < 3.5
    assert ece_softmax(softmax(overconfident, t), y)["ece"] < ece_softmax(softmax(overconfident), y)["ece"]


def test_sigmoid_temperature_recovers_underconfidence():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3000, 4)) * 3.0
    y = (rng.random(z.shape) < sigmoid(z)).astype(float)
    t = fit_temperature_sigmoid(z * 0.5, y)      # a model 2x too flat
    assert 0.4 < t < 0.6
    assert ece_multilabel(sigmoid(z * 0.5, t), y)["ece"] < ece_multilabel(sigmoid(z * 0.5), y)["ece"]


def test_reliability_bins_and_perfect_calibration():
    conf = np.array([0.05, 0.15, 0.95, 0.95])
    rel = reliability(conf, np.array([0, 0, 1, 1]), n_bins=10)
    assert sum(rel["count"]) == 4 and len(rel["edges"]) == 11
    assert rel["ece"] < 0.11


def test_meta_vector_marks_children_and_sex():
    child, adult = meta_vector(0.5, "F"), meta_vector(40, "X")
    assert child[2] == 1.0 and child[3] == 1.0 and adult[3] == 0.0
    assert child[-3:] == [1.0, 0.0, 0.0] and adult[-3:] == [0.0, 0.0, 1.0]


def test_ece_if_calibrated_is_the_small_sets_floor_and_a_miscalibrated_head_rises_above_it():
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.4, 1.0, size=169)
    floor = ece_if_calibrated(conf)
    assert floor == ece_if_calibrated(conf)                       # seeded: a report is reproducible
    assert 0.0 < floor["median"] <= floor["p95"] and floor["draws"] == 400
    # a head that is right exactly as often as it says: its measured ECE stays under the 95th percentile
    # nearly always, and is well above 0 although nothing is wrong with it
    honest = [reliability(conf, rng.random(conf.size) < conf)["ece"] for _ in range(200)]
    assert np.mean(np.array(honest) <= floor["p95"]) >= 0.9
    assert np.median(honest) > 0.03
    # a head right half the time at these confidences is not hidden by the floor
    assert reliability(conf, rng.random(conf.size) < 0.5)["ece"] > floor["p95"]
    # the floor shrinks with the set's size
    big = ece_if_calibrated(rng.uniform(0.4, 1.0, size=5000))
    assert big["p95"] < floor["median"] / 2
    assert ece_if_calibrated(np.zeros(0)) == {"median": 0.0, "p95": 0.0, "draws": 0}


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = wilson_interval(33, 72)                             # the width 72 cases give a rate near 46%
    assert lo < 0.46 < hi and hi - lo > 0.2
    assert wilson_interval(0, 0) is None
