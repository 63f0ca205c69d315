"""The measured signs of a note as features for the lexical reader's acuity head.

TF-IDF reads "HR 128" as the characters "128": it cannot tell a pulse of 128 from one of 82 unless
the training notes happened to show both. The signs parsed once by `inference.signals` can: each
vital sign is put in the band the NEWS2 chart scores it in (RCP 2017; edges below), and the most
urgent ESI floor the packaged policy's rules set (`inference.safety.floors`: shock, GCS, lactate,
ketones, danger-zone vital signs, ...) is one more band. The acuity head learns how much each band
weighs beside the words; the floors still apply after decoding, as before.

The features always use the *packaged* policy (`inference/triage_policy.yaml`), whatever policy a
worker serves with: they are part of the fitted reader, and must mean at serving what they meant
when it was fitted. numpy only (the serving path imports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from inference.policy import TriagePolicy, load_policy
from inference.safety import floors
from inference.signals import Signals, parse_signals

# (name, edges): a value v falls in band k = the number of edges <= v; "not stated" is its own band.
# Edges follow the NEWS2 chart's bands (a value at an edge belongs to the band above it).
BANDS: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("heart_rate_highest", (41, 51, 91, 111, 131)),
    ("heart_rate_lowest", (41, 51)),
    ("resp_rate_highest", (9, 12, 21, 25)),
    ("resp_rate_lowest", (9, 12)),
    ("spo2_lowest", (86, 92, 94, 96)),
    ("oxygen", (0.5,)),  # the lowest SpO2 stated on air (0) or on oxygen (1): NEWS2 scores oxygen 2
    ("systolic_lowest", (91, 101, 111, 160)),
    ("temperature_highest", (35.1, 36.1, 38.1, 39.1)),
    ("gcs_lowest", (9, 14, 15)),
    ("esi_floor", (1.5, 2.5)),  # the most urgent floor: 1, 2, or none (not stated)
)
SIGN_DIM = sum(len(edges) + 2 for _, edges in BANDS)


@lru_cache(maxsize=1)
def _packaged_policy() -> TriagePolicy:
    return load_policy(None)


def _values(sig: Signals, age: float) -> tuple[float | None, ...]:
    bp = sig.lowest_bp()
    spo2 = min((s for s in sig.spo2 if s.on_oxygen is not None), key=lambda s: s.low, default=None)
    floor = min((f.level for f in floors(sig, age, 3, _packaged_policy())), default=None)
    return (sig.highest("heart_rate"), sig.lowest("heart_rate"), sig.highest("resp_rate"), sig.lowest("resp_rate"),
            sig.lowest("spo2"), None if spo2 is None else float(bool(spo2.on_oxygen)),
            bp.systolic.low if bp else None, sig.highest("temperature_c"), sig.lowest("gcs"),
            None if floor is None else float(floor))


def sign_vector(text: str, age: float, signals: Signals | None = None) -> np.ndarray:
    """One-hot bands of one note's measured signs (`SIGN_DIM` values, one 1 per band group); `signals`:
    the note's signs already parsed (`parse_signals(text)`), so that a caller parses each note once."""
    out = np.zeros(SIGN_DIM, dtype=np.float64)
    offset = 0
    sig = signals if signals is not None else parse_signals(text)
    for (_, edges), value in zip(BANDS, _values(sig, age), strict=True):
        if value is None:
            out[offset] = 1.0
        else:
            out[offset + 1 + int(np.searchsorted(edges, value, side="right"))] = 1.0
        offset += len(edges) + 2
    return out


def sign_matrix(texts: Sequence[str], ages: Sequence[float],
                signals: Sequence[Signals] | None = None) -> np.ndarray:
    if not texts:
        return np.zeros((0, SIGN_DIM), dtype=np.float64)
    sigs: Sequence[Signals | None] = signals if signals is not None else [None] * len(texts)
    return np.stack([sign_vector(t, a, s) for t, a, s in zip(texts, ages, sigs, strict=True)])
