"""NEWS2 (Royal College of Physicians, 2017): scoring, clinical response and partial vital sets.

Pure functions over frozen dataclasses: no I/O, no clock (callers pass `now`), no mutable
module state, so the stream can replay events and get the same scores.

Fractional readings: the chart bands whole numbers (rates, blood pressure, SpO2) and tenths of
a degree (temperature), so a reading is first rounded half up to that resolution and then
banded: resp rate 20.5 charts as 21 (2 points), 20.49 as 20 (0 points); temperature 36.05
charts as 36.1 (0 points). Rounding uses the shortest decimal form of the float (`repr`), so
36.05 means 36.05 and not its binary neighbour 36.0499999...
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

Consciousness = Literal["A", "C", "V", "P", "U"]
Priority = Literal["routine", "urgent", "emergency"]

# Chart order; also the order parameters appear in scores, descriptions and error messages.
PARAMETERS: tuple[str, ...] = (
    "resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "consciousness",
    "temperature_c",
)
_NUMERIC = ("resp_rate", "spo2", "systolic_bp", "heart_rate", "temperature_c")
_CONSCIOUSNESS_WORDS: Mapping[str, str] = MappingProxyType({
    "A": "alert",
    "C": "new confusion",
    "V": "responds to voice only",
    "P": "responds to pain only",
    "U": "unresponsive",
})


class Band(StrEnum):
    """Clinical risk band; a StrEnum so it serialises as its plain string value."""

    ZERO = "zero"
    LOW = "low"
    LOW_SINGLE_RED = "low_single_red"  # RCP "low-medium": a single parameter scored 3
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """Severity order, so paging can tell a rise from a fall."""
        return _BAND_ORDER.index(self)


_BAND_ORDER = (Band.ZERO, Band.LOW, Band.LOW_SINGLE_RED, Band.MEDIUM, Band.HIGH)
_BAND_LABELS: Mapping[Band, str] = MappingProxyType({
    Band.ZERO: "zero",
    Band.LOW: "low",
    Band.LOW_SINGLE_RED: "low-medium, single red score",
    Band.MEDIUM: "medium",
    Band.HIGH: "high",
})


@dataclass(frozen=True)
class Vitalset:
    """One set of observations; any field may be missing (`None`) until `combine` fills it."""

    resp_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    heart_rate: float | None = None
    consciousness: Consciousness | None = None
    temperature_c: float | None = None

    def missing(self) -> tuple[str, ...]:
        return tuple(name for name in PARAMETERS if getattr(self, name) is None)


@dataclass(frozen=True)
class ParameterScore:
    """One parameter's points; `value` is the charted (rounded) reading the points were given for."""

    name: str
    value: float | bool | str
    points: int


@dataclass(frozen=True)
class News2Score:
    total: int
    band: Band
    parameters: tuple[ParameterScore, ...]
    any_red: bool
    scale2: bool
    unmeasured: tuple[str, ...] = ()  # a lower bound (`score_at_least`): parameters not measured, left out


@dataclass(frozen=True)
class Response:
    """What the chart asks for in a band; `role` None means nobody is paged."""

    role: str | None
    priority: Priority
    monitoring_minutes: int
    text: str


# The RCP clinical response per band, mapped to roster roles; `role` None: the response is the
# ward's own (observations, a registered nurse's assessment), shown on the bed board, not paged.
# "Continuous monitoring" for high
# has no interval on the chart; 30 minutes is the overdue check a ward applies to it.
DEFAULT_RESPONSES: Mapping[Band, Response] = MappingProxyType({
    Band.ZERO: Response(
        None, "routine", 12 * 60,
        "Continue routine NEWS2 monitoring at least every 12 hours.",
    ),
    Band.LOW: Response(  # the chart asks for a registered nurse's assessment, not a page
        None, "routine", 4 * 60,
        "Observe at least every 4 hours; the registered nurse assesses and decides whether "
        "monitoring or escalation should increase.",
    ),
    Band.LOW_SINGLE_RED: Response(
        "ward_doctor", "urgent", 60,
        "Observe at least hourly; the registered nurse informs the medical team for an urgent "
        "ward-based review by a clinician.",
    ),
    Band.MEDIUM: Response(
        "ward_doctor", "urgent", 60,
        "Observe at least hourly; urgent review by the ward doctor or a clinician competent in "
        "assessing acutely ill patients, and consider the critical care outreach team.",
    ),
    Band.HIGH: Response(
        "critical_care_outreach", "emergency", 30,
        "Monitor vital signs continuously; emergency assessment by the critical care outreach "
        "or rapid response team, usually with transfer to a higher level of care.",
    ),
})


def band_label(band: Band) -> str:
    """The band as a clinician reads it ("low-medium, single red score")."""
    return _BAND_LABELS[band]


def clinical_response(band: Band, table: Mapping[Band, Response] = DEFAULT_RESPONSES) -> Response:
    return table[band]


def rename_roles(table: Mapping[Band, Response], renames: Mapping[str, str]) -> Mapping[Band, Response]:
    """A copy of `table` with roster roles renamed, for hospitals whose rosters differ."""
    return MappingProxyType({
        band: replace(r, role=renames.get(r.role, r.role) if r.role else None)
        for band, r in table.items()
    })


# Bands as (highest charted value in the band, points); the last band is open-ended.
_RESP = ((8, 3), (11, 1), (20, 0), (24, 2), (None, 3))
_SPO2_SCALE1 = ((91, 3), (93, 2), (95, 1), (None, 0))
_SPO2_SCALE2_LOW = ((83, 3), (85, 2), (87, 1), (92, 0))
_SPO2_SCALE2_OXYGEN = ((94, 1), (96, 2), (None, 3))
_SYSTOLIC = ((90, 3), (100, 2), (110, 1), (219, 0), (None, 3))
_PULSE = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (None, 3))
_TEMPERATURE = (
    (Decimal("35.0"), 3), (Decimal("36.0"), 1), (Decimal("38.0"), 0), (Decimal("39.0"), 1),
    (None, 2),
)


def _chart(value: float, step: str) -> Decimal:
    """Round half up to the chart's resolution (`step` "1" or "0.1")."""
    return Decimal(repr(value)).quantize(Decimal(step), rounding=ROUND_HALF_UP)


def _band_points(value: Decimal, bands: tuple) -> int | None:
    for upper, points in bands:
        if upper is None or value <= upper:
            return points
    return None


def _points(value: Decimal, bands: tuple) -> int:
    """Points on a chart that ends open (its last band has no upper limit)."""
    points = _band_points(value, bands)
    if points is None:
        raise ValueError(f"{value} is beyond the chart's last band")
    return points


@dataclass(frozen=True)
class _Complete:
    """A validated, complete set (what `score` charts)."""

    resp_rate: float
    spo2: float
    on_oxygen: bool
    systolic_bp: float
    heart_rate: float
    consciousness: Consciousness
    temperature_c: float


def _validate(v: Vitalset) -> _Complete:
    if (v.resp_rate is None or v.spo2 is None or v.on_oxygen is None or v.systolic_bp is None
            or v.heart_rate is None or v.consciousness is None or v.temperature_c is None):
        raise ValueError(f"NEWS2 needs a complete set; missing: {', '.join(v.missing())}")
    for name in _NUMERIC:
        value = getattr(v, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if name != "temperature_c" and value < 0:
            raise ValueError(f"{name} cannot be negative, got {value!r}")
    if v.spo2 > 100:
        raise ValueError(f"spo2 cannot exceed 100%, got {v.spo2!r}")
    if not isinstance(v.on_oxygen, bool):
        raise ValueError(f"on_oxygen must be true or false, got {v.on_oxygen!r}")
    if v.consciousness not in _CONSCIOUSNESS_WORDS:
        raise ValueError(f"consciousness must be one of A, C, V, P, U, got {v.consciousness!r}")
    return _Complete(v.resp_rate, v.spo2, v.on_oxygen, v.systolic_bp, v.heart_rate, v.consciousness,
                     v.temperature_c)


def _spo2_points(spo2: Decimal, on_oxygen: bool, scale2: bool) -> int:
    if not scale2:
        return _points(spo2, _SPO2_SCALE1)
    low = _band_points(spo2, _SPO2_SCALE2_LOW)
    if low is not None:
        return low
    # Scale 2 at 93% or more: harmless on air, a sign of over-oxygenation on oxygen.
    return _points(spo2, _SPO2_SCALE2_OXYGEN) if on_oxygen else 0


def _band(total: int, any_red: bool) -> Band:
    if total >= 7:
        return Band.HIGH
    if total >= 5:
        return Band.MEDIUM
    if any_red:
        return Band.LOW_SINGLE_RED
    return Band.LOW if total > 0 else Band.ZERO


def score(vitals: Vitalset, scale2: bool) -> News2Score:
    """Score a complete set; `scale2` only when a clinician prescribed SpO2 scale 2.

    Raises ValueError naming the missing or impossible parameters rather than guessing.
    """
    v = _validate(vitals)
    resp, spo2 = _chart(v.resp_rate, "1"), _chart(v.spo2, "1")
    sbp, pulse = _chart(v.systolic_bp, "1"), _chart(v.heart_rate, "1")
    temp = _chart(v.temperature_c, "0.1")
    parameters = (
        ParameterScore("resp_rate", int(resp), _points(resp, _RESP)),
        ParameterScore("spo2", int(spo2), _spo2_points(spo2, v.on_oxygen, scale2)),
        ParameterScore("on_oxygen", v.on_oxygen, 2 if v.on_oxygen else 0),
        ParameterScore("systolic_bp", int(sbp), _points(sbp, _SYSTOLIC)),
        ParameterScore("heart_rate", int(pulse), _points(pulse, _PULSE)),
        ParameterScore("consciousness", v.consciousness, 0 if v.consciousness == "A" else 3),
        ParameterScore("temperature_c", float(temp), _points(temp, _TEMPERATURE)),
    )
    total = sum(p.points for p in parameters)
    any_red = any(p.points == 3 for p in parameters)
    return News2Score(total, _band(total, any_red), parameters, any_red, scale2)


# Values that score 0 on every chart, to take a missing parameter's lowest possible points.
_ZERO_POINTS: Mapping[str, object] = MappingProxyType({
    "resp_rate": 16, "spo2": 97, "on_oxygen": False, "systolic_bp": 120, "heart_rate": 70, "consciousness": "A",
    "temperature_c": 37.0,
})
_PARAMETER_WORDS: Mapping[str, str] = MappingProxyType({
    "resp_rate": "resp rate", "spo2": "SpO2", "on_oxygen": "oxygen", "systolic_bp": "systolic BP",
    "heart_rate": "pulse", "consciousness": "consciousness", "temperature_c": "temperature",
})
_ZERO_SPO2_SCALE2 = 90  # the target range 88-92% scores 0 on scale 2 on air and on oxygen


def score_at_least(v: Vitalset, scale2: bool) -> News2Score:
    """The lowest NEWS2 an incomplete set can have: its measured parameters' points.

    Every parameter scores 0 or more, so a missing one can only add: an incomplete set whose
    measured values already reach a band is at least in that band. Nothing is guessed into the
    result: the missing parameters are named in `unmeasured` and left out of `parameters`. A
    complete set scores as `score` does.
    """
    missing = v.missing()
    fill: dict[str, Any] = {name: (_ZERO_SPO2_SCALE2 if name == "spo2" and scale2 else _ZERO_POINTS[name]) for name in missing}
    full = score(replace(v, **fill), scale2=scale2)
    if not missing:
        return full
    parameters = tuple(p for p in full.parameters if p.name not in missing)
    return News2Score(full.total, full.band, parameters, full.any_red, scale2, unmeasured=missing)


def _describe_parameter(p: ParameterScore, scale2: bool) -> str:
    text = {
        "resp_rate": lambda: f"resp rate {p.value}/min",
        "spo2": lambda: f"SpO2 {p.value}% on scale {2 if scale2 else 1}",
        "on_oxygen": lambda: "on oxygen",
        "systolic_bp": lambda: f"systolic BP {p.value} mmHg",
        "heart_rate": lambda: f"pulse {p.value}/min",
        "consciousness": lambda: _CONSCIOUSNESS_WORDS[str(p.value)],
        "temperature_c": lambda: f"temperature {p.value:.1f} °C",
    }[p.name]()
    return f"{text} ({p.points})"


def describe_scoring(result: News2Score) -> str:
    """One sentence for a page: the total, the band and every parameter that scored."""
    head = f"NEWS2 {'at least ' if result.unmeasured else ''}{result.total} ({band_label(result.band)})"
    scoring = [_describe_parameter(p, result.scale2) for p in result.parameters if p.points]
    tail = (f"; not measured: {', '.join(_PARAMETER_WORDS[n] for n in result.unmeasured)}"
            if result.unmeasured else "")
    if not scoring:
        return f"{head}: no parameter scored{tail}."
    return f"{head}: {', '.join(scoring)}{tail}."


@dataclass(frozen=True)
class Observation:
    """A parameter's latest value and when it was observed."""

    value: float | bool | str
    at: datetime


@dataclass(frozen=True)
class Combined:
    """A new partial set merged with recent history; score it only when `complete`."""

    vitals: Vitalset
    carried: tuple[str, ...]  # taken from earlier observations no older than max_age
    missing: tuple[str, ...]  # never observed
    stale: tuple[str, ...]  # observed, but longer ago than max_age

    @property
    def complete(self) -> bool:
        return not self.missing and not self.stale

    @property
    def incomplete(self) -> tuple[str, ...]:
        gaps = set(self.missing) | set(self.stale)
        return tuple(name for name in PARAMETERS if name in gaps)


def _check_names(latest: Mapping[str, Observation]) -> None:
    unknown = sorted(set(latest) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown NEWS2 parameters: {', '.join(unknown)}")


def combine(
    latest: Mapping[str, Observation], new: Vitalset, now: datetime, max_age: timedelta
) -> Combined:
    """Fill gaps in `new` from each parameter's latest value if it is at most `max_age` old.

    A score from a guessed value could hide deterioration, so anything older or never seen
    leaves the set incomplete and names it.
    """
    _check_names(latest)
    values: dict[str, Any] = {}
    carried, missing, stale = [], [], []
    for name in PARAMETERS:
        value = getattr(new, name)
        if value is not None:
            values[name] = value
        elif name not in latest:
            missing.append(name)
        elif now - latest[name].at <= max_age:
            values[name] = latest[name].value
            carried.append(name)
        else:
            stale.append(name)
    return Combined(Vitalset(**values), tuple(carried), tuple(missing), tuple(stale))


def record(latest: Mapping[str, Observation], new: Vitalset, at: datetime) -> dict[str, Observation]:
    """A new history with `new`'s values observed `at`; a late, older reading never wins."""
    _check_names(latest)
    updated = dict(latest)
    for f in fields(new):
        value = getattr(new, f.name)
        if value is not None and (f.name not in updated or updated[f.name].at <= at):
            updated[f.name] = Observation(value, at)
    return updated


def news2_applicable(age: float, pregnant: bool) -> tuple[bool, str]:
    """NEWS2 is validated for non-pregnant adults only; say why when it does not apply."""
    if not math.isfinite(age) or age < 0:
        raise ValueError(f"age must be a non-negative number of years, got {age!r}")
    exclusions = []
    if age < 16:
        exclusions.append("is under 16 (use a paediatric early warning score)")
    if pregnant:
        exclusions.append("is pregnant (use an obstetric early warning score)")
    if exclusions:
        return False, f"NEWS2 does not apply: the patient {' and '.join(exclusions)}."
    return True, "NEWS2 applies: the patient is 16 or over and not pregnant."
