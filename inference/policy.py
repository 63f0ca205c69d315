"""The triage policy file (`triage_policy.yaml`): decoding costs and safety thresholds, typed.

Parsed once, at load, into frozen pydantic models; every threshold must name a source listed
in `sources`. A bad file stops loading with one line naming the field (`ModelConfigError`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference.exceptions import ModelConfigError

DEFAULT_POLICY_PATH = Path(__file__).with_name("triage_policy.yaml")


class _M(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Num(_M):
    value: float
    source: str
    note: str = ""


class Flag(_M):
    value: bool
    source: str
    note: str = ""


class Levels(_M):
    value: tuple[Literal["A", "V", "P", "U"], ...]
    source: str
    note: str = ""


class HypotensionBand(_M):
    below_age: float
    systolic_below: float
    plus_per_year: float = 0.0


class PaediatricHypotension(_M):
    source: str
    note: str = ""
    bands: tuple[HypotensionBand, ...]

    def systolic_limit(self, age: float) -> float | None:
        for b in self.bands:
            if age < b.below_age:
                return b.systolic_below + b.plus_per_year * max(0.0, age)
        return None


class Esi1(_M):
    shock_systolic_below: Num
    shock_heart_rate_above: Num
    gcs_at_most: Num
    avpu_levels: Levels
    spo2_on_oxygen_below: Num
    spo2_on_oxygen_below_hypercapnic: Num
    adult_heart_rate_below: Num
    bp_unrecordable: Flag
    apnoeic: Flag
    pulseless: Flag
    paediatric_hypotension: PaediatricHypotension
    peak_flow_pct_below: Num | None = None
    send_to_icu: tuple[str, ...] = ()


class Esi2(_M):
    adult_from_age: float = 16
    adult_resp_rate_at_most: Num
    adult_resp_rate_at_least: Num
    spo2_at_most: Num
    spo2_at_most_hypercapnic: Num
    adult_systolic_at_most: Num
    adult_heart_rate_at_least: Num
    adult_heart_rate_at_most: Num
    temperature_at_most: Num
    gcs_at_most: Num
    avpu_levels: Levels
    glucose_below: Num
    glucose_at_least: Num
    ketones_at_least: Num
    ketones_with_glucose_at_least: Num
    lactate_at_least: Num
    pregnancy_systolic_at_least: Num
    pregnancy_diastolic_at_least: Num
    infant_fever_below_age: Num
    infant_fever_at_least: Num
    under5_resp_rate_above: Num
    apnoea_episodes: Flag
    news2_score_at_least: Num
    peak_flow_pct_at_most: Num | None = None


class DangerBand(_M):
    below_age: float
    heart_rate_above: float
    resp_rate_above: float


class DangerZone(_M):
    source: str
    raise_levels: tuple[int, ...] = (3,)
    spo2_below: float
    bands: tuple[DangerBand, ...] = Field(min_length=1)

    def band(self, age: float) -> DangerBand:
        for b in self.bands:
            if age < b.below_age:
                return b
        return self.bands[-1]


class SafetyNeeds(_M):
    respiratory_support_spo2_at_most: Num
    telemetry_heart_rate_below: Num


class Safety(_M):
    esi1: Esi1
    esi2: Esi2
    danger_zone: DangerZone
    needs: SafetyNeeds
    flag_uncertain_when_raised: bool = True


class Decoding(_M):
    acuity_cost: tuple[tuple[float, ...], ...]
    unit_weight: float = Field(1.0, ge=0)
    discharge_miss_cost: float = Field(2.0, ge=0)
    acuity_confidence: Literal["top", "not_under"] = "top"
    flag_urgent_risk_at_least: float | None = Field(None, ge=0, le=1)
    # sending home a patient whom the model gives a chance P(ESI 1-2) of being urgent costs this much more
    # per unit of that chance (0 = off)
    discharge_urgent_cost: float = Field(0.0, ge=0)
    # flag `uncertain` when the served level is not urgent but P(ESI 1-2) is at least this (None = off)
    flag_urgent_mass_at_least: float | None = Field(None, ge=0, le=1)
    urgent_levels: tuple[int, ...] = (1, 2)
    icu_unit: str = "ICU"
    discharge_unit: str = "DISCHARGE"
    paediatric_unit: str = "PAEDIATRICS"
    paediatric_age_below: float = 16

    @model_validator(mode="after")
    def _square(self) -> Decoding:
        n = len(self.acuity_cost)
        if n < 2 or any(len(r) != n for r in self.acuity_cost):
            raise ValueError("acuity_cost must be a square matrix (rows = true level, columns = predicted)")
        if any(self.acuity_cost[i][i] != 0 for i in range(n)):
            raise ValueError("acuity_cost: a correct prediction must cost 0 (the diagonal)")
        if any(x < 0 for r in self.acuity_cost for x in r):
            raise ValueError("acuity_cost: costs must not be negative")
        return self


class TriagePolicy(_M):
    sources: dict[str, str]
    safety: Safety
    decoding: Decoding

    @model_validator(mode="after")
    def _sources_known(self) -> TriagePolicy:
        missing = sorted({s for s in _sources_used(self.safety) if s not in self.sources})
        if missing:
            raise ValueError(f"threshold sources not listed under 'sources': {', '.join(missing)}")
        return self


def _sources_used(obj: Any):
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            v = getattr(obj, name)
            if name == "source" and isinstance(v, str):
                yield v
            else:
                yield from _sources_used(v)
    elif isinstance(obj, (tuple, list)):
        for x in obj:
            yield from _sources_used(x)


def load_policy(path: Path | None = None) -> TriagePolicy:
    """The policy from `path` (default: the packaged `triage_policy.yaml`)."""
    p = Path(path) if path else DEFAULT_POLICY_PATH
    if path is None:
        return _default()
    return _load(p)


@functools.lru_cache(maxsize=1)
def _default() -> TriagePolicy:
    return _load(DEFAULT_POLICY_PATH)


def _load(p: Path) -> TriagePolicy:
    if not p.exists():
        raise ModelConfigError(f"triage policy {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ModelConfigError(f"{p}: not valid YAML ({type(exc).__name__})") from None
    try:
        return TriagePolicy.model_validate(raw)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        raise ModelConfigError(f"{p}: field '{where}': {e['msg']}") from None
