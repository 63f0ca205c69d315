"""Read-only JSON views for bed boards and dashboards: census, windows and surge level; bed tiles with ids only.

Served by Faust's web server (`web_port`); table contents themselves are never exposed
(`web_tables_enabled` is off). `beds_snapshot` is what a bed board draws tiles from: each bed's
status, since when, and who is in it as identifiers and acuity only (as `decisions` carries
them), never a bed-status reason or any other free text. A worker answers for the hospitals whose partition it owns.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime
from typing import Any

from allocator.hospital import Hospital
from streams.state import windowed
from streams.state.tables import HospitalState, StagedTables
from streams.state.windowed import WindowConfig

SERIES_STEPS = 12  # occupancy steps shown per unit (an hour at the default 5-minute step)


def capacity_snapshot(tables: Mapping[str, MutableMapping[str, Any]], hospital: Hospital,
                      windows: WindowConfig | None = None) -> dict[str, Any]:
    """Beds by status and occupancy per unit, arrivals and pages in the last window, surge level: counts only."""
    windows = windows or WindowConfig()
    staged = StagedTables(tables)
    state = HospitalState(staged, hospital)
    clock = state.clock()
    now = datetime.fromisoformat(clock) if clock else None
    last = windowed.latest_full_window(now, windows) if now else None
    units = []
    for unit in hospital.units:
        census = state.census(unit.code)
        entry = {"unit": unit.code, "name": unit.name, "total": census.total,
                 "by_status": dict(census.by_status), "occupancy": round(census.occupancy, 4)}
        if now is not None and last is not None:
            entry["arrivals_last_window"] = windowed.count_in(staged.get, hospital.hospital_id, unit.code,
                                                              windowed.ARRIVALS_WINDOW, last, windows)
            entry["pages_last_window"] = windowed.count_in(staged.get, hospital.hospital_id, unit.code,
                                                           windowed.PAGES_WINDOW, last, windows)
            entry["occupancy_over_time"] = windowed.occupancy_series(staged.get, hospital.hospital_id, unit.code,
                                                                     now, windows, SERIES_STEPS)
        units.append(entry)
    surge = state.surge() or {}
    window = ({"start": datetime.fromtimestamp(last[0], tz=now.tzinfo).isoformat(), "minutes": windows.size_s / 60,
               "admissions": windowed.count_in(staged.get, hospital.hospital_id, windowed.ADMISSIONS_KEY,
                                               windowed.ARRIVALS_WINDOW, last, windows)} if now is not None and last is not None else None)
    return {"hospital_id": hospital.hospital_id, "name": hospital.name, "as_of": clock,
            "units": units, "patients_waiting": len(state.waiting()), "surge_level": surge.get("level", 1),
            "surge_since": surge.get("since"), "last_window": window}


def beds_snapshot(tables: Mapping[str, MutableMapping[str, Any]], hospital: Hospital) -> dict[str, Any]:
    """Every bed's status and occupant (identifiers and acuity), the waiting list and the held beds' patients."""
    state = HospitalState(StagedTables(tables), hospital)
    beds = []
    for bed in hospital.beds:
        b = state.bed(bed.bed_id)
        enc = state.encounter(b.encounter_id) if b.encounter_id else None
        beds.append({"bed_id": bed.bed_id, "unit": bed.unit, "status": b.status, "since": b.since or None,
                     "encounter_id": b.encounter_id, "patient_id": enc.patient_id if enc else None,
                     "acuity": enc.acuity if enc else None, "occupant_sex": b.occupant_sex})
    waiting = []
    for encounter_id in state.waiting():
        enc = state.encounter(encounter_id)
        if enc is None:
            continue
        waiting.append({"encounter_id": encounter_id, "patient_id": enc.patient_id, "target_unit": enc.target_unit,
                        "since": enc.waiting_since or enc.admitted_at, "acuity": enc.acuity})
    return {"hospital_id": hospital.hospital_id, "as_of": state.clock(), "beds": beds, "waiting": waiting,
            "holds": state.holds()}
