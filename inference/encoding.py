"""How age and sex reach the model: a small float vector beside the text.

numpy only (the serving path imports it); training builds the same vector, so the ONNX
graph's `meta` input means the same thing at training and serving time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

META_FEATURES: tuple[str, ...] = ("age_over_100", "log_age", "infant", "under_16", "over_65", "over_80",
                                  "sex_F", "sex_M", "sex_X")
META_DIM = len(META_FEATURES)
SEXES = ("F", "M", "X")


def meta_vector(age: float, sex: str) -> list[float]:
    """Features for one patient; `age` in years (0.5 = six months), `sex` F/M/X."""
    a = float(age)
    return [a / 100.0, math.log1p(max(a, 0.0)) / 5.0, float(a < 1.0), float(a < 16.0), float(a >= 65.0),
            float(a >= 80.0), float(sex == "F"), float(sex == "M"), float(sex == "X")]


def meta_matrix(rows: Iterable[tuple[float, str]]) -> np.ndarray:
    out = [meta_vector(age, sex) for age, sex in rows]
    if not out:
        return np.zeros((0, META_DIM), dtype=np.float32)
    return np.asarray(out, dtype=np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
