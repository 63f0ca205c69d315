"""`wardflow build-model`: corpus -> train -> export + quantize -> evaluate (fp32 and int8), cached.

Each step records the fingerprint of its inputs in a `.step.json` beside its outputs and is
skipped when the outputs exist for the same fingerprint (`force=True` redoes everything).

Layout under `out_dir` (default models/triage):
  corpus/      train/validation/test JSONL + manifest.json
  torch/       the trained PyTorch model (+ data/ splits)
  onnx/        fp32 ONNX, optimized
  int8/        int8 ONNX: the serving directory (WardflowSettings.model_path)
  lexical/     the step record of the lexical reader (TF-IDF + LR, `inference.lexical`) fitted on the
               same training split and written into onnx/ and int8/ (lexical.npz), blended with
               the encoder at the weight the validation split prefers; the same step chooses the
               served model's need threshold on the validation split (`need_threshold` in both
               triage_config.json)
Reports go to `reports_dir` (default reports/triage): report.json, report.md, figures/, and
int8/ for the quantized model's own evaluation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from inference.corpus import HELDOUT_FRACTION

log = logging.getLogger(__name__)

EXPORT_CODE_VERSION = "2"
LEXICAL_CODE_VERSION = "4"  # 2: the step also chooses the need threshold; 3: the acuity head reads sign
# bands, and the encoder's share is chosen per head; 4: it also keeps the reports' baseline (BASELINE_FILE)
LEXICAL_SIGN_SCALE = 1.0  # the sign bands' scale in the lexical reader (inference.sign_features; 0: none)


@dataclass
class BuildSettings:
    # 15,000 cases read once rather than 5,000 read three times: the same optimiser steps in the training
    # budget, three times as many distinct cases (docs/inference.md, ninth pass)
    n_train: int = 15000
    epochs: int = 1
    n_val: int = 500
    n_test: int = 1000
    seed: int = 13
    threads: int = 2
    train_overrides: dict = field(default_factory=dict)
    progress: bool = True
    # the training split also reads the test split's presentations (validation keeps its own held out).
    # On by default since corpus v5: the served model should read every presentation it can; the
    # generated test split then holds out templates only, and an evaluation build (False) measures
    # unseen presentations there (docs/inference.md, eighth pass)
    train_on_test_presentations: bool = True
    # share of each unit's presentations held out of training for validation, and again for test
    heldout_fraction: float = HELDOUT_FRACTION
    lexical: bool = True  # blend the encoder with a TF-IDF reader (inference.lexical)


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stamp_ok(d: Path, key: str, required: tuple[str, ...]) -> bool:
    s = d / ".step.json"
    if not s.exists() or any(not (d / r).exists() for r in required):
        return False
    try:
        return json.loads(s.read_text()).get("key") == key
    except (json.JSONDecodeError, OSError):
        return False


def _stamp(d: Path, key: str, **extra) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / ".step.json").write_text(json.dumps({"key": key, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra},
                                             indent=2) + "\n")


def _step(name: str, d: Path, key: str, required: tuple[str, ...], force: bool, fn: Callable[[], dict | None],
          say: Callable[[str], None]) -> bool:
    if not force and _stamp_ok(d, key, required):
        say(f"[build] {name}: up to date ({d})")
        return False
    say(f"[build] {name} ...")
    t0 = time.monotonic()
    extra = fn() or {}
    _stamp(d, key, seconds=round(time.monotonic() - t0, 1), **extra)
    say(f"[build] {name}: done in {time.monotonic() - t0:.0f}s")
    return True


def build(out_dir: Path = Path("models/triage"), reports_dir: Path = Path("reports/triage"), *,
          force: bool = False, settings: BuildSettings | None = None, say: Callable[[str], None] = print) -> Path:
    """Run the pipeline; returns the int8 serving directory."""
    from inference.corpus import corpus_fingerprint, generate_splits, heldout_sets
    from inference.data import by_split, from_cases, load_files, write_examples
    from inference.labels import DEFAULT_LABELS
    from inference.train import TrainSettings

    s = settings or BuildSettings()
    out_dir, reports_dir = Path(out_dir), Path(reports_dir)
    t_all = time.monotonic()
    cdir, tdir, idir = out_dir / "corpus", out_dir / "torch", out_dir / "int8"
    cparams = {"n_train": s.n_train, "n_val": s.n_val, "n_test": s.n_test, "seed": s.seed,
               "heldout_fraction": s.heldout_fraction, "train_on_test_presentations": s.train_on_test_presentations}
    ckey = corpus_fingerprint(cparams)
    files = tuple(f"{x}.jsonl" for x in ("train", "validation", "test"))

    def do_corpus():
        splits = generate_splits(s.n_train, s.n_val, s.n_test, s.seed, s.heldout_fraction,
                                 train_on_test_presentations=s.train_on_test_presentations)
        exs = from_cases(splits)
        for name, part in by_split(exs).items():
            write_examples(part, cdir / f"{name}.jsonl")
        held = heldout_sets(s.seed, s.heldout_fraction)
        (cdir / "manifest.json").write_text(json.dumps({"fingerprint": ckey, "params": cparams,
                                                        "heldout": held.__dict__}, indent=2, default=list) + "\n")
        return {"counts": {k: len(v) for k, v in splits.items()}}

    _step("corpus", cdir, ckey, files, force, do_corpus, say)
    examples, labels = load_files([cdir / f for f in files], DEFAULT_LABELS)

    ts = TrainSettings(seed=s.seed, threads=s.threads, progress=s.progress, **{"epochs": s.epochs, **s.train_overrides})
    tkey = _key({"corpus": ckey, "train": ts.key()})

    def do_train():
        from inference.train import train

        for name, part in by_split(examples).items():
            write_examples(part, tdir / "data" / f"{name}.jsonl")
        cfg = train(examples, labels, tdir, ts)
        warning = short_schedule_warning(cfg.metrics)
        if warning:
            say(warning)
        return {"model_version": cfg.model_version, "stop_reason": cfg.metrics.get("stop_reason"),
                "train_seconds": cfg.metrics.get("train_seconds"), "steps": cfg.metrics.get("steps"),
                "full_schedule_steps": cfg.metrics.get("full_schedule_steps"), "warning": warning}

    trained = _step("train", tdir, tkey, ("model.safetensors", "triage_config.json"), force, do_train, say)
    from inference.config import load_config

    version = load_config(tdir).model_version
    ekey = _key({"model": version, "export": EXPORT_CODE_VERSION})

    def do_export():
        from inference.export import export_model

        summary = export_model(tdir, out_dir, examples, threads=s.threads, progress=s.progress)
        say("[build] int8 vs fp32 (test macro-F1 points): " + json.dumps(summary.get("int8_change_points")))
        return {"model_version": version, "summary": summary}

    exported = _step("export + quantize", idir, ekey, ("model.onnx", "tokenizer.json", "triage_config.json"),
                     force or trained, do_export, say)

    lkey = _key({"export": ekey, "lexical": LEXICAL_CODE_VERSION if s.lexical else None})

    def do_lexical():
        return add_lexical_reader(out_dir, examples, labels, threads=s.threads, enabled=s.lexical, say=say)

    lexical_required = ("../int8/lexical.npz", BASELINE_FILE) if s.lexical else ()
    lexical_done = _step("lexical reader", out_dir / "lexical", lkey, lexical_required, force or exported,
                         do_lexical, say)
    exported = exported or lexical_done
    ekey = lkey  # the evaluations judge what is served: the encoder and its reader

    def handwritten():
        from inference.evaluate_decoded import load_handwritten

        exs, name = load_handwritten(labels)
        if exs is None:
            say(f"[build] {name}")
        return dict(handwritten=exs, handwritten_name=name if exs else "")

    def do_eval():
        from inference.evaluate import evaluate
        from inference.report_md import held_out_line

        # the fp32 ONNX graph, checked against PyTorch within 2e-3 at export, is the trained model (and
        # evaluates several times faster on CPU than eager PyTorch)
        # the lexical step above has just written it, or found it under its key
        fitted = load_baseline(out_dir / "lexical" / BASELINE_FILE) if s.lexical else None
        rep = evaluate(out_dir / "onnx", examples, reports_dir, threads=s.threads, progress=s.progress,
                       fitted_baseline=fitted, **handwritten())
        say("[build] test: " + json.dumps({k: {m: round(v, 3) for m, v in d.items()}
                                            for k, d in rep["summary"].items()}))
        say(f"[build] test split: {held_out_line(rep)}")   # the report's own line, from the data
        return {"model_version": version}

    _step("evaluate", reports_dir, ekey, ("report.json", "report.md"), force or exported, do_eval, say)

    def do_eval_int8():
        from inference.evaluate import evaluate

        evaluate(idir, examples, reports_dir / "int8", threads=s.threads, baseline=False, progress=s.progress,
                 **handwritten())
        return {"model_version": version}

    _step("evaluate int8", reports_dir / "int8", ekey, ("report.json",), force or exported, do_eval_int8, say)
    say(f"[build] model ready: {idir} ({version}); total {time.monotonic() - t_all:.0f}s")
    return idir


BASELINE_FILE = "baseline.pkl"  # the reports' TF-IDF baseline, fitted by the lexical step (build-time only)


def save_baseline(baseline, path: Path) -> None:
    """Pickle a fitted `TfidfBaseline` for the build's own later step (a build artefact, never served)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(baseline, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load_baseline(path: Path):
    """The baseline `save_baseline` wrote in this build's own directory (its lexical step's key covers it)."""
    with Path(path).open("rb") as f:
        return pickle.load(f)  # written by this build's lexical step, in its own output directory


SHORT_SCHEDULE_SHARE = 0.5  # below this share of the full schedule, the build says the model is under-trained


def short_schedule_warning(metrics: dict) -> str:
    """A loud line when the time budget cut training to under `SHORT_SCHEDULE_SHARE` of its schedule (a slow or
    busy machine): the model then reads the notes much worse, and nothing else would say so. '' otherwise."""
    steps, full = metrics.get("steps"), metrics.get("full_schedule_steps")
    if not isinstance(steps, int) or not isinstance(full, int) or full <= 0 or steps >= SHORT_SCHEDULE_SHARE * full:
        return ""
    return (f"[build] WARNING: training ran {steps} of its {full} scheduled steps within the time budget (the "
            "machine was slow or busy): this model is under-trained. Rebuild on an idle machine "
            "(`wardflow build-model --force`) or give it more time (`--time-budget`) before relying on it.")


def add_lexical_reader(out_dir: Path, examples, labels, *, threads: int = 2, enabled: bool = True,
                       say: Callable[[str], None] = print) -> dict:
    """Fit the lexical reader on the training split, choose the encoder's share per head on the validation
    split (log loss, `inference.lexical.choose_head_weights`) and write it into `out_dir`'s onnx/ and int8/ directories
    (`enabled=False` removes it instead); then choose the need threshold of what is served on the
    validation split (`choose_need_threshold`, fp32 and int8 together) and write it into both."""
    import numpy as np

    from inference.config import load_config
    from inference.data import by_split
    from inference.lexical import LEXICAL_FILE, choose_head_weights

    dirs = [Path(out_dir) / "onnx", Path(out_dir) / "int8"]
    splits = by_split(examples)
    val = splits["validation"]
    for d in dirs:  # the old reader goes first: the encoders' probabilities below are the encoders' alone
        cfg = load_config(d)
        (d / LEXICAL_FILE).unlink(missing_ok=True)
        if cfg.lexical_file:
            cfg.lexical_file = ""
            cfg.save(d)
    if not enabled:
        if not val:
            return {"lexical": None}
        return {"lexical": None, "need_threshold": _set_need_threshold(dirs, _encoders(dirs, val, threads), val,
                                                                        labels, say)}
    from inference.baseline import TfidfBaseline
    from inference.lexical import blend

    if not splits["train"] or not val:
        from inference.exceptions import TrainingDataError

        raise TrainingDataError("the lexical reader needs a training and a validation split")
    fitted = TfidfBaseline(labels, sign_scale=LEXICAL_SIGN_SCALE).fit(splits["train"], val, threads=threads,
                                                                      keep_plain_acuity=True)
    # the reports' baseline is this fit without the sign bands: kept for the evaluate step, which would
    # otherwise fit the same vectorizers and heads a second time
    save_baseline(fitted.without_signs(val), Path(out_dir) / "lexical" / BASELINE_FILE)
    encoders = _encoders(dirs, val, threads)
    reader = fitted.reader(1.0)
    lexical = reader.probs([e.text for e in val], [e.age for e in val], [e.sex for e in val])
    weights, losses = choose_head_weights(encoders["onnx"], lexical,
                                          np.array([labels.units.index(e.unit) for e in val]),
                                          np.array([labels.acuity_index(e.acuity) for e in val]))
    reader.weight, reader.acuity_weight = weights["unit"], weights["acuity"]
    for d in dirs:
        reader.save(d)
        dcfg = load_config(d)
        dcfg.lexical_file = LEXICAL_FILE
        dcfg.save(d)
    say(f"[build] lexical reader: encoder share {weights['unit']} for the unit and the needs, "
        f"{weights['acuity']} for the acuity (validation log loss by share: {losses})")
    served = {name: blend(p, lexical, weights) for name, p in encoders.items()}
    return {"lexical": {"encoder_weight": weights["unit"], "encoder_acuity_weight": weights["acuity"],
                        "validation_log_loss": losses},
            "need_threshold": _set_need_threshold(dirs, served, val, labels, say)}


def _encoders(dirs: list[Path], val, threads: int) -> dict:
    """Each export's calibrated probabilities on `val`, by directory name (onnx, int8)."""
    from inference.evaluate import _calibrated, model_logits

    out = {}
    for d in dirs:
        logits, cfg = model_logits(d, val, threads, progress=False)
        out[d.name] = _calibrated(logits, cfg.temperatures)
    return out


def _set_need_threshold(dirs: list[Path], served: dict, val, labels, say: Callable[[str], None]) -> dict:
    """Choose the need threshold on the validation split for the served probabilities of every export
    (`inference.evaluate_decoded.choose_need_threshold`) and write it into each export's config."""
    from inference.config import load_config
    from inference.evaluate_decoded import choose_need_threshold
    from inference.policy import load_policy

    threshold, scores = choose_need_threshold(served, val, labels, load_policy())
    for d in dirs:
        dcfg = load_config(d)
        dcfg.need_threshold = threshold
        dcfg.save(d)
    say(f"[build] need threshold {threshold:g} (validation needs micro-F1 by threshold: "
        f"{ {k: round(v, 3) for k, v in scores.items()} })")
    return {"threshold": threshold, "validation_needs_micro_f1": scores}


def build_default_model(out_dir: Path = Path("models/triage"), force: bool = False) -> Path:
    """The demo's entry point: build (or reuse) the default model; returns the int8 serving dir."""
    return build(Path(out_dir), force=force)
