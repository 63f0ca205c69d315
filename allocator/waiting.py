"""A patient on the waiting list, as the matching sees them: v1's placement facts plus what ranks them.

Kept apart from the matching so that scoring, the simulator and the stream worker can build
waiting patients without importing the solver.
"""

from __future__ import annotations

from dataclasses import dataclass

from allocator.placement import PatientToPlace

__all__ = ["WaitingPatient"]


@dataclass(frozen=True)
class WaitingPatient:
    """One patient waiting for a bed.

    `acuity` is the ESI level (1 the most urgent) or None when unknown; `waited_minutes` is the
    time since the decision to admit (it orders the greedy policy and raises priority);
    `unit_probability` is the model's calibrated probability for `target_unit`, or None when a
    person chose the unit. It is shown in explanations, never used to decide.
    """

    encounter_id: str
    age: float
    sex: str  # 'F', 'M' or 'X'
    target_unit: str
    needs: frozenset[str]
    acuity: int | None = None
    waited_minutes: float = 0.0
    unit_probability: float | None = None

    def __post_init__(self) -> None:
        if self.acuity is not None and self.acuity not in (1, 2, 3, 4, 5):
            raise ValueError(f"acuity must be an ESI level 1 to 5 or None, got {self.acuity!r}")
        if self.unit_probability is not None and not 0.0 <= self.unit_probability <= 1.0:
            raise ValueError(f"unit_probability must be from 0 to 1, got {self.unit_probability!r}")
        if not isinstance(self.needs, frozenset):
            object.__setattr__(self, "needs", frozenset(self.needs))

    def to_place(self) -> PatientToPlace:
        """The facts the hard constraints look at (what v1's `place` takes)."""
        return PatientToPlace(self.encounter_id, float(self.age), self.sex, self.target_unit, self.needs)
