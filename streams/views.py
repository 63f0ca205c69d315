"""Read-only JSON views for bed boards and dashboards: census and surge level, no patient data.

Served by Faust's web server (`web_port`); table contents themselves are never exposed
(`web_tables_enabled` is off). A worker answers for the hospitals whose partition it owns.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from allocator.hospital import Hospital
from streams.state import HospitalState, StagedTables


def capacity_snapshot(tables: Mapping[str, MutableMapping[str, Any]], hospital: Hospital) -> dict[str, Any]:
    """Beds by status and occupancy per unit, patients waiting, surge level: counts only."""
    state = HospitalState(StagedTables(tables), hospital)
    units = []
    for unit in hospital.units:
        census = state.census(unit.code)
        units.append({"unit": unit.code, "name": unit.name, "total": census.total,
                      "by_status": dict(census.by_status), "occupancy": round(census.occupancy, 4)})
    surge = state.surge() or {}
    return {"hospital_id": hospital.hospital_id, "name": hospital.name, "as_of": state.clock(),
            "units": units, "patients_waiting": len(state.waiting()), "surge_level": surge.get("level", 1),
            "surge_since": surge.get("since")}
