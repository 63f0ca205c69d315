"""From calibrated probabilities to one consistent, safe prediction (numpy-free pure functions).

1. **Joint, cost-sensitive decoding.** The unit and the acuity are chosen together, as the pair
   with the least expected cost among the pairs the label set allows:
   `cost(u, a) = sum_t P(acuity=t) * acuity_cost[t][a] + unit_weight * unit_cost(u)`, where
   `unit_cost(u) = 1 - P(u)` (sending home a patient who needs a bed costs `discharge_miss_cost`
   instead of 1). Allowed pairs: no discharge at an urgent level (ESI 1-2), ICU only at an urgent
   level; for a patient under 16, every admission that is not ICU is PAEDIATRICS (their
   probabilities are summed into it), and PAEDIATRICS is never chosen for an adult.
2. **Safety floor.** The measured signals of the note (`inference.signals`) set floors on acuity
   (`inference.safety`): if a floor is more urgent than the decoded acuity, the pair is decoded
   again with the acuity held at or above the floor (ICU when the rule says so). A floor never
   lowers a patient's urgency.
3. **Reasons.** Every change from the model's own argmax is a `Reason` on the result: raised
   acuity (with the values that raised it and the threshold's source), unit moved by a rule or for
   consistency, acuity chosen by cost, needs implied by measured values.

The text's words are read by the model; this module reads numbers only, and its reasons quote
numbers only (never the note).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.exceptions import ModelConfigError
from inference.interface import Reason
from inference.labels import LabelSet
from inference.policy import TriagePolicy
from inference.safety import Floor, floors, needs_from_signals
from inference.signals import Signals, parse_signals


@dataclass(frozen=True)
class Decoded:
    unit: str
    acuity: int
    needs: tuple[str, ...]
    uncertain: bool
    unit_confidence: float       # P(chosen unit) after the age consistency (under-16 merge)
    acuity_confidence: float     # P(chosen acuity), or 1 - P(truth more urgent) (policy `acuity_confidence`)
    model_unit: str              # the argmax, before decoding
    model_acuity: int
    reasons: tuple[Reason, ...]
    floors: tuple[Floor, ...]

    @property
    def confidence(self) -> float:
        return min(self.unit_confidence, self.acuity_confidence)

    @property
    def raised(self) -> bool:
        return any(r.code == "safety_floor" for r in self.reasons)


def check_policy(policy: TriagePolicy, labels: LabelSet) -> None:
    """The policy fits the model's label set (a mismatch stops loading, never a silent fallback)."""
    n = len(labels.acuities)
    if len(policy.decoding.acuity_cost) != n:
        raise ModelConfigError(f"triage policy: acuity_cost is {len(policy.decoding.acuity_cost)}x"
                               f"{len(policy.decoding.acuity_cost)} but the model has {n} acuity levels")


def adjusted_unit_probs(unit_p: Sequence[float], labels: LabelSet, age: float,
                        policy: TriagePolicy) -> list[float]:
    """Unit probabilities under the age rule: under 16, every non-ICU admission is PAEDIATRICS;
    from 16, PAEDIATRICS is impossible (its share goes to the others, renormalised)."""
    d = policy.decoding
    units = labels.units
    p = [max(0.0, float(x)) for x in unit_p]
    if d.paediatric_unit not in units:
        return p
    k = units.index(d.paediatric_unit)
    if age < d.paediatric_age_below:
        keep = {d.icu_unit, d.discharge_unit, d.paediatric_unit}
        merged = sum(x for u, x in zip(units, p, strict=True) if u not in keep)
        p = [x if u in keep else 0.0 for u, x in zip(units, p, strict=True)]
        p[k] += merged
    else:
        p[k] = 0.0
    s = sum(p)
    return [x / s for x in p] if s > 0 else [1.0 / len(p)] * len(p)


def expected_acuity_costs(acuity_p: Sequence[float], policy: TriagePolicy) -> list[float]:
    c = policy.decoding.acuity_cost
    n = len(c)
    return [sum(float(acuity_p[t]) * c[t][a] for t in range(n)) for a in range(n)]


def _allowed(unit: str, level: int, age: float, units: Sequence[str], policy: TriagePolicy) -> bool:
    d = policy.decoding
    urgent = level in d.urgent_levels
    if unit == d.discharge_unit and urgent:
        return False
    if unit == d.icu_unit and not urgent:
        return False
    if d.paediatric_unit in units:
        if age < d.paediatric_age_below and unit not in (d.icu_unit, d.discharge_unit, d.paediatric_unit):
            return False
        if age >= d.paediatric_age_below and unit == d.paediatric_unit:
            return False
    return True


def _best_pair(unit_p: list[float], acuity_costs: list[float], labels: LabelSet, age: float, policy: TriagePolicy,
               *, max_level: int | None = None, force_unit: str | None = None, urgent_mass: float = 0.0) -> tuple[int, int]:
    d = policy.decoding
    best: tuple[tuple[float, int, float], int, int] | None = None
    for ui, u in enumerate(labels.units):
        if force_unit is not None and u != force_unit:
            continue
        miss = d.discharge_miss_cost if u == d.discharge_unit else 1.0
        uc = d.unit_weight * miss * (1.0 - unit_p[ui])
        if u == d.discharge_unit:  # home, yet the acuity head gives a chance of ESI 1-2: the patient may be urgent
            uc += d.discharge_urgent_cost * urgent_mass
        for ai, a in enumerate(labels.acuities):
            if max_level is not None and a > max_level:
                continue
            if not _allowed(u, a, age, labels.units, policy):
                continue
            key = (round(acuity_costs[ai] + uc, 12), ai, -unit_p[ui])  # ties: the more urgent, the likelier unit
            if best is None or key < best[0]:
                best = (key, ui, ai)
    if best is None:  # the constraints leave nothing (a label set without an admitting unit): keep the model's unit
        ui = max(range(len(unit_p)), key=lambda i: unit_p[i])
        ai = max(0, min(len(labels.acuities) - 1, (labels.acuities.index(max_level) if max_level in labels.acuities
                                                   else 0)))
        return ui, ai
    return best[1], best[2]


def _argmax(xs: Sequence[float]) -> int:
    return max(range(len(xs)), key=lambda i: float(xs[i]))


def decode(unit_p: Sequence[float], acuity_p: Sequence[float], need_p: Sequence[float], labels: LabelSet, *,
           age: float, text: str, policy: TriagePolicy, threshold: float, need_threshold: float = 0.5,
           signals: Signals | None = None) -> Decoded:
    """The decoded prediction for one patient (see the module docstring)."""
    d = policy.decoding
    sig = signals if signals is not None else parse_signals(text)
    units, levels = labels.units, labels.acuities
    model_unit, model_acuity = units[_argmax(unit_p)], int(levels[_argmax(acuity_p)])
    up = adjusted_unit_probs(unit_p, labels, age, policy)
    ac = expected_acuity_costs(acuity_p, policy)
    urgent_mass = sum(float(acuity_p[i]) for i, a in enumerate(levels) if a in d.urgent_levels)
    ui, ai = _best_pair(up, ac, labels, age, policy, urgent_mass=urgent_mass)
    reasons: list[Reason] = []
    decoded_level = int(levels[ai])
    if decoded_level != model_acuity:
        reasons.append(Reason("cost_decoding", f"Acuity {decoded_level} chosen by expected cost (most likely "
                                               f"{model_acuity}; P(ESI 1-2) = {urgent_mass:.2f})."))

    fl = floors(sig, age, decoded_level, policy)
    if fl:
        floor_level = min(f.level for f in fl)
        icu = d.icu_unit if d.icu_unit in units and any(f.to_icu for f in fl) else None
        if floor_level < decoded_level or (icu and units[ui] != icu):
            before_unit = units[ui]
            ui, ai = _best_pair(up, ac, labels, age, policy, max_level=min(floor_level, decoded_level),
                                force_unit=icu, urgent_mass=urgent_mass)
            new_level = int(levels[ai])
            why = "; ".join(f.text() for f in fl if f.level <= new_level)
            if new_level < decoded_level:
                reasons.append(Reason("safety_floor", f"Acuity raised to {new_level} (model {decoded_level}): {why}."))
            if units[ui] != before_unit:
                code = "safety_unit" if icu else "consistency"
                reasons.append(Reason(code, f"Unit {units[ui]} instead of {before_unit}: acuity {new_level}"
                                            + (f", {why}." if icu else " is never sent home.")))
    if units[ui] != model_unit and not any(r.code in ("safety_unit", "consistency") for r in reasons):
        reasons.append(Reason("consistency", f"Unit {units[ui]} instead of {model_unit} (most likely): "
                                             f"{_consistency_why(model_unit, int(levels[ai]), age, policy)}."))

    needs = [n for n, x in zip(labels.needs, need_p, strict=True) if float(x) >= need_threshold]
    for nf in needs_from_signals(sig, age, policy):
        if nf.need in labels.needs and nf.need not in needs:
            needs.append(nf.need)
            reasons.append(Reason("safety_need", f"Need {nf.need}: {nf.finding} ({nf.source})."))
    needs_t = tuple(n for n in labels.needs if n in needs)

    unit_conf = float(up[ui])
    if d.acuity_confidence == "top":
        acuity_conf = float(acuity_p[ai])
    else:  # the chance that the truth is not more urgent than the chosen level
        acuity_conf = 1.0 - sum(float(acuity_p[i]) for i in range(ai))
    raised = any(r.code == "safety_floor" for r in reasons)
    uncertain = unit_conf < threshold or acuity_conf < threshold or (raised and policy.safety.flag_uncertain_when_raised)
    risk = sum(float(acuity_p[i]) for i in range(ai))  # P(truth more urgent than the served level)
    if d.flag_urgent_risk_at_least is not None and ai > 0 and risk >= d.flag_urgent_risk_at_least:
        reasons.append(Reason("urgency_risk", f"P(more urgent than ESI {int(levels[ai])}) = {risk:.2f}: a clinician "
                                              f"confirms the acuity."))
        uncertain = True
    if (d.flag_urgent_mass_at_least is not None and int(levels[ai]) not in d.urgent_levels
            and urgent_mass >= d.flag_urgent_mass_at_least and not any(r.code == "urgency_risk" for r in reasons)):
        reasons.append(Reason("urgency_risk", f"P(ESI {'-'.join(str(x) for x in d.urgent_levels)}) = "
                                              f"{urgent_mass:.2f} at ESI {int(levels[ai])}: a clinician confirms "
                                              f"the acuity."))
        uncertain = True
    return Decoded(unit=units[ui], acuity=int(levels[ai]), needs=needs_t, uncertain=bool(uncertain),
                   unit_confidence=unit_conf, acuity_confidence=acuity_conf, model_unit=model_unit,
                   model_acuity=model_acuity, reasons=tuple(reasons), floors=tuple(fl))


def _consistency_why(model_unit: str, level: int, age: float, policy: TriagePolicy) -> str:
    d = policy.decoding
    if model_unit == d.discharge_unit and level in d.urgent_levels:
        return f"acuity {level} is never sent home"
    if model_unit == d.icu_unit and level not in d.urgent_levels:
        return f"ICU only at ESI {'-'.join(str(x) for x in d.urgent_levels)}"
    if age < d.paediatric_age_below:
        return f"admitted patients under {d.paediatric_age_below:g} go to {d.paediatric_unit}"
    if model_unit == d.paediatric_unit:
        return f"{d.paediatric_unit} is for patients under {d.paediatric_age_below:g}"
    return "least expected cost of unit and acuity together"
