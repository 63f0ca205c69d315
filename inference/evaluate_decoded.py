"""What a clinician would get: metrics of the *served* prediction (decoding + safety floor), side by side
with the model's argmax, on any labelled examples (the generated test split, the hand-written notes).

Measures (each for the argmax and for the decoded prediction):
* unit macro-F1 and accuracy; acuity exact and within one level;
* under-triage of true ESI 1-2 (predicted less urgent), how many of those were not flagged
  `uncertain` (silent misses), true ESI 1-2 predicted DISCHARGE; over-triage of true ESI 3-5;
* needs micro-F1; unit and acuity ECE of the calibrated probabilities (top label);
* flag rate and unit accuracy when not flagged; the coverage-accuracy curve (share not flagged vs
  their unit accuracy, as the threshold moves) and the lowest threshold meeting the target;
* every under-triaged ESI 1-2 case with the model's probabilities and the reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.calibration import ece_if_calibrated, ece_softmax, wilson_interval
from inference.data import Example
from inference.decoding import decode
from inference.labels import LabelSet
from inference.policy import TriagePolicy
from inference.safety import floors
from inference.signals import parse_signals

CURVE_THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.0, 1.0001, 0.05))
DEFAULT_HANDWRITTEN = Path(__file__).parent / "eval" / "handwritten_notes.jsonl"


def _predict(probs: dict[str, np.ndarray], exs: Sequence[Example], labels: LabelSet, policy: TriagePolicy,
             threshold: float, decoded: bool, need_threshold: float) -> dict:
    units, levels = labels.units, labels.acuities
    out: dict[str, list[Any]] = {"unit": [], "acuity": [], "needs": [], "uncertain": [], "conf": [], "raised": [],
                                 "reasons": []}
    for i, e in enumerate(exs):
        up, ap = probs["unit"][i], probs["acuity"][i]
        npb = probs["needs"][i] if probs["needs"].size else np.zeros(0)
        if decoded:
            d = decode(up.tolist(), ap.tolist(), npb.tolist(), labels, age=e.age, text=e.text, policy=policy,
                       threshold=threshold, need_threshold=need_threshold)
            out["unit"].append(units.index(d.unit))
            out["acuity"].append(int(d.acuity))
            out["needs"].append([int(n in d.needs) for n in labels.needs])
            out["uncertain"].append(d.uncertain)
            always = (d.raised and policy.safety.flag_uncertain_when_raised) or any(
                r.code == "urgency_risk" for r in d.reasons)  # flagged whatever the threshold
            out["conf"].append(0.0 if always else d.confidence)
            out["raised"].append(d.raised)
            out.setdefault("flag_kind", []).append(
                "safety_raise" if d.raised and policy.safety.flag_uncertain_when_raised else
                "urgency" if any(r.code == "urgency_risk" for r in d.reasons) else
                "threshold" if d.uncertain else "")
            out["reasons"].append([r.to_dict() for r in d.reasons])
        else:
            ui, ai = int(np.argmax(up)), int(np.argmax(ap))
            conf = float(min(up[ui], ap[ai]))
            out["unit"].append(ui)
            out["acuity"].append(int(levels[ai]))
            out["needs"].append([int(x >= need_threshold) for x in npb])
            out["uncertain"].append(conf < threshold)
            out["conf"].append(conf)
            out["raised"].append(False)
            out["reasons"].append([])
    return out


def system_metrics(probs: dict[str, np.ndarray], exs: Sequence[Example], labels: LabelSet, policy: TriagePolicy, *,
                   threshold: float, decoded: bool, target_accuracy: float = 0.9, need_threshold: float = 0.5,
                   list_misses: bool = True) -> dict:
    """Metrics of one system (calibrated `probs`) on `exs`, argmax (`decoded=False`) or served (`decoded=True`)."""
    from sklearn.metrics import f1_score

    n = len(exs)
    p = _predict(probs, exs, labels, policy, threshold, decoded, need_threshold)
    yu = np.array([labels.units.index(e.unit) for e in exs], dtype=np.int64)
    ya = np.array([e.acuity for e in exs], dtype=np.int64)
    yn = np.array([[int(x in e.needs) for x in labels.needs] for e in exs], dtype=np.int64).reshape(n, -1)
    pu, pa = np.array(p["unit"], dtype=np.int64), np.array(p["acuity"], dtype=np.int64)
    pn = np.array(p["needs"], dtype=np.int64).reshape(n, -1)
    unc, conf = np.array(p["uncertain"], dtype=bool), np.array(p["conf"], dtype=np.float64)
    urgent_levels = set(policy.decoding.urgent_levels)
    disc = policy.decoding.discharge_unit
    urgent = np.array([a in urgent_levels for a in ya], dtype=bool)
    under = urgent & (pa > ya)
    over = ~urgent & (pa < ya)
    sent_home = urgent & (np.array([labels.units[i] == disc for i in pu]) if n else np.zeros(0, dtype=bool))
    unit_ok = pu == yu
    pred_urgent = np.array([a in urgent_levels for a in pa], dtype=bool)
    pred_unit = [labels.units[i] for i in pu]
    inconsistent = sum(1 for u, pu_ in zip(pred_unit, pred_urgent, strict=True)
                       if (u == disc and pu_) or (u == policy.decoding.icu_unit and not pu_))
    m: dict = {
        "n": n, "decoded": decoded, "threshold": threshold,
        "unit_macro_f1": float(f1_score(yu, pu, labels=list(range(len(labels.units))), average="macro",
                                        zero_division=0)) if n else 0.0,
        "unit_accuracy": float(unit_ok.mean()) if n else 0.0,
        "acuity_exact": float((pa == ya).mean()) if n else 0.0,
        "acuity_within_one": float((np.abs(pa - ya) <= 1).mean()) if n else 0.0,
        "n_true_esi_1_2": int(urgent.sum()),
        "under_triage_esi_1_2": float(under.sum() / urgent.sum()) if urgent.any() else 0.0,
        "under_triaged": int(under.sum()),
        "under_triaged_not_flagged": int((under & ~unc).sum()),
        "esi_1_2_sent_home": int(sent_home.sum()),
        "n_true_esi_3_5": int((~urgent).sum()),
        "over_triage_esi_3_5": float(over.sum() / (~urgent).sum()) if (~urgent).any() else 0.0,
        "needs_micro_f1": float(f1_score(yn, pn, average="micro", zero_division=0)) if yn.size else None,
        "flagged_rate": float(unc.mean()) if n else 0.0,
        "unit_accuracy_not_flagged": float(unit_ok[~unc].mean()) if (~unc).any() else None,
        "raised_by_safety": int(np.sum(p["raised"])),
        # why the served predictions were flagged (shares of all cases): a safety raise, an urgency flag
        # (P(more urgent) or P(ESI 1-2) at ESI 3-5), or only the confidence threshold
        "flagged_by": ({k: float(np.mean([f == k for f in p["flag_kind"]])) if n else 0.0
                        for k in ("safety_raise", "urgency", "threshold")} if decoded else None),
        "inconsistent_predictions": int(inconsistent),
    }
    if n:
        m["unit_ece"] = ece_softmax(probs["unit"], yu)["ece"]
        m["acuity_ece"] = ece_softmax(probs["acuity"], np.array([labels.acuity_index(int(a)) for a in ya]))["ece"]
        # what sampling alone gives a perfectly calibrated head on this many cases (a small set's ECE floor)
        m["unit_ece_if_calibrated"] = ece_if_calibrated(probs["unit"].max(axis=1))
        m["acuity_ece_if_calibrated"] = ece_if_calibrated(probs["acuity"].max(axis=1))
    # 95% Wilson intervals of the rates that have targets: how precisely this set measures them
    m["under_triage_ci95"] = wilson_interval(int(under.sum()), int(urgent.sum()))
    m["over_triage_ci95"] = wilson_interval(int(over.sum()), int((~urgent).sum()))
    m["flagged_ci95"] = wilson_interval(int(unc.sum()), n)
    curve = []
    for t in CURVE_THRESHOLDS:
        keep = conf >= t
        curve.append({"threshold": t, "coverage": float(keep.mean()) if n else 0.0,
                      "unit_accuracy": float(unit_ok[keep].mean()) if keep.any() else None})
    m["coverage_accuracy"] = curve
    meets = [c for c in curve if c["unit_accuracy"] is not None and c["unit_accuracy"] >= target_accuracy]
    m["target_unit_accuracy"] = target_accuracy
    m["threshold_meeting_target"] = meets[0] if meets else None
    if list_misses:
        m["under_triage_cases"] = [_case(exs[i], i, labels, probs, p, policy) for i in map(int, np.flatnonzero(under))]
    return m


def _case(e: Example, i: int, labels: LabelSet, probs: dict, p: dict, policy: TriagePolicy) -> dict:
    up = probs["unit"][i]
    top = np.argsort(-up)[:3]
    return {"id": e.group or f"row-{i + 1}", "true_unit": e.unit, "true_acuity": e.acuity,
            "predicted_unit": labels.units[p["unit"][i]], "predicted_acuity": int(p["acuity"][i]),
            "flagged_uncertain": bool(p["uncertain"][i]),
            "acuity_probs": {str(a): round(float(x), 3) for a, x in zip(labels.acuities, probs["acuity"][i], strict=True)},
            "unit_probs_top3": {labels.units[j]: round(float(up[j]), 3) for j in top},
            "reasons": p["reasons"][i]}


def signals_alone(exs: Sequence[Example], policy: TriagePolicy) -> dict:
    """What the measured-signal rules do on their own (no model, no danger zone): the share of true ESI 1-2
    notes whose signs set a floor at or above their level, and of true ESI 3-5 given a more urgent floor."""
    urgent_levels = set(policy.decoding.urgent_levels)
    caught = wrong = n_urgent = n_other = with_signs = 0
    for e in exs:
        fl = floors(parse_signals(e.text), e.age, None, policy)
        level = min((f.level for f in fl), default=None)
        sig = parse_signals(e.text)
        with_signs += int(not sig.empty)
        if e.acuity in urgent_levels:
            n_urgent += 1
            caught += int(level is not None and level <= e.acuity)
        else:
            n_other += 1
            wrong += int(level is not None and level < e.acuity)
    return {"n": len(exs), "notes_with_measured_signs": with_signs,
            "esi_1_2_floored_to_their_level": caught, "n_true_esi_1_2": n_urgent,
            "esi_3_5_given_a_more_urgent_floor": wrong, "n_true_esi_3_5": n_other}


def load_handwritten(labels: LabelSet, path: Path | None = None) -> tuple[list[Example] | None, str]:
    """The hand-written evaluation notes: `path`, else the packaged set when the label set covers it.
    (examples, name), or (None, why not) for the packaged set under another label set; an explicit
    file that does not fit raises `TrainingDataError` naming the row and field."""
    from inference.data import load_files
    from inference.exceptions import TrainingDataError

    if path is not None:
        exs, _ = load_files([Path(path)], labels, require_train=False)
        return exs, str(path)
    try:
        exs, _ = load_files([DEFAULT_HANDWRITTEN], labels, require_train=False)
    except TrainingDataError as exc:
        return None, f"the packaged hand-written notes do not fit this model's label set ({exc})"
    return exs, "inference/eval/" + DEFAULT_HANDWRITTEN.name


SUMMARY_KEYS = ("unit_macro_f1", "unit_accuracy", "acuity_exact", "acuity_within_one", "under_triage_esi_1_2",
                "under_triaged", "under_triaged_not_flagged", "esi_1_2_sent_home", "over_triage_esi_3_5",
                "needs_micro_f1", "unit_ece", "acuity_ece", "flagged_rate", "unit_accuracy_not_flagged",
                "raised_by_safety", "inconsistent_predictions",
                "under_triage_ci95", "over_triage_ci95", "flagged_ci95")


def summary(m: dict) -> dict:
    s = {k: m.get(k) for k in SUMMARY_KEYS}
    floor = m.get("unit_ece_if_calibrated")
    s["unit_ece_if_calibrated_median"] = floor["median"] if floor else None
    s["unit_ece_if_calibrated_p95"] = floor["p95"] if floor else None
    t = m.get("threshold_meeting_target")
    s["threshold_meeting_target"] = t["threshold"] if t else None
    s["coverage_at_that_threshold"] = t["coverage"] if t else None
    return s


TRADEOFF_WEIGHTS = (1.0, 1.5, 2.0, 2.5, 3.0)


def with_under_triage_weight(policy: TriagePolicy, labels: LabelSet, weight: float) -> TriagePolicy:
    """The policy with the acuity cost matrix replaced by: `weight` per level for under-triaging a true urgent
    level, 1 per level for every other error (the shape `triage_policy.yaml` ships)."""
    urgent = set(policy.decoding.urgent_levels)
    lv = list(labels.acuities)
    cost = tuple(tuple(float((weight if (t in urgent and a > t) else 1.0) * abs(i - j)) for j, a in enumerate(lv))
                 for i, t in enumerate(lv))
    return policy.model_copy(update={"decoding": policy.decoding.model_copy(update={"acuity_cost": cost})})


def tradeoff(probs: dict[str, np.ndarray], exs: Sequence[Example], labels: LabelSet, policy: TriagePolicy, *,
             threshold: float, need_threshold: float = 0.5, weights: Sequence[float] = TRADEOFF_WEIGHTS) -> list[dict]:
    """Under- vs over-triage of the served prediction as the under-triage weight of the cost matrix moves."""
    rows = []
    for w in weights:
        m = system_metrics(probs, exs, labels, with_under_triage_weight(policy, labels, w), threshold=threshold,
                           decoded=True, need_threshold=need_threshold, list_misses=False)
        rows.append({"weight": w, **{k: m[k] for k in ("under_triage_esi_1_2", "under_triaged",
                                                         "under_triaged_not_flagged", "esi_1_2_sent_home",
                                                         "over_triage_esi_3_5", "unit_macro_f1", "flagged_rate")}})
    return rows


def compare(systems: dict[str, dict[str, np.ndarray]], exs: Sequence[Example], labels: LabelSet,
            policy: TriagePolicy, *, threshold: float, target_accuracy: float, need_threshold: float = 0.5) -> dict:
    """Every system argmax and decoded: {"<name>": {...}, "<name>_decoded": {...}, "summary": {...}}."""
    out: dict = {"n": len(exs)}
    for name, probs in systems.items():
        for decoded in (False, True):
            key = f"{name}_decoded" if decoded else name
            out[key] = system_metrics(probs, exs, labels, policy, threshold=threshold, decoded=decoded,
                                      target_accuracy=target_accuracy, need_threshold=need_threshold)
        if len(labels.acuities) > 1:
            out[f"{name}_decoded"]["under_triage_weight_curve"] = tradeoff(
                probs, exs, labels, policy, threshold=threshold, need_threshold=need_threshold)
    out["summary"] = {k: summary(v) for k, v in out.items() if isinstance(v, dict) and "unit_macro_f1" in v}
    out["signals_alone"] = signals_alone(exs, policy)
    return out


DERIVE_WEIGHTS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
DERIVE_DISCHARGE_COSTS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0)
DERIVE_MASS = (0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)
ACUITY_CONFIDENCES = ("top", "not_under")
# flag_urgent_risk_at_least: the derivation never switches the flag off (no None in the grid)
DERIVE_RISK = (0.1, 0.15, 0.2, 0.25, 0.3)
# The discharge cost is taken at least this many times the lowest that sends no true ESI 1-2 home on validation: the
# lowest is where the last validation case stops being sent home, with no margin for notes written otherwise (at 2,
# the lowest for wf-triage-2630542637d9, a generated test note with a non-blanching rash, floppy and cold, went home).
DISCHARGE_SAFETY_FACTOR = 2.0


def derive_on_validation(systems: dict[str, dict[str, np.ndarray]], exs: Sequence[Example], labels: LabelSet,
                         policy: TriagePolicy, *, target_accuracy: float = 0.9, target_under_triage: float = 0.05,
                         need_threshold: float = 0.5) -> dict:
    """The decoding values the validation split calls for, by the rules `triage_policy.yaml` documents (never
    the hand-written notes), one after the other; a value must meet its rule for every model in `systems`
    (e.g. the fp32 and the int8 export of one model, calibrated probabilities on `exs`):
    1. under-triage weight: the lowest of `DERIVE_WEIGHTS` whose ESI 1-2 under-triage is at most the target;
    2. `discharge_urgent_cost`: the lowest of `DERIVE_DISCHARGE_COSTS` sending no true ESI 1-2 home
       (`discharge_urgent_cost_lowest`), times `DISCHARGE_SAFETY_FACTOR` (the lowest grid value at or above it);
    3. `flag_urgent_mass_at_least`: the largest of `DERIVE_MASS` leaving no under-triaged ESI 1-2 unflagged;
       then `acuity_confidence`: of `top` and `not_under`, those leaving the fewest under-triaged ESI 1-2
       unflagged (the most over the models), and of those the one flagging fewest (the policy's own on a tie);
       then `flag_urgent_risk_at_least` of `DERIVE_RISK` by the same rule (the largest among equals);
    4. `uncertainty_threshold` (per model): the lowest threshold whose unflagged served predictions meet the
       target unit accuracy and leave no under-triaged ESI 1-2 unflagged (steps 1-3 are measured at 0.6).
    A step no value meets gives None and keeps the policy's own value for the next steps."""
    d = policy.decoding
    out: dict = {"n": len(exs), "models": list(systems), "target_under_triage": target_under_triage,
                 "target_unit_accuracy": target_accuracy}

    def metrics(probs: dict[str, np.ndarray], pol: TriagePolicy, threshold: float = 0.6) -> dict:
        return system_metrics(probs, exs, labels, pol, threshold=threshold, decoded=True,
                              target_accuracy=target_accuracy, need_threshold=need_threshold, list_misses=False)

    def every(pol: TriagePolicy, ok) -> bool:
        return all(ok(metrics(pr, pol)) for pr in systems.values())

    def with_(pol: TriagePolicy, **kw) -> TriagePolicy:
        return pol.model_copy(update={"decoding": pol.decoding.model_copy(update=kw)})

    pol = policy
    w = next((w for w in DERIVE_WEIGHTS if every(with_under_triage_weight(pol, labels, w),
                                                 lambda m: m["under_triage_esi_1_2"] <= target_under_triage)), None)
    out["under_triage_weight"] = w
    if w is not None:
        pol = with_under_triage_weight(pol, labels, w)
    c = next((c for c in DERIVE_DISCHARGE_COSTS
              if every(with_(pol, discharge_urgent_cost=c), lambda m: m["esi_1_2_sent_home"] == 0)), None)
    out["discharge_urgent_cost_lowest"] = c
    if c is not None:
        c = next((x for x in DERIVE_DISCHARGE_COSTS if x >= DISCHARGE_SAFETY_FACTOR * c), DERIVE_DISCHARGE_COSTS[-1])
    out["discharge_urgent_cost"] = c
    out["discharge_safety_factor"] = DISCHARGE_SAFETY_FACTOR
    if c is not None:
        pol = with_(pol, discharge_urgent_cost=c)
    ok = [x for x in DERIVE_MASS
          if every(with_(pol, flag_urgent_mass_at_least=x), lambda m: m["under_triaged_not_flagged"] == 0)]
    out["flag_urgent_mass_at_least"] = max(ok) if ok else None
    if ok:
        pol = with_(pol, flag_urgent_mass_at_least=max(ok))
    def fewest_unflagged_then_fewest_flags(field: str, options: Sequence[Any], larger_first: bool = False):
        """The value of `field` leaving the fewest under-triaged ESI 1-2 unflagged (the most over the models),
        and of those the one flagging fewest; on a tie the policy's own, then (`larger_first`) the largest."""
        figures = {}
        for o in options:
            ms = [metrics(pr, with_(pol, **{field: o})) for pr in systems.values()]
            figures[o] = {"under_triaged_not_flagged": max(m["under_triaged_not_flagged"] for m in ms),
                          "flagged_rate": max(m["flagged_rate"] for m in ms)}
        fewest = min(f["under_triaged_not_flagged"] for f in figures.values())
        best = min((o for o, f in figures.items() if f["under_triaged_not_flagged"] == fewest),
                   key=lambda o: (figures[o]["flagged_rate"], o != getattr(d, field), -o if larger_first else 0))
        return best, figures

    conf, conf_figures = fewest_unflagged_then_fewest_flags("acuity_confidence", ACUITY_CONFIDENCES)
    out["acuity_confidence"], out["acuity_confidence_figures"] = conf, conf_figures
    pol = with_(pol, acuity_confidence=conf)
    risk, risk_figures = fewest_unflagged_then_fewest_flags("flag_urgent_risk_at_least", DERIVE_RISK, larger_first=True)
    out["flag_urgent_risk_at_least"] = risk
    out["flag_urgent_risk_figures"] = {str(r): f for r, f in risk_figures.items()}
    pol = with_(pol, flag_urgent_risk_at_least=risk)
    out["uncertainty_threshold"], out["resulting"] = {}, {}
    for name, pr in systems.items():
        t = next((float(x) for x in CURVE_THRESHOLDS
                  if (m := metrics(pr, pol, float(x)))["under_triaged_not_flagged"] == 0
                  and m["unit_accuracy_not_flagged"] is not None and m["unit_accuracy_not_flagged"] >= target_accuracy),
                 None)
        out["uncertainty_threshold"][name] = t
        final = metrics(pr, pol, t if t is not None else 0.6)
        out["resulting"][name] = {k: final[k] for k in (
            "under_triage_esi_1_2", "under_triaged_not_flagged", "esi_1_2_sent_home", "over_triage_esi_3_5",
            "unit_macro_f1", "flagged_rate", "unit_accuracy_not_flagged")}
    out["policy_now"] = {"discharge_urgent_cost": d.discharge_urgent_cost,
                         "flag_urgent_mass_at_least": d.flag_urgent_mass_at_least,
                         "acuity_confidence": d.acuity_confidence,
                         "flag_urgent_risk_at_least": d.flag_urgent_risk_at_least}
    return out


NEED_THRESHOLD_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def choose_need_threshold(systems: dict[str, dict[str, np.ndarray]], exs: Sequence[Example], labels: LabelSet,
                          policy: TriagePolicy) -> tuple[float, dict[str, float]]:
    """The need threshold with the highest micro-F1 of the served needs (thresholded probabilities plus the needs
    measured signs imply), averaged over `systems` (the fp32 and int8 exports of one model) on labelled rows (the
    validation split); of equal scores, the highest threshold (the fewest needs asserted). Returns it and the
    score of every grid value."""
    if not labels.needs or not exs:
        return 0.5, {}
    scores = {}
    for t in NEED_THRESHOLD_GRID:
        f1 = [system_metrics(p, exs, labels, policy, threshold=0.5, decoded=True, need_threshold=t,
                             list_misses=False)["needs_micro_f1"] or 0.0 for p in systems.values()]
        scores[f"{t:g}"] = float(np.mean(f1))
    best = max(scores.values())
    return max(t for t in NEED_THRESHOLD_GRID if scores[f"{t:g}"] == best), scores
