"""A bigger copy of a hospital, for benchmarks and what-if runs at sizes no config file describes.

Every unit keeps its code, labels, overflow order and roster; its rooms are copied (ids get a
`~2`, `~3`, ... suffix) round-robin over the units until the hospital has the asked number of
beds, and nurses on duty grow in proportion, so the mix of bed features and the per-nurse load
stay those of the original.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import groupby

from allocator.hospital import Bed, Hospital

__all__ = ["scale_hospital"]


def scale_hospital(hospital: Hospital, beds: int) -> Hospital:
    """A hospital like `hospital` with exactly `beds` beds (at least as many as it has)."""
    if beds < len(hospital.beds):
        raise ValueError(f"cannot scale {len(hospital.beds)} beds down to {beds}")
    rooms = {u.code: [list(g) for _, g in groupby(hospital.beds_in_unit(u.code), key=lambda b: b.room_id)]
             for u in hospital.units}
    added: dict[str, list[Bed]] = {u.code: [] for u in hospital.units}
    total = len(hospital.beds)
    copy = 1
    while total < beds:
        copy += 1
        progress = False
        for unit in hospital.units:
            for room in rooms[unit.code]:
                if total + len(room) > beds:
                    continue
                suffix = f"~{copy}"
                added[unit.code].extend(replace(b, bed_id=b.bed_id + suffix, room_id=b.room_id + suffix) for b in room)
                total += len(room)
                progress = True
        if not progress:
            raise ValueError(f"no room of {hospital.hospital_id} is small enough to reach exactly {beds} beds")
    out_beds = [b for u in hospital.units for b in (*hospital.beds_in_unit(u.code), *added[u.code])]
    units = tuple(replace(u, nurses_on_duty=_scaled_nurses(hospital, u.code, len(added[u.code])), roster=dict(u.roster))
                  for u in hospital.units)
    return Hospital(hospital_id=hospital.hospital_id, name=f"{hospital.name} (scaled to {beds} beds)", units=units,
                    beds=tuple(out_beds), roster=dict(hospital.roster), clinicians=hospital.clinicians,
                    allocation=hospital.allocation)


def _scaled_nurses(hospital: Hospital, code: str, extra_beds: int) -> int:
    """Nurses on duty in proportion to the unit's new size, so load per nurse stays comparable."""
    base = len(hospital.beds_in_unit(code))
    return max(1, round(hospital.unit(code).nurses_on_duty * (base + extra_beds) / max(1, base)))
