"""The measured signs as bands for the lexical reader's acuity head (inference.sign_features)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.sign_features import BANDS, SIGN_DIM, sign_matrix, sign_vector


def _band(text: str, name: str, age: float = 40.0) -> int | None:
    """The band index of `name` in `text`'s vector (0 = not stated, 1 = below the first edge, ...)."""
    v = sign_vector(text, age)
    offset = 0
    for band_name, edges in BANDS:
        width = len(edges) + 2
        if band_name == name:
            hot = np.flatnonzero(v[offset:offset + width])
            assert len(hot) == 1
            return int(hot[0])
        offset += width
    raise KeyError(name)


def test_one_band_per_group_and_nothing_stated_is_its_own_band() -> None:
    v = sign_vector("Sore throat for two days, eating and drinking.", 30.0)
    assert v.shape == (SIGN_DIM,) and v.sum() == len(BANDS)
    assert all(_band("Sore throat.", name) == 0 for name, _ in BANDS)


@pytest.mark.parametrize(("text", "name", "band"), [
    # NEWS2 heart rate bands: <=40, 41-50, 51-90, 91-110, 111-130, >=131
    ("HR 40", "heart_rate_highest", 1), ("HR 41", "heart_rate_highest", 2), ("HR 90", "heart_rate_highest", 3),
    ("HR 91", "heart_rate_highest", 4), ("HR 130", "heart_rate_highest", 5), ("HR 131", "heart_rate_highest", 6),
    # resp rate: <=8, 9-11, 12-20, 21-24, >=25
    ("RR 8", "resp_rate_highest", 1), ("RR 20", "resp_rate_highest", 3), ("RR 21", "resp_rate_highest", 4),
    ("RR 25", "resp_rate_highest", 5),
    # SpO2: <=85 (below the ESI floor's reach), 86-91, 92-93, 94-95, >=96
    ("sats 91% RA", "spo2_lowest", 2), ("sats 92% RA", "spo2_lowest", 3), ("sats 96% RA", "spo2_lowest", 5),
    # systolic: <=90, 91-100, 101-110, 111-159, >=160
    ("BP 90/60", "systolic_lowest", 1), ("BP 91/60", "systolic_lowest", 2), ("BP 160/95", "systolic_lowest", 5),
    ("T 38.0", "temperature_highest", 3), ("T 38.1", "temperature_highest", 4), ("T 39.1", "temperature_highest", 5),
    ("GCS 8", "gcs_lowest", 1), ("GCS 13", "gcs_lowest", 2), ("GCS 15", "gcs_lowest", 4),
])
def test_each_sign_falls_in_its_news2_band_at_the_edges(text: str, name: str, band: int) -> None:
    assert _band(text, name) == band


def test_oxygen_is_a_band_of_the_lowest_reading_whose_context_is_stated() -> None:
    assert _band("sats 96% on 15L NRB", "oxygen") == 2  # on oxygen
    assert _band("sats 93% RA", "oxygen") == 1  # on air
    assert _band("sats 93%", "oxygen") == 0  # not stated
    assert _band("sats 97% on 2L, 89% on air earlier", "oxygen") == 1  # the lowest stated: on air


def test_ranges_count_their_worse_end_and_the_lowest_and_highest_are_kept_apart() -> None:
    assert _band("sats 88-93% on air", "spo2_lowest") == 2
    assert _band("HR 45 on arrival, HR 135 an hour later", "heart_rate_highest") == 6
    assert _band("HR 45 on arrival, HR 135 an hour later", "heart_rate_lowest") == 2


def test_the_most_urgent_floor_is_a_band_of_its_own() -> None:
    assert _band("BP 76/44, HR 128, clammy", "esi_floor") == 1  # shock: ESI 1
    assert _band("HR 118, otherwise well", "esi_floor") == 2  # danger zone (adult HR > 100): ESI 2
    assert _band("HR 118, otherwise well", "esi_floor", age=4.0) == 0  # not in a 4-year-old's danger zone
    assert _band("HR 82, BP 128/80, sats 98% RA", "esi_floor") == 0  # no floor


def test_a_matrix_is_its_rows_and_an_empty_batch_has_the_width() -> None:
    texts, ages = ["HR 128 BP 80/50", "no obs"], [50.0, 7.0]
    m = sign_matrix(texts, ages)
    np.testing.assert_array_equal(m, np.stack([sign_vector(t, a) for t, a in zip(texts, ages, strict=True)]))
    assert sign_matrix([], []).shape == (0, SIGN_DIM)
