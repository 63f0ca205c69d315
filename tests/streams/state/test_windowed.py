"""Windowed capacity tables: arrivals, pages and occupancy per unit in event-time windows.

Written against the window edges: an event exactly on a boundary, one just before it, and the
last-hour arrival rate the surge level reads. Times are minutes after ev.T0 (08:00 UTC, itself
a 5-minute boundary).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from allocator.exceptions import HospitalConfigError
from allocator.hospital import load_hospitals
from streams.state import windowed
from streams.state.tables import JOURNAL, StagedTables, replay_journal
from streams.state.windowed import ARRIVALS_WINDOW, OCCUPANCY_WINDOW, PAGES_WINDOW, WindowConfig
from tests import events as ev
from tests.ward import FIXTURE, HID
from tests.ward import Ward as BaseWard

CFG = WindowConfig()  # 1 h windows advancing 5 min; occupancy in 5 min steps
SICK = dict(resp_rate=26, spo2=90, on_oxygen=True, systolic_bp=95, heart_rate=118, consciousness="A",
            temperature_c=38.6)


def ts(minutes: float) -> float:
    return (ev.T0 + timedelta(minutes=minutes)).timestamp()


def window(start_min: float, size_min: float = 60) -> tuple[float, float]:
    """A window as Faust keys it: its end is 0.1 s short of the next start."""
    return ts(start_min), ts(start_min) + size_min * 60 - 0.1


class Ward(BaseWard):
    def count(self, table: str, item: str, start_min: float) -> int:
        """The count in the hopping window (1 h) starting `start_min` after 08:00."""
        return windowed.count_in(StagedTables(self.worker.tables).get, HID, item, table, window(start_min), CFG)


# -- window arithmetic at the edges (Faust's own windows) -----------------------------------------

def test_an_event_on_a_step_boundary_opens_that_window_and_has_left_the_hour_before():
    starts = [r[0] for r in CFG.hopping().ranges(ts(60))]  # 09:00 exactly
    assert starts == [ts(m) for m in range(5, 61, 5)]  # 08:05 ... 09:00: twelve windows of an hour
    assert ts(0) not in starts  # [08:00, 09:00) ended just before


def test_an_event_just_before_the_boundary_is_still_in_the_hour_that_ends_there():
    starts = [r[0] for r in CFG.hopping().ranges(ts(60) - 0.001)]  # 08:59:59.999
    assert starts[0] == ts(0) and starts[-1] == ts(55) and len(starts) == 12


def test_occupancy_steps_are_tumbling_and_a_boundary_event_starts_the_next_step():
    assert CFG.tumbling().ranges(ts(5)) == [window(5, 5)]
    assert CFG.tumbling().ranges(ts(5) - 0.001) == [window(0, 5)]


def test_hopping_counts_from_steps_equal_faust_hopping_windows():
    """Counts are kept per step and summed; they must equal what Faust's hopping table would hold."""
    import random

    rng = random.Random(7)
    times = [ts(0) + rng.uniform(-7200, 7200) for _ in range(400)] + [ts(m) for m in range(-60, 125, 5)]
    steps: dict = {}
    hopping: dict = {}
    for t in times:
        (step,) = CFG.steps().ranges(t)
        steps[("k", step)] = steps.get(("k", step), 0) + 1
        for w in CFG.hopping().ranges(t):
            hopping[w] = hopping.get(w, 0) + 1
    def get(table, key, default=None):
        return steps.get(key, default)

    for w, expected in hopping.items():
        assert windowed.count_in(lambda t, k, d=None: get(t, ("k", k[1]), d), HID, "x", ARRIVALS_WINDOW, w, CFG) \
            == expected


def test_window_config_refuses_a_step_longer_than_the_window():
    with pytest.raises(ValueError):
        WindowConfig(size_s=300, step_s=600)


# -- arrivals ------------------------------------------------------------------------------------

def test_arrivals_per_unit_count_in_every_window_that_holds_them():
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"),
              ev.admission(HID, "P2", "E2", 60, requested_unit="MEDICINE", event_id="a2"))
    assert ward.count(ARRIVALS_WINDOW, "MED", 0) == 1  # [08:00, 09:00): only the 08:00 admission
    assert ward.count(ARRIVALS_WINDOW, "MED", 5) == 1  # [08:05, 09:05): only the 09:00 one
    assert ward.count(ARRIVALS_WINDOW, "MED", 60) == 1
    assert ward.count(ARRIVALS_WINDOW, "MED", -55) == 1  # [07:05, 08:05) holds the 08:00 one
    assert ward.count(ARRIVALS_WINDOW, "SURG", 0) == 0


def test_a_transfer_to_another_unit_is_an_arrival_there_and_one_within_the_unit_is_not():
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"),
              ev.transfer(HID, "P1", "E1", "MED-SR1", 10, event_id="t1"),
              ev.transfer(HID, "P1", "E1", "SURG-SR1", 20, event_id="t2"))
    assert ward.count(ARRIVALS_WINDOW, "MED", 0) == 1
    assert ward.count(ARRIVALS_WINDOW, "SURG", 20) == 1 and ward.count(ARRIVALS_WINDOW, "SURG", 15) == 1


def test_the_surge_arrival_rate_is_the_last_hour_to_the_step():
    ward = Ward()
    ward.send(*[ev.admission(HID, f"P{i}", f"E{i}", m, requested_unit="MEDICINE", sex="F", event_id=f"a{i}")
                for i, m in enumerate((0, 4, 59, 60))])
    tables = ward.worker.tables
    get = StagedTables(tables).get
    # At 09:00 the rate window is [08:05, 09:05): 08:59 and 09:00 count; 08:00 and 08:04 have left.
    assert windowed.latest_full_window(ev.T0 + timedelta(minutes=60), CFG) == window(5)
    assert windowed.count_in(get, HID, windowed.ADMISSIONS_KEY, ARRIVALS_WINDOW, window(5), CFG) == 2
    # At 08:59:59 it is [08:00, 09:00): three of them.
    assert windowed.count_in(get, HID, windowed.ADMISSIONS_KEY, ARRIVALS_WINDOW, window(0), CFG) == 3


# -- pages ---------------------------------------------------------------------------------------

def test_pages_are_counted_on_the_patients_unit():
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"))
    decisions = ward.send(ev.vitals(HID, "P1", "E1", 30, event_id="v1", **SICK))
    assert any(d.kind == "page" for d in decisions)
    assert ward.count(PAGES_WINDOW, "MED", 30) == 1 and ward.count(PAGES_WINDOW, "MED", 0) == 1
    assert ward.count(PAGES_WINDOW, "MED", 35) == 0  # the page at 08:30 is before [08:35, 09:35)
    # nobody acknowledges: the escalation 15 minutes later is a page about the same unit
    escalated = ward.send(ev.bed_status(HID, "SURG-SR1", "cleaning", 45, event_id="b1"))
    assert [d.kind for d in escalated] == ["escalation"]
    assert ward.count(PAGES_WINDOW, "MED", 30) == 2 and ward.count(PAGES_WINDOW, "MED", 45) == 1


# -- occupancy over time -------------------------------------------------------------------------

def test_occupancy_steps_keep_last_and_peak_and_the_series_carries_quiet_steps():
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 1, requested_unit="MEDICINE", event_id="a1"),
              ev.admission(HID, "P2", "E2", 2, requested_unit="MEDICINE", event_id="a2"),
              ev.discharge(HID, "P1", "E1", 3, event_id="d1"))
    step = ward.worker.tables[OCCUPANCY_WINDOW][(f"{HID}|MED", window(0, 5))]
    assert step == {"occupied": 1, "total": 6, "peak": 2}
    series = windowed.occupancy_series(StagedTables(ward.worker.tables).get, HID, "MED",
                                       ev.T0 + timedelta(minutes=20), CFG, steps=4)
    assert [p["start"] for p in series] == [ev.at(m) for m in (5, 10, 15, 20)]
    assert all(p["occupied"] == 1 and p["total"] == 6 for p in series)  # carried from the 08:00 step


# -- crash safety: the journal carries windowed keys ----------------------------------------------

def test_journal_replay_restores_windowed_keys_after_a_json_round_trip():
    ward = Ward()
    ward.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"))
    tables = ward.worker.tables
    entry = orjson.loads(orjson.dumps(tables[JOURNAL][HID]))  # as the changelog gives it back
    for name in (ARRIVALS_WINDOW, OCCUPANCY_WINDOW):
        tables[name].clear()
    tables[JOURNAL][HID] = entry
    replay_journal(tables, HID)
    assert tables[ARRIVALS_WINDOW][(f"{HID}|MED", window(0, 5))] == 1
    assert all(isinstance(k, tuple) and isinstance(k[1], tuple) for k in tables[ARRIVALS_WINDOW])


# -- surge thresholds from the hospital's config -----------------------------------------------------

def _with_surge(tmp_path: Path, surge_yaml: str) -> Path:
    text = FIXTURE.read_text(encoding="utf-8").replace("    clinicians: [dr-a, dr-b]\n",
                                                        "    clinicians: [dr-a, dr-b]\n" + surge_yaml, 1)
    path = tmp_path / "hospital.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_surge_thresholds_come_from_the_hospital_config(tmp_path):
    path = _with_surge(tmp_path, "    surge:\n"
                                 "      opel2: {occupancy: 0.99, waiting: 50, arrivals_per_hour: 2}\n"
                                 "      opel3: {occupancy: 0.995, waiting: 60, arrivals_per_hour: 30}\n"
                                 "      opel4: {occupancy: 0.999, waiting: 70, arrivals_per_hour: 40}\n")
    ward = Ward(load_hospitals(path))
    first = ward.send(ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"))
    assert not [d for d in first if d.kind == "surge_level"]
    second = ward.send(ev.admission(HID, "P2", "E2", 1, requested_unit="MEDICINE", event_id="a2"))
    surge = [d for d in second if d.kind == "surge_level"]
    assert surge and surge[0].details["level"] == 2 and surge[0].details["arrivals_last_hour"] == 2
    assert "threshold of 2" in surge[0].reasons[0].text


def test_surge_thresholds_that_do_not_rise_are_a_config_error_naming_the_field(tmp_path):
    path = _with_surge(tmp_path, "    surge:\n"
                                 "      opel2: {occupancy: 0.95, waiting: 5, arrivals_per_hour: 10}\n"
                                 "      opel3: {occupancy: 0.90, waiting: 10, arrivals_per_hour: 15}\n")
    with pytest.raises(HospitalConfigError, match=r"hospitals\[0\]\.surge.*occupancy thresholds must rise"):
        load_hospitals(path)
