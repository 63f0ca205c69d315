"""A bed snapshot with a few beds changed on top, without copying the caller's (possibly lazy) mapping.

The matching holds the beds it has given out while it decides the rest, an override releases
the patient's own hold before checking the new bed, and the simulator verifies each placement
against the state that earlier placements of the same run left behind: all read through this.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from allocator.placement import BedSnapshot

__all__ = ["with_changes"]


class _Overlay(Mapping[str, BedSnapshot]):
    def __init__(self, base: Mapping[str, BedSnapshot], top: Mapping[str, BedSnapshot]) -> None:
        self._base = base
        self._top = top

    def __getitem__(self, bed_id: str) -> BedSnapshot:
        if bed_id in self._top:
            return self._top[bed_id]
        return self._base[bed_id]

    def get(self, bed_id: str, default: BedSnapshot | None = None) -> BedSnapshot | None:  # type: ignore[override]  # Mapping.get's overloads, one signature here
        hit = self._top.get(bed_id)
        return hit if hit is not None else self._base.get(bed_id, default)

    def __iter__(self) -> Iterator[str]:
        yield from self._top
        yield from (k for k in self._base if k not in self._top)

    def __len__(self) -> int:
        return len(set(self._top) | set(self._base))


def with_changes(beds: Mapping[str, BedSnapshot], top: Mapping[str, BedSnapshot]) -> Mapping[str, BedSnapshot]:
    """A read-only view of `beds` with `top` taking precedence (the view itself when `top` is empty)."""
    return _Overlay(beds, top) if top else beds
