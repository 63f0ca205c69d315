"""The knobs of the scoring allocator: how much each soft preference costs, as plain frozen data.

Hard constraints never appear here: they are not weighed, they filter. Every number is a cost in
one common unit ("points") that the matching minimises, so the defaults below are chosen
relative to each other; the comments say which preference each one must beat or lose to. A
hospital overrides any of them in the `allocation:` section of its YAML file (see
allocator/hospitals/demo.yaml), which `allocator.hospital` validates into these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

__all__ = ["ESI_LEVELS", "SCARCE_FEATURES", "AllocationWeights", "Reserve", "ScarceBedCosts"]

ESI_LEVELS = (1, 2, 3, 4, 5)  # the taxonomy's acuity scale, 1 the most urgent
# Bed features a patient can be given without needing them, in the order the cost vector uses.
SCARCE_FEATURES = ("negative_pressure", "single_room", "telemetry", "bariatric", "near_station")
ReserveFeature = Literal["negative_pressure", "single_room", "telemetry", "bariatric"]
RESERVE_FEATURES: tuple[str, ...] = get_args(ReserveFeature)


@dataclass(frozen=True)
class ScarceBedCosts:
    """Cost of spending a bed feature on a patient who does not need it (per feature it has).

    A negative-pressure room is also a single room, so a patient without any isolation need
    who takes one pays both; one with contact isolation pays only the negative-pressure part.
    """

    # A handful per hospital and an airborne case has nowhere else to go: with the single-room
    # part (45 in all) it costs more than outlying, so a patient without the need is sent to
    # an overflow unit rather than into the last negative-pressure room.
    negative_pressure: float = 25.0
    # Contact/droplet isolation and sex-X patients need them daily; below `overflow`, so a
    # patient still gets a side room on their own ward rather than outlying, but a freed side
    # room goes to a waiting isolation patient before anyone who has waited < 5 hours longer.
    single_room: float = 20.0
    telemetry: float = 10.0  # monitored beds are few outside cardiology
    bariatric: float = 8.0  # rarely needed but very hard to improvise
    near_station: float = 0.5  # a tie-breaker: keep them for close observation

    def as_tuple(self) -> tuple[float, ...]:
        return tuple(getattr(self, f) for f in SCARCE_FEATURES)


@dataclass(frozen=True)
class Reserve:
    """Keep the last `keep` free beds of a unit or of a bed feature for ESI 1..max_acuity.

    A patient of a less urgent level (or unknown acuity) who takes one of those beds pays
    `cost`: they still get it when nothing else suits, so a reserve never leaves anyone waiting
    on its own. Exactly one of `unit` (a unit code) and `feature` (a bed feature) is set.
    """

    keep: int
    max_acuity: int
    cost: float
    unit: str | None = None
    feature: str | None = None

    def __post_init__(self) -> None:
        if (self.unit is None) == (self.feature is None):
            raise ValueError("a reserve names exactly one of unit and feature")

    @property
    def name(self) -> str:
        """'ICU' or 'telemetry': what reasons call the pool."""
        name = self.unit if self.unit is not None else self.feature
        if name is None:  # refused by __post_init__
            raise ValueError("a reserve names exactly one of unit and feature")
        return name


@dataclass(frozen=True)
class AllocationWeights:
    """Every soft preference's cost; the defaults are what a hospital without `allocation:` gets."""

    # Off-service placement: outliers get fewer specialist reviews and stay longer. The most
    # a soft preference costs apart from a negative-pressure room: worth 7.5 hours of waiting,
    # and more than the priority gap between ESI 1 and ESI 5, so for a contested bed a patient
    # of the unit's own service comes before an outlier who has not waited much longer.
    overflow: float = 30.0
    overflow_step: float = 3.0  # per further overflow unit: follow the configured order
    scarce_beds: ScarceBedCosts = ScarceBedCosts()
    # A close-observation patient far from the nurses' station needs a sitter or falls.
    close_observation_far: float = 8.0
    # Committing an empty flexible bay to one sex while a designated bed is free narrows
    # the next patient's options; a tie-breaker, below every other preference.
    flexible_bay_open: float = 1.0
    # Per acuity point per nurse of extra load on the chosen unit (relative to the lightest
    # unit the patient could go to), times the patient's own acuity weight: spread sick
    # patients over nurses. Small beside `overflow`, so it chooses among suitable units only.
    workload: float = 0.5
    acuity_weights: tuple[float, ...] = (4.0, 3.0, 2.0, 1.5, 1.0)  # nursing load of ESI 1..5
    unknown_acuity: int = 3  # the ESI level assumed when the model gave none (the commonest)
    # Who gets the beds when there are fewer than patients: points by ESI 1..5, plus points
    # per hour waited (counted up to a cap), so 2.5 hours of waiting outweigh one ESI level
    # (2 to 3) and the longest waits are not starved by a stream of sicker arrivals.
    priority_acuity: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0, 2.5)
    priority_per_hour: float = 4.0
    priority_max_hours: float = 48.0
    # Hospital-specific (they name units or features); none unless the file lists them.
    reserves: tuple[Reserve, ...] = ()
    # A transfer to a unit serving another label within this many hours of admission says
    # the first placement was wrong (a feedback record for the model).
    transfer_correction_hours: float = 24.0

    def acuity_weight(self, acuity: int | None) -> float:
        return self.acuity_weights[self.level(acuity) - 1]

    def level(self, acuity: int | None) -> int:
        """The ESI level scoring uses: the given one, or `unknown_acuity`."""
        return self.unknown_acuity if acuity is None else acuity

    def priority(self, acuity: int | None, waited_minutes: float) -> float:
        hours = min(max(waited_minutes, 0.0) / 60.0, self.priority_max_hours)
        return self.priority_acuity[self.level(acuity) - 1] + self.priority_per_hour * hours

    @property
    def max_priority(self) -> float:
        return max(self.priority_acuity) + self.priority_per_hour * self.priority_max_hours
