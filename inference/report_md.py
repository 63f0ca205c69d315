"""Markdown rendering of an evaluation report (the JSON holds everything; this is for people)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference.labels import LabelSet


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * float(x):.1f}%"


def _f(x) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def _ci(x) -> str:
    return "n/a" if x is None else f"{100 * float(x[0]):.1f}-{100 * float(x[1]):.1f}%"


def _summary_table(rows: list[tuple[str, dict]]) -> list[str]:
    keys = [("unit_macro_f1", "unit macro-F1", _f), ("acuity_macro_f1", "acuity macro-F1", _f),
            ("needs_macro_f1", "needs macro-F1", _f), ("acuity_exact", "acuity exact", _pct),
            ("acuity_within_one", "acuity within one", _pct),
            ("under_triage_esi_1_2", "under-triage (true ESI 1-2)", _pct),
            ("unit_ece_before", "unit ECE before", _f), ("unit_ece_after", "unit ECE after", _f),
            ("acuity_ece_before", "acuity ECE before", _f), ("acuity_ece_after", "acuity ECE after", _f),
            ("needs_ece_before", "needs ECE before", _f), ("needs_ece_after", "needs ECE after", _f)]
    out = ["| metric | " + " | ".join(name for name, _ in rows) + " |",
           "| --- | " + " | ".join("---" for _ in rows) + " |"]
    for k, title, fmt in keys:
        if all(k not in r for _, r in rows):
            continue
        out.append(f"| {title} | " + " | ".join(fmt(r.get(k)) for _, r in rows) + " |")
    return out


def _class_table(report: dict, names: list[str]) -> list[str]:
    out = ["| label | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for n in names:
        r = report.get(n)
        if r:
            out.append(f"| {n} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} | {int(r['support'])} |")
    return out


_SERVED_ROWS: list[tuple[str, str, Callable[[Any], str]]] = [("unit_macro_f1", "unit macro-F1", _f), ("unit_accuracy", "unit accuracy", _pct),
                ("acuity_exact", "acuity exact", _pct), ("acuity_within_one", "acuity within one", _pct),
                ("under_triage_esi_1_2", "under-triage of true ESI 1-2", _pct),
                ("under_triaged", "under-triaged ESI 1-2 (patients)", str),
                ("under_triaged_not_flagged", "of those, not flagged (silent misses)", str),
                ("esi_1_2_sent_home", "true ESI 1-2 predicted DISCHARGE", str),
                ("under_triage_ci95", "under-triage, 95% interval", _ci),
                ("over_triage_esi_3_5", "over-triage of true ESI 3-5", _pct),
                ("over_triage_ci95", "over-triage, 95% interval", _ci),
                ("needs_micro_f1", "needs micro-F1", _f), ("unit_ece", "unit ECE (calibrated)", _f),
                ("unit_ece_if_calibrated_median", "unit ECE a perfectly calibrated head shows here (median)", _f),
                ("unit_ece_if_calibrated_p95", "... its 95th percentile", _f),
                ("acuity_ece", "acuity ECE (calibrated)", _f), ("flagged_rate", "flagged uncertain", _pct),
                ("flagged_ci95", "flagged, 95% interval", _ci),
                ("unit_accuracy_not_flagged", "unit accuracy when not flagged", _pct),
                ("raised_by_safety", "acuity raised by the safety floor", str),
                ("inconsistent_predictions", "DISCHARGE at ESI 1-2 or ICU at ESI 3-5 (predicted)", str),
                ("threshold_meeting_target", "lowest threshold meeting the target", _f),
                ("coverage_at_that_threshold", "coverage at that threshold", _pct)]
_NAMES = {"model": "model argmax", "model_decoded": "model served", "baseline": "TF-IDF argmax",
          "baseline_decoded": "TF-IDF served"}


def served_section(title: str, comp: dict) -> list[str]:
    """Argmax vs served (decoding + safety floor), model and baseline side by side; the curve; the misses."""
    summ = comp["summary"]
    names = [k for k in ("model", "model_decoded", "baseline", "baseline_decoded") if k in summ]
    lines = [f"## {title} ({comp['n']} cases)", "",
             "*argmax*: the head's most likely label; *served*: what the worker acts on (joint cost-sensitive "
             "decoding and the ESI safety floor, `inference/triage_policy.yaml`).", "",
             "| metric | " + " | ".join(_NAMES.get(n, n) for n in names) + " |",
             "| --- | " + " | ".join("---" for _ in names) + " |"]
    for key, label, fmt in _SERVED_ROWS:
        lines.append(f"| {label} | " + " | ".join("n/a" if summ[n].get(key) is None else fmt(summ[n][key])
                                                 for n in names) + " |")
    any_sys = comp[names[0]]
    lines += ["", f"Target: unit accuracy of {_pct(any_sys['target_unit_accuracy'])} on the cases not flagged.", ""]
    if "signals_alone" in comp:
        sa = comp["signals_alone"]
        lines += [f"Measured signs alone (no model): {sa['notes_with_measured_signs']} of {sa['n']} notes state at "
                  f"least one; they floor {sa['esi_1_2_floored_to_their_level']} of {sa['n_true_esi_1_2']} true ESI "
                  f"1-2 at their level and give {sa['esi_3_5_given_a_more_urgent_floor']} of {sa['n_true_esi_3_5']} "
                  f"true ESI 3-5 a more urgent floor.", ""]
    for n in names:
        if not n.endswith("_decoded"):
            continue
        m = comp[n]
        lines += [f"### Coverage vs unit accuracy, {_NAMES.get(n, n)}", "",
                  "| threshold | coverage (not flagged) | unit accuracy |", "| --- | --- | --- |"]
        for c in m["coverage_accuracy"]:
            lines.append(f"| {c['threshold']:.2f} | {_pct(c['coverage'])} | {_pct(c['unit_accuracy'])} |")
        fb = m.get("flagged_by")
        if fb:
            lines += ["", f"Flagged: {_pct(m['flagged_rate'])} of the cases: {_pct(fb['safety_raise'])} raised by the "
                          f"safety floor, {_pct(fb['urgency'])} by an urgency flag, {_pct(fb['threshold'])} by the "
                          f"confidence threshold ({m['threshold']:g}) alone."]
        curve = m.get("under_triage_weight_curve")
        if curve:
            lines += ["", f"### Under-triage weight of the cost matrix, {_NAMES.get(n, n)}", "",
                      "| weight | under-triage ESI 1-2 | not flagged | sent home | over-triage ESI 3-5 | unit macro-F1 "
                      "| flagged |", "| --- | --- | --- | --- | --- | --- | --- |"]
            for r in curve:
                lines.append(f"| {r['weight']:g} | {_pct(r['under_triage_esi_1_2'])} ({r['under_triaged']}) | "
                             f"{r['under_triaged_not_flagged']} | {r['esi_1_2_sent_home']} | "
                             f"{_pct(r['over_triage_esi_3_5'])} | {_f(r['unit_macro_f1'])} | {_pct(r['flagged_rate'])} |")
        cases = m.get("under_triage_cases", [])
        lines += ["", f"### Under-triaged true ESI 1-2, {_NAMES.get(n, n)}: {len(cases)}", ""]
        if cases:
            lines += ["| id | truth | served | flagged | acuity probabilities | top units | reasons |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for c in cases:
                ap = ", ".join(f"{k}: {v:.2f}" for k, v in c["acuity_probs"].items())
                tu = ", ".join(f"{k} {v:.2f}" for k, v in c["unit_probs_top3"].items())
                rs = " ".join(r["text"] for r in c["reasons"]) or "-"
                lines.append(f"| {c['id']} | {c['true_unit']} ESI {c['true_acuity']} | {c['predicted_unit']} ESI "
                             f"{c['predicted_acuity']} | {'yes' if c['flagged_uncertain'] else '**no**'} | {ap} | {tu} "
                             f"| {rs} |")
        lines.append("")
    return lines


def held_out_line(rep: dict) -> str:
    """What the test split holds out of training, from the report (not from what a build meant to do)."""
    unseen, read = rep.get("n_test_unseen_presentations", 0), rep.get("n_test_read_presentations", 0)
    if unseen:
        return (f"{unseen} from presentations never read in training, the rest with phrasing templates never "
                "read in training")
    if read and read == rep["n_test"]:
        return ("every test presentation was read in training, with other phrasing templates: these figures measure "
                "unseen phrasings only; unseen presentations are measured on the hand-written notes, on validation, "
                "and by an evaluation build, `wardflow build-model --hold-out-test-presentations`")
    return "the data's own test split"


def render_markdown(rep: dict, labels: LabelSet) -> str:
    lines = ["# Triage model evaluation", "",
             f"Model `{rep['model_version']}` ({rep['precision']}), data fingerprint `{rep['data_fingerprint']}`, "
             f"{rep['n_test']} test cases ({held_out_line(rep)}).", "",
             "## Summary (test split)", ""]
    rows = [("transformer", rep["summary"]["model"])]
    if "baseline" in rep["summary"]:
        rows.append(("TF-IDF + LR baseline", rep["summary"]["baseline"]))
    lines += _summary_table(rows)
    if "model_unseen_presentations" in rep:
        lines += ["", f"### Presentations never seen in training ({rep['n_test_unseen_presentations']} cases)", ""]
        rows = [("transformer", rep["model_unseen_presentations"])]
        if "baseline_unseen_presentations" in rep:
            rows.append(("TF-IDF + LR baseline", rep["baseline_unseen_presentations"]))
        lines += _summary_table(rows)
    for sysname, key in (("Transformer", "model"), ("Baseline (TF-IDF + logistic regression)", "baseline")):
        m = rep.get(key)
        if not m:
            continue
        lines += ["", f"## {sysname}", ""]
        u = m["unit"]
        a = m["acuity"]
        lines += [f"### Target unit: macro-F1 {_f(u['macro_f1'])}, accuracy {_pct(u['accuracy'])}, "
                  f"ECE {_f(u['ece_before'])} -> {_f(u['ece_after'])} (T = {u['temperature']:.2f})", ""]
        lines += _class_table(u["report"], list(labels.units))
        lines += ["", f"![unit confusion](figures/{u.get('confusion_png', '')}) "
                      f"![unit reliability](figures/{u.get('reliability_png', '')})", ""]
        lines += [f"### Acuity (ESI): macro-F1 {_f(a['macro_f1'])}, exact {_pct(a['exact'])}, within one level "
                  f"{_pct(a['within_one'])}, under-triage of true ESI 1-2 {_pct(a['under_triage_rate_esi_1_2'])} "
                  f"(n = {a['n_true_esi_1_2']}), ECE {_f(a['ece_before'])} -> {_f(a['ece_after'])} "
                  f"(T = {a['temperature']:.2f})", ""]
        lines += _class_table(a["report"], [str(x) for x in labels.acuities])
        lines += ["", f"![acuity confusion](figures/{a.get('confusion_png', '')}) "
                      f"![acuity reliability](figures/{a.get('reliability_png', '')})", ""]
        if "needs" in m:
            n = m["needs"]
            lines += [f"### Needs: macro-F1 {_f(n['macro_f1'])}, micro-F1 {_f(n['micro_f1'])}, exact set "
                      f"{_pct(n['exact_set_match'])}, ECE {_f(n['ece_before'])} -> {_f(n['ece_after'])} "
                      f"(T = {n['temperature']:.2f})", ""]
            lines += _class_table(n["report"], list(labels.needs))
            lines += ["", f"![needs confusion](figures/{n.get('confusion_png', '')}) "
                          f"![needs reliability](figures/{n.get('reliability_png', '')})", ""]
        unc = m["uncertainty"]
        lines += [f"Uncertainty flag (calibrated unit or acuity confidence < {unc['threshold']}): "
                  f"{_pct(unc['flagged_rate'])} of cases flagged; joint unit+acuity accuracy "
                  f"{_pct(unc['joint_accuracy_confident'])} when confident, {_pct(unc['joint_accuracy_flagged'])} "
                  f"when flagged.", ""]
    if "handwritten" in rep:
        lines += served_section(f"Hand-written notes, never trained on (`{rep['handwritten'].get('source', '')}`)",
                                rep["handwritten"])
    if "served_test" in rep:
        lines += served_section("Served predictions on the generated test split", rep["served_test"])
    dv = rep.get("derived_on_validation")
    if dv:
        lines += derived_section(dv)
    return "\n".join(lines) + "\n"


def derived_section(dv: dict) -> list[str]:
    """The decoding values the validation split calls for (`evaluate_decoded.derive_on_validation`)."""
    def v(x) -> str:
        return "n/a" if x is None else f"{x:g}"

    lines = [f"## Decoding values derived on the validation split ({dv['n']} cases)", "",
             "By the rules in `inference/triage_policy.yaml`, in this order (n/a: no value of the grid meets it):", "",
             f"* under-triage weight, the lowest with ESI 1-2 under-triage <= {_pct(dv['target_under_triage'])}: "
             f"{v(dv['under_triage_weight'])};",
             f"* `discharge_urgent_cost`, {v(dv['discharge_safety_factor'])} times the lowest sending no true "
             f"ESI 1-2 home ({v(dv['discharge_urgent_cost_lowest'])}): "
             f"{v(dv['discharge_urgent_cost'])} (policy now {v(dv['policy_now']['discharge_urgent_cost'])});",
             f"* `flag_urgent_mass_at_least`, the largest leaving no under-triaged ESI 1-2 unflagged: "
             f"{v(dv['flag_urgent_mass_at_least'])} (policy now {v(dv['policy_now']['flag_urgent_mass_at_least'])});",
             "* `acuity_confidence`, the fewest under-triaged ESI 1-2 unflagged, then the fewest flags: "
             f"{dv.get('acuity_confidence', 'n/a')} (policy now {dv['policy_now'].get('acuity_confidence', 'n/a')}; "
             + ", ".join(f"{c}: {f['under_triaged_not_flagged']} unflagged, {_pct(f['flagged_rate'])} flagged"
                         for c, f in dv.get("acuity_confidence_figures", {}).items()) + ");",
             "* `flag_urgent_risk_at_least`, by the same rule: "
             f"{v(dv.get('flag_urgent_risk_at_least'))} (policy now "
             f"{v(dv['policy_now'].get('flag_urgent_risk_at_least'))}; "
             + ", ".join(f"{r}: {f['under_triaged_not_flagged']} unflagged, {_pct(f['flagged_rate'])} flagged"
                         for r, f in dv.get("flag_urgent_risk_figures", {}).items()) + ");",
             "* `uncertainty_threshold`, the lowest with unit accuracy >= "
             f"{_pct(dv['target_unit_accuracy'])} when not flagged and no under-triage unflagged: "
             + ", ".join(f"{n} {v(t)}" for n, t in dv["uncertainty_threshold"].items()) + ".", ""]
    for n, r in dv["resulting"].items():
        lines.append(f"With them, {n} on validation: under-triage {_pct(r['under_triage_esi_1_2'])} "
                     f"({r['under_triaged_not_flagged']} not flagged), {r['esi_1_2_sent_home']} sent home, over-triage "
                     f"{_pct(r['over_triage_esi_3_5'])}, unit macro-F1 {_f(r['unit_macro_f1'])}, flagged "
                     f"{_pct(r['flagged_rate'])} (unit accuracy {_pct(r['unit_accuracy_not_flagged'])} when not).")
    lines += ["", "Derive the values for the model you serve, with every precision you serve it in (the fp32 "
                  "and int8 exports together: `inference.evaluate_decoded.derive_on_validation`).", ""]
    return lines
