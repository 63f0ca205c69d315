"""Temperature scaling and calibration measures (numpy + scipy).

One temperature per head, fitted on validation logits by minimising the negative
log-likelihood: softmax heads (unit, acuity) with categorical NLL, the multi-label needs head
with binary NLL over every (example, need) pair.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from inference.encoding import sigmoid, softmax

T_BOUNDS = (0.05, 20.0)


def nll_softmax(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = softmax(logits, t)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def nll_sigmoid(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    if logits.size == 0:
        return 0.0
    p = np.clip(sigmoid(logits, t), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _fit(fn) -> float:
    res = minimize_scalar(lambda lt: fn(float(np.exp(lt))), bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-4})
    t = float(np.exp(res.x))
    return t if fn(t) <= fn(1.0) else 1.0


def fit_temperature_softmax(logits: np.ndarray, y: np.ndarray) -> float:
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    return _fit(lambda t: nll_softmax(logits, y, t))


def fit_temperature_sigmoid(logits: np.ndarray, y: np.ndarray) -> float:
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if logits.size == 0:
        return 1.0
    return _fit(lambda t: nll_sigmoid(logits, y, t))


def _bins(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-width confidence bins: (edges, each value's bin)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return edges, np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)


def reliability(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict:
    """Equal-width bins of confidence: per-bin count, mean confidence, accuracy; and the ECE."""
    conf, correct = np.asarray(conf, dtype=np.float64).ravel(), np.asarray(correct, dtype=np.float64).ravel()
    edges, idx = _bins(conf, n_bins)
    counts, confs, accs = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        counts.append(n)
        if n:
            c, a = float(conf[m].mean()), float(correct[m].mean())
            ece += n / max(len(conf), 1) * abs(c - a)
        else:
            c, a = float((edges[b] + edges[b + 1]) / 2), float("nan")
        confs.append(c)
        accs.append(a)
    return {"edges": edges.tolist(), "count": counts, "confidence": confs, "accuracy": accs, "ece": float(ece)}


def ece_if_calibrated(conf: np.ndarray, n_bins: int = 15, draws: int = 400, seed: int = 0) -> dict:
    """The top-label ECE that a *perfectly calibrated* head with these confidences shows on this many cases.

    ECE is biased upwards on a small set: even a head whose confidences are exactly right gets a
    positive ECE from the sampling of its cases. Each case is counted correct with probability equal to
    its confidence, `draws` times (seeded, so a report is reproducible), and the ECE of each draw taken
    in `reliability`'s bins. A measured ECE under the 95th percentile is within sampling noise of perfect
    calibration; a target under the median cannot be shown on this set at all."""
    conf = np.asarray(conf, dtype=np.float64).ravel()
    if conf.size == 0:
        return {"median": 0.0, "p95": 0.0, "draws": 0}
    _, idx = _bins(conf, n_bins)
    onehot = np.zeros((conf.size, n_bins))
    onehot[np.arange(conf.size), idx] = 1.0
    correct = np.random.default_rng(seed).random((draws, conf.size)) < conf
    gaps = np.abs((conf - correct) @ onehot).sum(axis=1) / conf.size
    return {"median": float(np.median(gaps)), "p95": float(np.percentile(gaps, 95)), "draws": int(draws)}


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion k/n (95% by default); None when n is 0."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def ece_softmax(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Top-label calibration of a softmax head."""
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    return reliability(probs.max(axis=1), pred == np.asarray(y), n_bins)


def ece_multilabel(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Calibration of every (example, label) probability against its 0/1 truth."""
    return reliability(np.asarray(probs).ravel(), np.asarray(y).ravel(), n_bins)
