"""Temperature scaling recovers a known miscalibration; ECE falls after scaling."""

from __future__ import annotations

import numpy as np

from inference.calibration import (
    ece_multilabel,
    ece_softmax,
    fit_temperature_sigmoid,
    fit_temperature_softmax,
    reliability,
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
