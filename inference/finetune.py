"""`wardflow train --feedback FILE`: fine-tune a trained model on the hospital's feedback records.

Starts from a trained PyTorch model directory (`--from-model`, what `wardflow train` writes, with
its `data/` splits) and fine-tunes every head on a mix of

* the feedback records (`inference.feedback`), oversampled so they make up `feedback_share` of
  each epoch (each record at least once per epoch), and
* a replay sample of the parent's own training split (`replay` examples per epoch, drawn afresh
  each epoch), so the model keeps what it knew (no catastrophic forgetting).

A record with an unknown acuity (null) trains the unit and needs heads only: its acuity loss is
masked. No early stopping: the schedule is short and the last weights are kept (the report shows
what changed). Temperatures are refitted on the parent's validation split. Seeded end to end.

The new directory has the layout of a normally trained one (`wardflow export` and `evaluate` work
on it): the parent's data splits, plus `data/feedback.jsonl` (the records it was tuned on or held
out, carried into the next fine-tune so earlier corrections are not lost). `triage_config.json` gets a new
`model_version` and `metrics.fine_tune` (parent version, record counts, file fingerprints).

The evaluation (`feedback_eval.json` / `.md`) compares parent and new model on the parent's test
split and on the feedback records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads crawl on a shared, busy CPU

from inference.config import TriageConfig, load_config, result_settings
from inference.data import SPLITS, Example, load_files
from inference.exceptions import FeedbackDataError, InferenceError, ModelNotFoundError
from inference.feedback import (
    FEEDBACK_DATA_FILE,
    FeedbackItem,
    FeedbackSet,
    items_fingerprint,
    latest_per_encounter,
    load_feedback,
    read_feedback_file,
    write_feedback,
)
from inference.labels import LabelSet

log = logging.getLogger(__name__)

REPORT_JSON = "feedback_eval.json"
REPORT_MD = "feedback_eval.md"
IGNORE = -100        # acuity target of a record whose acuity is unknown


@dataclass
class FineTuneSettings:
    seed: int = 13
    epochs: int = 3
    steps: int = 0                     # > 0: exactly this many optimizer steps (epochs then ignored)
    batch_size: int = 32
    lr_encoder: float = 2e-5           # from scratch: 1e-4; small steps keep what the parent learned
    lr_head: float = 5e-4              # from scratch: 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    feedback_share: float = 0.25       # share of each epoch's examples that are feedback records
    replay: int = 1000                 # replayed examples of the parent's training split per epoch (at least)
    holdout: float = 0.0               # share of the new feedback records kept out of training, to evaluate on
    carry_feedback: bool = True        # also tune on the parent's own data/feedback.jsonl (earlier rounds)
    freeze_layers: int = 3
    time_budget_s: float = 300.0
    threads: int = 2
    eval_batch_size: int = 64
    progress: bool = True

    def key(self) -> dict:
        return result_settings(self)

    def check(self) -> None:
        if not 0 < self.feedback_share <= 1:
            raise InferenceError("--feedback-share must be in (0, 1]")
        if not 0 <= self.holdout < 1:
            raise InferenceError("--feedback-holdout must be in [0, 1)")
        if self.replay < 0 or self.steps < 0 or self.epochs < 1 or self.batch_size < 1:
            raise InferenceError("--replay and --steps must be >= 0, --epochs and --batch-size >= 1")
        if not (self.lr_encoder >= 0 and self.lr_head > 0):
            raise InferenceError("learning rates must be positive")


@dataclass
class Prepared:
    """Everything a fine-tune reads, checked, before any weight moves."""

    parent_dir: Path
    parent: TriageConfig
    feedback: FeedbackSet              # the given files: usable records, issues, file summaries
    train_items: list[FeedbackItem]    # new records trained on
    heldout_items: list[FeedbackItem]  # new records kept out (settings.holdout)
    carried_items: list[FeedbackItem]  # the parent's earlier feedback, trained on again
    pool: list[Example]                # the parent's training split (replay)
    validation: list[Example]
    test: list[Example]
    settings: FineTuneSettings
    model_version: str
    data_fingerprint: str
    result: dict = field(default_factory=dict)

    @property
    def labels(self) -> LabelSet:
        return self.parent.labels

    @property
    def tuned_items(self) -> list[FeedbackItem]:
        return self.carried_items + self.train_items


def _held_out(item: FeedbackItem, seed: int, share: float) -> bool:
    key = item.encounter_id or f"{Path(item.file).name}:{item.line}"
    h = int(hashlib.sha256(f"holdout-{seed}:{key}".encode()).hexdigest()[:8], 16)
    return h / 2 ** 32 < share


def _split_file(parent_dir: Path, split: str, labels: LabelSet, required: bool) -> list[Example]:
    p = parent_dir / "data" / f"{split}.jsonl"
    if not p.exists():
        if required:
            raise ModelNotFoundError(f"{parent_dir}: missing data/{split}.jsonl (written by `wardflow train`; "
                                     f"fine-tuning needs the parent's {split} split)")
        return []
    exs, _ = load_files([p], labels, require_train=False)
    return [e for e in exs if e.split == split]


def prepare(parent_dir: Path, feedback_paths: Sequence[Path], settings: FineTuneSettings) -> Prepared:
    """Load the parent's config and splits and the feedback; compute the new version id."""
    settings.check()
    parent_dir = Path(parent_dir)
    parent = load_config(parent_dir)
    if not (parent_dir / "model.safetensors").exists():
        raise ModelNotFoundError(f"{parent_dir}: missing model.safetensors (--from-model must be a trained "
                                 f"PyTorch directory, not an exported one)")
    labels = parent.labels
    fb = load_feedback([Path(p) for p in feedback_paths], labels)
    carried: list[FeedbackItem] = []
    parent_fb = parent_dir / "data" / FEEDBACK_DATA_FILE
    if settings.carry_feedback and parent_fb.exists():
        try:
            carried, _, _ = read_feedback_file(parent_fb, labels)
        except FeedbackDataError:
            carried = []
    # a new record for an encounter replaces an earlier round's (ties go to the new files)
    merged, _ = latest_per_encounter(carried + fb.items)
    new_ids = {id(it) for it in fb.items}
    carried = [it for it in merged if id(it) not in new_ids]
    fresh = [it for it in merged if id(it) in new_ids]
    heldout = [it for it in fresh if settings.holdout and _held_out(it, settings.seed, settings.holdout)]
    held = {id(it) for it in heldout}
    train_items = [it for it in fresh if id(it) not in held]
    if not train_items:
        raise FeedbackDataError(f"no feedback record left to train on ({len(fresh)} usable, all held out by "
                                f"--feedback-holdout {settings.holdout})")
    need_pool = settings.feedback_share < 1
    pool = _split_file(parent_dir, "train", labels, required=need_pool)
    validation = _split_file(parent_dir, "validation", labels, required=True)
    test = _split_file(parent_dir, "test", labels, required=True)
    if not validation:
        raise ModelNotFoundError(f"{parent_dir}: data/validation.jsonl holds no validation row")
    fb_fp = items_fingerprint(carried + train_items)
    data_fp = hashlib.sha256(f"{parent.data_fingerprint}+{fb_fp}".encode()).hexdigest()[:16]
    h = hashlib.sha256(json.dumps({"parent": parent.model_version, "parent_data": parent.data_fingerprint,
                                   "feedback": fb_fp, "heldout": items_fingerprint(heldout),
                                   "settings": settings.key()}, sort_keys=True).encode())
    version = "wf-triage-" + h.hexdigest()[:12]
    return Prepared(parent_dir, parent, fb, train_items, heldout, carried, pool, validation, test, settings,
                    version, data_fp)


def epoch_plan(n_feedback: int, n_pool: int, settings: FineTuneSettings) -> tuple[int, int]:
    """(replayed examples, feedback slots) per epoch: feedback fills `feedback_share` of the epoch,
    every record at least once; replay is at least `settings.replay` (raised to keep the share when
    there are many records), never more than the pool."""
    s = settings.feedback_share
    if n_pool == 0 or s >= 1:
        return 0, n_feedback
    n_replay = min(n_pool, max(settings.replay, math.ceil(n_feedback * (1 - s) / s)))
    n_slots = max(n_feedback, round(n_replay * s / (1 - s)))
    return n_replay, n_slots


def epoch_indices(rng: random.Random, n_pool: int, n_feedback: int, n_replay: int, n_slots: int) -> list[int]:
    """Indices into [pool..., feedback...] for one epoch: a fresh replay sample, feedback cycled."""
    out = [i for i in rng.sample(range(n_pool), n_replay)] if n_replay else []
    fb: list[int] = []
    while len(fb) < n_slots:
        perm = list(range(n_feedback))
        rng.shuffle(perm)
        fb += perm
    return out + [n_pool + i for i in fb[:n_slots]]


def length_batches(indices: list[int], lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (shuffle, sort within pools of 50 batches, shuffle batches)."""
    order = list(indices)
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for s in range(0, len(order), pool):
        chunk = sorted(order[s:s + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_loss(u, a, n, yu, ya, yn):
    """Unit CE + acuity CE over the rows whose acuity is known (target `IGNORE` = unknown) + needs BCE."""
    from torch import nn

    loss = nn.functional.cross_entropy(u, yu)
    known = ya != IGNORE
    if bool(known.any()):
        loss = loss + nn.functional.cross_entropy(a[known], ya[known])
    if yn.shape[1]:
        loss = loss + nn.functional.binary_cross_entropy_with_logits(n, yn, reduction="sum") / len(yu)
    return loss


def _tensors(prep: Prepared, tok):
    from inference.train import Tensors, tensorize

    labels = prep.labels
    pool = tensorize(prep.pool, tok, labels) if prep.pool else None
    items = prep.tuned_items
    fb = tensorize([it.example(labels) for it in items], tok, labels)
    fb.acuity = np.where(np.array([it.acuity is None for it in items], dtype=bool), IGNORE, fb.acuity).astype(np.int64)
    if pool is None:
        return fb, 0
    return Tensors(pool.ids + fb.ids, np.concatenate([pool.meta, fb.meta]), np.concatenate([pool.unit, fb.unit]),
                   np.concatenate([pool.acuity, fb.acuity]), np.concatenate([pool.needs, fb.needs]),
                   pool.examples + fb.examples), len(pool.ids)


def fine_tune(prep: Prepared, out_dir: Path) -> TriageConfig:
    """Fine-tune the parent on feedback + replay, refit temperatures, save to `out_dir`."""
    import torch
    from tqdm.auto import tqdm

    from inference.model import load_model, save_model
    from inference.textenc import load_tokenizer, pad_id_of
    from inference.train import _set_seed, fit_temperatures, predict_logits, tensorize, train_step, val_score

    s = prep.settings
    out_dir = Path(out_dir)
    if out_dir.resolve() == prep.parent_dir.resolve():
        raise InferenceError(f"--out {out_dir} is the parent model (--from-model): write the fine-tuned model to a "
                             f"new directory")
    torch.set_num_threads(max(1, s.threads))
    _set_seed(s.seed)
    t0 = time.monotonic()
    labels, parent = prep.labels, prep.parent
    tok_json = prep.parent_dir / "tokenizer.json"
    tok = load_tokenizer(tok_json, parent.train_max_length)
    pad_id = pad_id_of(tok)
    data, n_pool = _tensors(prep, tok)
    n_fb = len(data.ids) - n_pool
    n_replay, n_slots = epoch_plan(n_fb, n_pool, s)
    lengths = [len(x) for x in data.ids]
    log.info("fine-tuning %s on %d feedback records (%d carried, %d masked acuity) + %d replayed per epoch",
             parent.model_version, n_fb, len(prep.carried_items),
             sum(it.acuity is None for it in prep.tuned_items), n_replay)

    net, _ = load_model(prep.parent_dir)
    net.freeze_lower(s.freeze_layers)
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": s.lr_encoder}, {"params": head_params, "lr": s.lr_head}],
                            weight_decay=s.weight_decay)
    rng = random.Random(s.seed)
    per_epoch = math.ceil((n_replay + n_slots) / s.batch_size)
    full_total = s.steps or max(1, per_epoch * s.epochs)
    plan = {"total": full_total}
    warm = max(1, int(full_total * s.warmup))

    def lr_factor(k: int) -> float:
        return min(1.0, (k + 1) / warm) * max(0.02, 1 - max(0, k - warm) / max(1, plan["total"] - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    step, epoch, stop_reason, losses = 0, 0, "schedule_done", []
    bar = tqdm(total=plan["total"], desc="fine-tune", disable=not s.progress, unit="step")
    while step < plan["total"]:
        epoch += 1
        for idx in length_batches(epoch_indices(rng, n_pool, n_fb, n_replay, n_slots), lengths, s.batch_size, rng):
            loss = train_step(net, opt, sched, data, idx, pad_id, batch_loss)
            step += 1
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch)
            elapsed = time.monotonic() - t0
            if step == 8 or (step > 8 and step % 25 == 0):
                # the whole schedule must fit the budget: steps so far at this pace, with a margin
                fit = min(max(step + 1, int(step * s.time_budget_s * 0.9 / max(elapsed, 1e-6))), full_total)
                if fit != plan["total"]:
                    plan["total"] = fit
                    bar.total = fit
            if elapsed > s.time_budget_s:
                stop_reason = "time_budget"
                break
            if step >= plan["total"]:
                break
        if stop_reason == "time_budget":
            break
    bar.close()
    net.eval()
    va = tensorize(prep.validation, tok, labels)
    val_logits = predict_logits(net, va, pad_id, s.eval_batch_size)
    temps = fit_temperatures(val_logits, va)
    seconds = round(time.monotonic() - t0, 1)
    lineage = list(parent.metrics.get("fine_tune", {}).get("lineage", [])) + [parent.model_version]
    fine = {
        "parent_model_version": parent.model_version, "parent_model_dir": str(prep.parent_dir),
        "parent_data_fingerprint": parent.data_fingerprint, "lineage": lineage,
        "feedback_fingerprint": items_fingerprint(prep.tuned_items),
        "n_feedback": len(prep.train_items), "n_feedback_carried": len(prep.carried_items),
        "n_feedback_heldout": len(prep.heldout_items),
        "n_feedback_rejected": sum(f["rejected"] for f in prep.feedback.files),
        "n_feedback_superseded": prep.feedback.superseded,
        "n_acuity_masked": sum(it.acuity is None for it in prep.tuned_items),
        "feedback_files": [{k: f[k] for k in ("path", "sha256", "records", "usable", "rejected")}
                           for f in prep.feedback.files],
        "replay_per_epoch": n_replay, "feedback_per_epoch": n_slots, "replay_pool": n_pool}
    cfg = TriageConfig(labels=labels, temperatures=temps, max_length=parent.max_length,
                       train_max_length=parent.train_max_length, model_version=prep.model_version,
                       data_fingerprint=prep.data_fingerprint, base_model=parent.base_model,
                       need_threshold=parent.need_threshold,
                       metrics={"validation": val_score(val_logits, va), "history": [], "stop_reason": stop_reason,
                                "train_seconds": seconds, "steps": step, "epochs_started": epoch,
                                "final_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
                                "n_train": n_replay + n_slots, "n_validation": len(va.ids),
                                "settings": s.key(), "fine_tune": fine})
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(net, cfg, tok_json, out_dir)
    data_dir = out_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        src = prep.parent_dir / "data" / f"{split}.jsonl"
        if src.exists():
            shutil.copyfile(src, data_dir / f"{split}.jsonl")
    write_feedback(prep.tuned_items + prep.heldout_items, data_dir / FEEDBACK_DATA_FILE)
    prep.result = {"stop_reason": stop_reason, "steps": step, "seconds": seconds}
    log.info("saved %s (%s from %s, %d steps, stop: %s)", out_dir, cfg.model_version, parent.model_version, step,
             stop_reason)
    return cfg


# ---------------------------------------------------------------------------- evaluation

def feedback_metrics(logits: dict[str, np.ndarray], items: Sequence[FeedbackItem], labels: LabelSet) -> dict:
    """How well a model's predictions agree with the feedback labels (argmax; needs at p >= 0.5)."""
    n = len(items)
    out: dict = {"n": n}
    if not n:
        return out
    pu = logits["unit"].argmax(1)
    yu = np.array([labels.units.index(it.unit) for it in items])
    out["unit_accuracy"] = float((pu == yu).mean())
    corr = np.array([it.corrected for it in items], dtype=bool)
    out["n_corrected"] = int(corr.sum())
    out["unit_accuracy_corrected"] = float((pu[corr] == yu[corr]).mean()) if corr.any() else None
    prev = np.array([labels.units.index(it.previous_unit) if it.previous_unit in labels.units else -1
                     for it in items])
    has_prev = corr & (prev >= 0)
    out["predicts_previous_unit_corrected"] = float((pu[has_prev] == prev[has_prev]).mean()) if has_prev.any() else None
    known = np.array([it.acuity is not None for it in items], dtype=bool)
    out["n_acuity_known"] = int(known.sum())
    if known.any():
        ya = np.array([labels.acuity_index(it.acuity) if it.acuity is not None else 0 for it in items])
        out["acuity_accuracy"] = float((logits["acuity"].argmax(1)[known] == ya[known]).mean())
    else:
        out["acuity_accuracy"] = None
    if labels.needs:
        yn = np.array([[n_ in it.needs for n_ in labels.needs] for it in items], dtype=bool)
        pn = logits["needs"] > 0
        tp = float((pn & yn).sum())
        out["needs_exact_set_match"] = float((pn == yn).all(axis=1).mean())
        out["needs_micro_f1"] = 2 * tp / max(float(pn.sum() + yn.sum()), 1.0) if (pn.any() or yn.any()) else 1.0
    return out


def _delta(before: dict, after: dict) -> dict:
    return {k: round(after[k] - before[k], 6) for k, v in before.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n" and not k.startswith("n_")
            and isinstance(after.get(k), (int, float))}


def evaluate_fine_tune(prep: Prepared, model_dir: Path, reports_dir: Path, *, threads: int = 2,
                       progress: bool = True) -> dict:
    """Parent vs fine-tuned model on the parent's test split and on the feedback records; JSON + Markdown."""
    from inference.evaluate import head_metrics, model_logits, summary_line

    t0 = time.monotonic()
    labels = prep.labels
    groups = {"feedback": prep.train_items, "feedback_heldout": prep.heldout_items,
              "earlier_feedback": prep.carried_items}
    exs = list(prep.test) + [it.example(labels) for g in groups.values() for it in g]
    report: dict = {"model_version": "", "model_dir": str(model_dir), "parent_model_version": prep.parent.model_version,
                    "parent_model_dir": str(prep.parent_dir)}
    results = {}
    for who, d in (("before", prep.parent_dir), ("after", Path(model_dir))):
        logits, cfg = model_logits(d, exs, threads, progress)
        if who == "after":
            report["model_version"] = cfg.model_version
        nt = len(prep.test)
        test_logits = {k: v[:nt] for k, v in logits.items()}
        res = {"test": summary_line(head_metrics(test_logits, cfg.temperatures, prep.test, labels, None, who))
               if prep.test else {}}
        start = nt
        for name, items in groups.items():
            part = {k: v[start:start + len(items)] for k, v in logits.items()}
            res[name] = feedback_metrics(part, items, labels)
            start += len(items)
        results[who] = res
    report["heldout_test"] = {"n": len(prep.test), "data": str(prep.parent_dir / "data" / "test.jsonl"),
                              "before": results["before"]["test"], "after": results["after"]["test"],
                              "delta": _delta(results["before"]["test"], results["after"]["test"])}
    for name, items in groups.items():
        if items or name == "feedback":
            b, a = results["before"][name], results["after"][name]
            report[name] = {"n": len(items), "before": b, "after": a, "delta": _delta(b, a)}
    fb = prep.feedback
    report["records"] = {
        "files": fb.files, "usable": len(fb.items), "trained": len(prep.train_items),
        "heldout": len(prep.heldout_items), "carried": len(prep.carried_items), "superseded": fb.superseded,
        "rejected": sum(f["rejected"] for f in fb.files),
        "acuity_masked": sum(it.acuity is None for it in prep.tuned_items),
        "sources": {src: sum(it.source == src for it in prep.train_items) for src in
                    sorted({it.source for it in prep.train_items})},
        "issues": [i.to_dict() for i in fb.issues]}
    report["training"] = {**prep.result, "settings": prep.settings.key()}
    report["seconds"] = round(time.monotonic() - t0, 1)
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / REPORT_JSON).write_text(json.dumps(report, indent=2, default=float) + "\n")
    (reports_dir / REPORT_MD).write_text(render_markdown(report))
    log.info("feedback evaluation written to %s", reports_dir)
    return report


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _fmt_delta(v) -> str:
    return "-" if v is None else f"{v:+.3f}"


def _table(section: dict, keys: Sequence[tuple[str, str]]) -> list[str]:
    rows = ["| metric | before | after | delta |", "| --- | ---: | ---: | ---: |"]
    for key, name in keys:
        if key in section["before"] or key in section["after"]:
            rows.append(f"| {name} | {_fmt(section['before'].get(key))} | {_fmt(section['after'].get(key))} | "
                        f"{_fmt_delta(section['delta'].get(key))} |")
    return rows


_TEST_KEYS = (("unit_macro_f1", "unit macro-F1"), ("acuity_macro_f1", "acuity macro-F1"),
              ("needs_macro_f1", "needs macro-F1"), ("acuity_exact", "acuity exact"),
              ("acuity_within_one", "acuity within one"), ("under_triage_esi_1_2", "under-triage ESI 1-2"),
              ("unit_ece_after", "unit ECE (calibrated)"), ("acuity_ece_after", "acuity ECE (calibrated)"))
_FB_KEYS = (("unit_accuracy", "unit accuracy"), ("unit_accuracy_corrected", "unit accuracy, corrected records"),
            ("predicts_previous_unit_corrected", "still predicts the corrected-away unit"),
            ("acuity_accuracy", "acuity accuracy (known acuity)"), ("needs_exact_set_match", "needs exact set"),
            ("needs_micro_f1", "needs micro-F1"))


def render_markdown(rep: dict) -> str:
    r = rep["records"]
    out = [f"# Feedback fine-tuning: `{rep['model_version']}`", "",
           f"Parent `{rep['parent_model_version']}` ({rep['parent_model_dir']}) -> `{rep['model_version']}` "
           f"({rep['model_dir']}).", "",
           f"Feedback: {r['usable']} usable records from {len(r['files'])} file(s); {r['trained']} trained on, "
           f"{r['heldout']} held out, {r['carried']} carried from the parent's earlier feedback, "
           f"{r['superseded']} superseded by a later record for the same encounter, {r['rejected']} rejected; "
           f"{r['acuity_masked']} without acuity (acuity loss masked).", "",
           "| file | sha256 | records | usable | rejected |", "| --- | --- | ---: | ---: | ---: |"]
    out += [f"| {f['path']} | `{f['sha256'][:16]}` | {f['records']} | {f['usable']} | {f['rejected']} |"
            for f in r["files"]]
    t = rep["heldout_test"]
    out += ["", f"## Held-out test split (the parent's `data/test.jsonl`, n={t['n']})", "",
            "Forgetting shows here: the new model should not lose macro-F1 on data it was not tuned on.", ""]
    out += _table(t, _TEST_KEYS) if t["n"] else ["(no test rows)"]
    titles = {"feedback": "Feedback records trained on, n={n}: are the corrections learned?",
              "feedback_heldout": "Feedback records held out by `--feedback-holdout`, n={n}: "
                                  "do corrections generalise?",
              "earlier_feedback": "Earlier feedback carried from the parent, n={n}: still learned?"}
    for name, title in titles.items():
        if name in rep:
            out += ["", "## " + title.format(n=rep[name]["n"]), ""]
            if name == "feedback":
                out += ["Accuracy on records the model was tuned on measures whether it absorbed them, not how "
                        "it does on new patients (the held-out test split and `--feedback-holdout` do).", ""]
            out += _table(rep[name], _FB_KEYS)
    if r["issues"]:
        out += ["", f"## Rejected records ({r['rejected']})", "", "| file | line | field | problem |",
                "| --- | ---: | --- | --- |"]
        out += [f"| {i['file']} | {i['line']} | {i['field'] or '-'} | {i['message'].replace('|', '/')} |"
                for i in r["issues"][:200]]
        if len(r["issues"]) > 200:
            out.append(f"| ... | | | {len(r['issues']) - 200} more in {REPORT_JSON} |")
    tr = rep["training"]
    st = tr["settings"]
    out += ["", "## Training", "",
            f"{tr.get('steps')} steps in {tr.get('seconds')} s (stop: {tr.get('stop_reason')}); encoder LR "
            f"{st['lr_encoder']:g}, heads {st['lr_head']:g}, feedback share {st['feedback_share']:g}, replay "
            f"{st['replay']} per epoch, seed {st['seed']}.", ""]
    return "\n".join(out)


def summary_text(rep: dict) -> str:
    t, f = rep["heldout_test"], rep["feedback"]

    def ba(sec: dict, key: str, pct: bool = False) -> str:
        b, a = sec["before"].get(key), sec["after"].get(key)
        if b is None or a is None:
            return "-"
        return f"{b:.0%} -> {a:.0%}" if pct else f"{b:.3f} -> {a:.3f} ({a - b:+.3f})"

    parts = [f"model {rep['model_version']} (from {rep['parent_model_version']}) -> {rep['model_dir']}: "
             f"{rep['records']['trained']} feedback records ({rep['records']['rejected']} rejected)"]
    if t["n"]:
        parts.append(f"test unit macro-F1 {ba(t, 'unit_macro_f1')}, acuity {ba(t, 'acuity_macro_f1')}"
                     + (f", needs {ba(t, 'needs_macro_f1')}" if "needs_macro_f1" in t["before"] else ""))
    parts.append(f"feedback unit accuracy {ba(f, 'unit_accuracy', True)}"
                 + (f" (corrected {ba(f, 'unit_accuracy_corrected', True)})" if f["before"].get("n_corrected") else ""))
    return "; ".join(parts)
