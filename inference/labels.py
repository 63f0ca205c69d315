"""The label set a model is trained on; it travels with the model in `triage_config.json`.

Standard library only: the serving path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.exceptions import ModelConfigError

DEFAULT_UNITS: tuple[str, ...] = ("ICU", "CARDIAC", "STROKE", "MEDICINE", "SURGERY", "ORTHO", "MATERNITY",
                                  "PAEDIATRICS", "MENTAL_HEALTH", "DISCHARGE")
DEFAULT_ACUITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
DEFAULT_NEEDS: tuple[str, ...] = ("airborne_isolation", "droplet_isolation", "contact_isolation", "telemetry",
                                  "respiratory_support", "bariatric", "close_observation")


@dataclass(frozen=True)
class LabelSet:
    units: tuple[str, ...] = DEFAULT_UNITS
    acuities: tuple[int, ...] = DEFAULT_ACUITIES
    needs: tuple[str, ...] = DEFAULT_NEEDS

    def __post_init__(self) -> None:
        if len(self.units) < 2:
            raise ModelConfigError("label set: 'units' needs at least two labels")
        if len(self.acuities) < 2:
            raise ModelConfigError("label set: 'acuities' needs at least two levels")
        for name, seq in (("units", self.units), ("acuities", self.acuities), ("needs", self.needs)):
            if len(set(seq)) != len(seq):
                raise ModelConfigError(f"label set: duplicate labels in {name!r}")
        if any(not isinstance(u, str) or not u for u in self.units + self.needs):
            raise ModelConfigError("label set: unit and need labels must be non-empty strings")
        if any(isinstance(a, bool) or not isinstance(a, int) for a in self.acuities):
            raise ModelConfigError("label set: acuity levels must be integers")
        if list(self.acuities) != sorted(self.acuities):
            raise ModelConfigError("label set: acuity levels must be listed from most to least urgent (ascending)")

    def to_dict(self) -> dict[str, Any]:
        return {"units": list(self.units), "acuities": list(self.acuities), "needs": list(self.needs)}

    @classmethod
    def from_dict(cls, d: Any) -> LabelSet:
        if not isinstance(d, dict):
            raise ModelConfigError("label set must be an object with 'units', 'acuities' and 'needs'")
        try:
            units = tuple(str(u) for u in d["units"])
            acuities = tuple(int(a) for a in d.get("acuities", DEFAULT_ACUITIES))
            needs = tuple(str(n) for n in d.get("needs", ()))
        except KeyError as exc:
            raise ModelConfigError(f"label set: missing {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelConfigError(f"label set: {exc}") from None
        return cls(units, acuities, needs)

    def acuity_index(self, level: int) -> int:
        return self.acuities.index(level)


DEFAULT_LABELS = LabelSet()
