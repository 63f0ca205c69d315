"""`wardflow evaluate`: the model and the TF-IDF baseline on the test split, JSON + Markdown.

Per head: classification report, macro-F1, confusion matrix (PNG), reliability diagram (PNG),
expected calibration error before and after temperature scaling. Acuity: exact and within-one
accuracy and the under-triage rate for true ESI 1-2 (the error that harms patients). The test
split holds out whole presentations and phrasing templates; a separate line reports the cases
whose presentation never appeared in training.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.calibration import ece_multilabel, ece_softmax
from inference.config import TriageConfig, load_config
from inference.data import Example, by_split
from inference.encoding import sigmoid, softmax
from inference.labels import LabelSet

log = logging.getLogger(__name__)


def model_logits(model_dir: Path, exs: Sequence[Example], threads: int = 2,
                 progress: bool = True) -> tuple[dict[str, np.ndarray], TriageConfig]:
    """Logits from a PyTorch model directory (model.safetensors) or an exported one (model.onnx)."""
    model_dir = Path(model_dir)
    cfg = load_config(model_dir)
    if cfg.onnx_file and (model_dir / cfg.onnx_file).exists():
        from inference.serving import OnnxTriageModel

        m = OnnxTriageModel.load(model_dir, threads=threads, providers=["CPUExecutionProvider"])
        return m.logits([e.text for e in exs], [e.age for e in exs], [e.sex for e in exs]), cfg
    import torch

    from inference.model import load_model
    from inference.textenc import load_tokenizer, pad_id_of
    from inference.train import predict_logits, tensorize

    torch.set_num_threads(max(1, threads))
    net, cfg = load_model(model_dir)
    tok = load_tokenizer(model_dir / "tokenizer.json", cfg.max_length)
    t = tensorize(exs, tok, cfg.labels)
    return predict_logits(net, t, pad_id_of(tok), 64, progress=progress, desc="evaluate"), cfg


def _truth(exs: Sequence[Example], labels: LabelSet):
    yu = np.array([labels.units.index(e.unit) for e in exs], dtype=np.int64)
    ya = np.array([labels.acuity_index(e.acuity) for e in exs], dtype=np.int64)
    yn = np.array([[int(n in e.needs) for n in labels.needs] for e in exs], dtype=np.int64).reshape(len(exs), -1)
    return yu, ya, yn


def head_metrics(logits: dict[str, np.ndarray], temps: dict[str, float], exs: Sequence[Example], labels: LabelSet,
                 fig_dir: Path | None, tag: str, threshold: float = 0.6) -> dict:
    """All metrics for one system's logits; figures under `fig_dir` named `<tag>_<head>_*.png`."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score, multilabel_confusion_matrix

    from inference import plots

    yu, ya, yn = _truth(exs, labels)
    out: dict = {"n": len(exs)}
    probs = {}
    for head, y, names in (("unit", yu, list(labels.units)), ("acuity", ya, [str(a) for a in labels.acuities])):
        raw, cal = softmax(logits[head], 1.0), softmax(logits[head], temps[head])
        pred = cal.argmax(1)
        probs[head] = cal
        ids = list(range(len(names)))
        rel_b, rel_a = ece_softmax(raw, y), ece_softmax(cal, y)
        h = {"macro_f1": float(f1_score(y, pred, labels=ids, average="macro", zero_division=0)),
             "accuracy": float((pred == y).mean()) if len(y) else 0.0,
             "ece_before": rel_b["ece"], "ece_after": rel_a["ece"], "temperature": temps[head],
             "report": classification_report(y, pred, labels=ids, target_names=names, output_dict=True,
                                             zero_division=0),
             "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist()}
        if fig_dir is not None:
            h["confusion_png"] = plots.confusion_png(np.array(h["confusion_matrix"]), names, f"{tag}: {head}",
                                                     fig_dir / f"{tag}_{head}_confusion.png").name
            h["reliability_png"] = plots.reliability_png(rel_b, rel_a, f"{tag}: {head} (top-label)",
                                                         fig_dir / f"{tag}_{head}_reliability.png").name
        out[head] = h
    lv = np.array(labels.acuities)
    true_lv, pred_lv = lv[ya], lv[probs["acuity"].argmax(1)]
    urgent = true_lv <= 2
    out["acuity"].update({
        "exact": float((true_lv == pred_lv).mean()) if len(ya) else 0.0,
        "within_one": float((np.abs(true_lv - pred_lv) <= 1).mean()) if len(ya) else 0.0,
        "under_triage_rate_esi_1_2": float((pred_lv[urgent] > true_lv[urgent]).mean()) if urgent.any() else 0.0,
        "n_true_esi_1_2": int(urgent.sum())})
    if labels.needs:
        raw, cal = sigmoid(logits["needs"], 1.0), sigmoid(logits["needs"], temps["needs"])
        pred = (cal >= 0.5).astype(int)
        rel_b, rel_a = ece_multilabel(raw, yn), ece_multilabel(cal, yn)
        h = {"macro_f1": float(f1_score(yn, pred, average="macro", zero_division=0)),
             "micro_f1": float(f1_score(yn, pred, average="micro", zero_division=0)),
             "exact_set_match": float((pred == yn).all(axis=1).mean()) if len(yn) else 0.0,
             "ece_before": rel_b["ece"], "ece_after": rel_a["ece"], "temperature": temps["needs"],
             "report": classification_report(yn, pred, target_names=list(labels.needs), output_dict=True,
                                             zero_division=0),
             "confusion_matrices": multilabel_confusion_matrix(yn, pred).tolist()}
        if fig_dir is not None:
            h["confusion_png"] = plots.multilabel_confusion_png(np.array(h["confusion_matrices"]), labels.needs,
                                                                f"{tag}: needs", fig_dir / f"{tag}_needs_confusion.png").name
            h["reliability_png"] = plots.reliability_png(rel_b, rel_a, f"{tag}: needs (every label)",
                                                         fig_dir / f"{tag}_needs_reliability.png").name
        out["needs"] = h
    conf = np.minimum(probs["unit"].max(1), probs["acuity"].max(1))
    unc = conf < threshold
    correct = (probs["unit"].argmax(1) == yu) & (probs["acuity"].argmax(1) == ya)
    out["uncertainty"] = {"threshold": threshold, "flagged_rate": float(unc.mean()) if len(unc) else 0.0,
                          "joint_accuracy_confident": float(correct[~unc].mean()) if (~unc).any() else None,
                          "joint_accuracy_flagged": float(correct[unc].mean()) if unc.any() else None}
    return out


def summary_line(m: dict) -> dict:
    s = {"unit_macro_f1": m["unit"]["macro_f1"], "acuity_macro_f1": m["acuity"]["macro_f1"],
         "acuity_exact": m["acuity"]["exact"], "acuity_within_one": m["acuity"]["within_one"],
         "under_triage_esi_1_2": m["acuity"]["under_triage_rate_esi_1_2"],
         "unit_ece_before": m["unit"]["ece_before"], "unit_ece_after": m["unit"]["ece_after"],
         "acuity_ece_before": m["acuity"]["ece_before"], "acuity_ece_after": m["acuity"]["ece_after"]}
    if "needs" in m:
        s.update(needs_macro_f1=m["needs"]["macro_f1"], needs_ece_before=m["needs"]["ece_before"],
                 needs_ece_after=m["needs"]["ece_after"])
    return s


def _calibrated(logits: dict[str, np.ndarray], temps: dict[str, float]) -> dict[str, np.ndarray]:
    return {"unit": softmax(logits["unit"], temps["unit"]), "acuity": softmax(logits["acuity"], temps["acuity"]),
            "needs": sigmoid(logits["needs"], temps["needs"])}


_UNIT_TEMPS = {"unit": 1.0, "acuity": 1.0, "needs": 1.0}


def _as_logits(probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Probabilities back as logits (temperature 1 reproduces them): how a blended system is scored."""
    n = np.clip(probs["needs"], 1e-12, 1 - 1e-12)
    return {"unit": np.log(np.clip(probs["unit"], 1e-12, None)), "acuity": np.log(np.clip(probs["acuity"], 1e-12, None)),
            "needs": np.log(n) - np.log1p(-n)}


class _Served:
    """The served system of an exported model directory: the encoder's calibrated probabilities, blended
    with its lexical reader when it has one (`inference.lexical`)."""

    def __init__(self, model_dir: Path, cfg: TriageConfig) -> None:
        from inference.lexical import LexicalModel

        self.lexical = LexicalModel.load(model_dir) if cfg.lexical_file else None

    def probs(self, encoder: dict[str, np.ndarray], exs: Sequence[Example]) -> dict[str, np.ndarray]:
        from inference.lexical import blend

        if self.lexical is None:
            return encoder
        lexical = self.lexical.probs([e.text for e in exs], [e.age for e in exs], [e.sex for e in exs])
        return blend(encoder, lexical, self.lexical.head_weights)


def evaluate(model_dir: Path, examples: Sequence[Example], out_dir: Path, *, threads: int = 2,
             threshold: float = 0.6, baseline: bool = True, progress: bool = True,
             handwritten: Sequence[Example] | None = None, handwritten_name: str = "",
             policy_path: Path | None = None, target_accuracy: float = 0.9, fitted_baseline=None) -> dict:
    """Evaluate on the test split of `examples` (train / validation splits feed the baseline), and on
    `handwritten` notes apart (never trained on): the argmax and the served prediction (decoding + safety).
    `fitted_baseline`: a `TfidfBaseline` already fitted on these examples' training split (the build's, from
    the lexical reader's fit), used instead of fitting one here."""
    from inference.decoding import check_policy
    from inference.evaluate_decoded import compare
    from inference.policy import load_policy

    t0 = time.monotonic()
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    splits = by_split(examples)
    test = splits["test"]
    if not test:
        from inference.exceptions import TrainingDataError

        raise TrainingDataError("no test rows to evaluate on (split 'test')")
    logits, cfg = model_logits(model_dir, test, threads, progress)
    labels = cfg.labels
    policy = load_policy(policy_path)
    check_policy(policy, labels)
    served = _Served(model_dir, cfg)
    encoder = _calibrated(logits, cfg.temperatures)
    if served.lexical is not None:  # "model" is what is served: the blend; "encoder" the encoder alone
        model_probs = served.probs(encoder, test)
        logits, temps = _as_logits(model_probs), _UNIT_TEMPS
    else:
        model_probs, temps = encoder, cfg.temperatures
    report: dict = {"model_dir": str(model_dir), "model_version": cfg.model_version,
                    "data_fingerprint": cfg.data_fingerprint, "precision": cfg.precision, "n_test": len(test),
                    "lexical_weight": served.lexical.weight if served.lexical is not None else None,
                    "lexical_acuity_weight": served.lexical.acuity_weight if served.lexical is not None else None,
                    "model": head_metrics(logits, temps, test, labels, fig_dir, "model", threshold)}
    train_groups = {e.group for e in splits["train"] if e.group}
    unseen = [i for i, e in enumerate(test) if e.group and e.group not in train_groups]
    report["n_test_read_presentations"] = sum(bool(e.group) and e.group in train_groups for e in test)
    if unseen and train_groups:
        sub = [test[i] for i in unseen]
        report["model_unseen_presentations"] = summary_line(head_metrics(
            {k: v[unseen] for k, v in logits.items()}, temps, sub, labels, None, "model", threshold))
        report["n_test_unseen_presentations"] = len(unseen)
    if baseline and splits["train"]:
        from inference.baseline import TfidfBaseline

        b = (fitted_baseline if fitted_baseline is not None
             else TfidfBaseline(labels).fit(splits["train"], splits["validation"], threads=threads))
        bl = b.logits(test)
        report["baseline"] = head_metrics(bl, b.temperatures, test, labels, fig_dir, "baseline", threshold)
        if unseen and train_groups:
            report["baseline_unseen_presentations"] = summary_line(head_metrics(
                {k: v[unseen] for k, v in bl.items()}, b.temperatures, [test[i] for i in unseen], labels, None,
                "baseline", threshold))
    report["summary"] = {"model": summary_line(report["model"])}
    if "baseline" in report:
        report["summary"]["baseline"] = summary_line(report["baseline"])
    systems = {"model": model_probs}
    if served.lexical is not None:
        systems["encoder"] = encoder
    if "baseline" in report:
        systems["baseline"] = _calibrated(bl, b.temperatures)
    report["served_test"] = compare(systems, test, labels, policy, threshold=threshold,
                                    target_accuracy=target_accuracy, need_threshold=cfg.need_threshold)
    if splits["validation"]:  # the decoding values this model's validation split calls for (docs/inference.md)
        from inference.evaluate_decoded import derive_on_validation

        v_logits, _ = model_logits(model_dir, splits["validation"], threads, progress)
        report["derived_on_validation"] = derive_on_validation(
            {"model": served.probs(_calibrated(v_logits, cfg.temperatures), splits["validation"])},
            splits["validation"], labels, policy,
            target_accuracy=target_accuracy, need_threshold=cfg.need_threshold)
    if handwritten:
        hw_logits, _ = model_logits(model_dir, handwritten, threads, progress)
        hw_encoder = _calibrated(hw_logits, cfg.temperatures)
        hw_systems = {"model": served.probs(hw_encoder, handwritten)}
        if served.lexical is not None:
            hw_systems["encoder"] = hw_encoder
        if "baseline" in report:
            hw_systems["baseline"] = _calibrated(b.logits(handwritten), b.temperatures)
        report["handwritten"] = compare(hw_systems, handwritten, labels, policy, threshold=threshold,
                                        target_accuracy=target_accuracy, need_threshold=cfg.need_threshold)
        report["handwritten"]["source"] = handwritten_name
    report["seconds"] = round(time.monotonic() - t0, 1)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    from inference.report_md import render_markdown

    (out_dir / "report.md").write_text(render_markdown(report, labels))
    log.info("evaluation written to %s", out_dir)
    return report
