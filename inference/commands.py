"""`wardflow` subcommands of the inference package: corpus, train (also `--feedback`), evaluate, export, predict,
build-model.

Heavy imports (torch, transformers, sklearn, matplotlib) happen inside the command functions so
`wardflow --help` stays fast. Each function returns an exit code; `InferenceError`s are printed
by the CLI as one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from inference.settings import load_settings

DEFAULT_OUT = Path("models/triage")
DEFAULT_REPORTS = Path("reports/triage")


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spin-waiting on a shared CPU


def _threads(args) -> int:
    """--threads, else WARDFLOW_INFERENCE_THREADS (an invalid value is an error, not a default)."""
    if getattr(args, "threads", None):
        return int(args.threads)
    return load_settings().inference_threads


def _load_examples(args):
    """Examples and label set from --data files, a --corpus dir, or a fresh corpus."""
    from inference.data import corpus_examples, load_files, load_label_file

    labels = load_label_file(Path(args.labels)) if getattr(args, "labels", None) else None
    if getattr(args, "data", None):
        return load_files([Path(p) for p in args.data], labels, seed=args.seed)
    if getattr(args, "corpus", None):
        d = Path(args.corpus)
        files = [d / f"{s}.jsonl" for s in ("train", "validation", "test") if (d / f"{s}.jsonl").exists()]
        return load_files(files or [d], labels, seed=args.seed)
    from inference.labels import DEFAULT_LABELS

    return corpus_examples(args.n_train, args.n_val, args.n_test, args.seed), DEFAULT_LABELS


# ---------------------------------------------------------------------------- commands

def cmd_corpus(args) -> int:
    from inference.corpus import corpus_fingerprint, generate_splits, heldout_sets, write_jsonl

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = generate_splits(args.n_train, args.n_val, args.n_test, args.seed)
    counts = {name: write_jsonl(cases, out / f"{name}.jsonl", split=name) for name, cases in splits.items()}
    params = {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test, "seed": args.seed}
    manifest = {"fingerprint": corpus_fingerprint(params), "params": params, "counts": counts,
                "heldout": {k: list(v) for k, v in heldout_sets(args.seed).__dict__.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {sum(counts.values())} cases to {out} ({counts}); fingerprint {manifest['fingerprint']}")
    return 0


def cmd_train(args) -> int:
    _offline()
    if getattr(args, "feedback", None):
        return cmd_train_feedback(args)
    from inference.exceptions import InferenceError

    only_feedback = [o for o, v in (("--from-model", args.from_model), ("--reports", args.reports),
                                    ("--feedback-share", args.feedback_share), ("--replay", args.replay),
                                    ("--steps", args.steps), ("--feedback-holdout", args.feedback_holdout))
                     if v is not None] + (["--no-carry-feedback"] if args.no_carry_feedback else [])
    if only_feedback:
        raise InferenceError(f"{', '.join(only_feedback)} only apply with --feedback FILE")
    from inference.data import by_split, write_examples
    from inference.train import TrainSettings, train

    examples, labels = _load_examples(args)
    out = Path(args.out) if args.out else DEFAULT_OUT / "torch"
    for name, part in by_split(examples).items():
        write_examples(part, out / "data" / f"{name}.jsonl")
    extra = {"lr_head": args.lr_head} if args.lr_head is not None else {}
    ts = TrainSettings(base_model=args.base_model or "", seed=args.seed, epochs=args.epochs,
                       batch_size=args.batch_size, train_max_length=args.max_length or 128,
                       freeze_layers=args.freeze_layers,
                       time_budget_s=args.time_budget if args.time_budget is not None else 480.0,
                       threads=_threads(args), patience=args.patience,
                       lr_encoder=args.lr if args.lr is not None else 1e-4, progress=not args.no_progress, **extra)
    cfg = train(examples, labels, out, ts)
    v = cfg.metrics["validation"]
    print(f"model {cfg.model_version} -> {out}: validation unit macro-F1 {v['unit_macro_f1']:.3f}, acuity macro-F1 "
          f"{v['acuity_macro_f1']:.3f}, needs micro-F1 {v['needs_micro_f1']:.3f}; temperatures "
          f"{ {k: round(t, 3) for k, t in cfg.temperatures.items()} } ({cfg.metrics['stop_reason']}, "
          f"{cfg.metrics['train_seconds']}s)")
    return 0


def cmd_train_feedback(args) -> int:
    """`wardflow train --feedback FILE ...`: fine-tune --from-model on feedback records + replay, report."""
    from inference.exceptions import InferenceError
    from inference.finetune import FineTuneSettings, evaluate_fine_tune, fine_tune, prepare, summary_text

    clash = [o for o, v in (("--data", args.data), ("--corpus", args.corpus), ("--labels", args.labels),
                            ("--base-model", args.base_model), ("--max-length", args.max_length)) if v]
    if clash:
        raise InferenceError(f"{', '.join(clash)} cannot be combined with --feedback (the data, labels, encoder "
                             f"and lengths are the --from-model's)")
    d = FineTuneSettings()
    s = FineTuneSettings(
        seed=args.seed, epochs=args.epochs, steps=args.steps or 0, batch_size=args.batch_size,
        lr_encoder=args.lr if args.lr is not None else d.lr_encoder,
        lr_head=args.lr_head if args.lr_head is not None else d.lr_head,
        feedback_share=args.feedback_share if args.feedback_share is not None else d.feedback_share,
        replay=args.replay if args.replay is not None else d.replay,
        holdout=args.feedback_holdout if args.feedback_holdout is not None else d.holdout,
        carry_feedback=not args.no_carry_feedback, freeze_layers=args.freeze_layers,
        time_budget_s=args.time_budget if args.time_budget is not None else d.time_budget_s,
        threads=_threads(args), progress=not args.no_progress)
    parent = Path(args.from_model) if args.from_model else DEFAULT_OUT / "torch"
    prep = prepare(parent, [Path(p) for p in args.feedback], s)
    for issue in prep.feedback.issues[:20]:
        print(f"wardflow train: skipped record: {issue}", file=sys.stderr)
    if len(prep.feedback.issues) > 20:
        print(f"wardflow train: ... and {len(prep.feedback.issues) - 20} more problems (all listed in the report)",
              file=sys.stderr)
    out = Path(args.out) if args.out else DEFAULT_OUT / "finetuned" / prep.model_version
    fine_tune(prep, out)
    reports = Path(args.reports) if args.reports else Path("reports/feedback") / prep.model_version
    rep = evaluate_fine_tune(prep, out, reports, threads=s.threads, progress=s.progress)
    print(summary_text(rep))
    print(f"report: {reports / 'feedback_eval.md'}")
    return 0


def cmd_evaluate(args) -> int:
    _offline()
    from inference.config import load_config
    from inference.data import load_files
    from inference.evaluate import evaluate

    model = Path(args.model)
    labels = load_config(model).labels
    if args.data:
        examples, _ = load_files([Path(p) for p in args.data], labels, seed=args.seed, require_train=False)
    else:
        data = Path(args.data_dir) if args.data_dir else model / "data"
        if not args.data_dir and not data.exists() and (model.parent / "torch" / "data").exists():
            data = model.parent / "torch" / "data"      # an exported dir beside the trained one
        files = [data / f"{s}.jsonl" for s in ("train", "validation", "test") if (data / f"{s}.jsonl").exists()]
        if not files:
            from inference.exceptions import TrainingDataError

            raise TrainingDataError(f"no split files in {data}; pass --data FILE")
        examples, _ = load_files(files, labels, require_train=False)
    hw, hw_name = _handwritten(args, labels)
    rep = evaluate(model, examples, Path(args.out), threads=_threads(args), threshold=args.threshold,
                   baseline=not args.no_baseline, progress=not args.no_progress, handwritten=hw,
                   handwritten_name=hw_name, policy_path=Path(args.policy) if args.policy else None,
                   target_accuracy=args.target_accuracy)
    print(json.dumps(rep["summary"], indent=2))
    if "handwritten" in rep:
        print(f"hand-written notes ({rep['handwritten']['n']}): "
              + json.dumps(rep["handwritten"]["summary"], indent=2))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _handwritten(args, labels):
    """--handwritten FILE, else the packaged set when the model's label set covers it (a model trained on other
    labels is told so, not failed)."""
    from inference.evaluate_decoded import load_handwritten

    if args.no_handwritten:
        return None, ""
    exs, name = load_handwritten(labels, Path(args.handwritten) if args.handwritten else None)
    if exs is None:
        print(f"wardflow evaluate: {name}; pass --handwritten FILE with notes labelled in its labels", file=sys.stderr)
        return None, ""
    return exs, name


def cmd_export(args) -> int:
    _offline()
    from inference.export import export_model, load_examples_for

    model = Path(args.model)
    examples = load_examples_for(model)
    summary = export_model(model, Path(args.out), examples, threads=_threads(args), tolerance=args.tolerance,
                           progress=not args.no_progress)
    print(json.dumps(summary, indent=2, default=float))
    return 0


def cmd_predict(args) -> int:
    from inference import predict

    s = load_settings()
    threshold = args.threshold if args.threshold is not None else s.uncertainty_threshold
    batch = args.batch_size or s.inference_batch_size
    model = Path(args.model) if args.model else s.model_path
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.provider == "cuda" else (
        ["CPUExecutionProvider"] if args.provider == "cpu" else None)
    ok, bad = predict.run(model, args.input, args.output, threads=_threads(args), uncertainty_threshold=threshold,
                          batch_size=batch, providers=providers, policy=s.triage_policy_path)
    print(f"predicted {ok}, failed {bad}", file=sys.stderr)
    return 0


def cmd_build_model(args) -> int:
    _offline()
    from inference.build import BuildSettings, build

    overrides = {}
    if args.time_budget is not None:
        overrides["time_budget_s"] = args.time_budget
    optional = {"n_train": args.n_train, "epochs": args.epochs, "heldout_fraction": args.heldout_fraction}
    s = BuildSettings(n_val=args.n_val, n_test=args.n_test, seed=args.seed,
                      threads=_threads(args), train_overrides=overrides, progress=not args.no_progress,
                      train_on_test_presentations=not args.hold_out_test_presentations,
                      **{k: v for k, v in optional.items() if v is not None})  # None: BuildSettings' default
    build(Path(args.out), Path(args.reports), force=args.force, settings=s)
    return 0


# ---------------------------------------------------------------------------- wiring

def _common(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: settings.inference_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if seed:
        p.add_argument("--seed", type=int, default=13)


def _heldout_fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < f <= 0.3:
        raise argparse.ArgumentTypeError(f"{f} is outside 0 < F <= 0.3 (each of validation and test holds out F)")
    return f


def _sizes(p: argparse.ArgumentParser, n_train: int | None = 5000, n_train_help: str | None = None) -> None:
    p.add_argument("--n-train", type=int, default=n_train, help=n_train_help)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=1000)


def register(subparsers) -> None:
    p = subparsers.add_parser("corpus", help="write the synthetic clinical corpus as JSONL (train/validation/test)")
    p.add_argument("--out", default="var/corpus", help="output directory")
    _sizes(p)
    p.add_argument("--seed", type=int, default=13)
    p.set_defaults(func=cmd_corpus)

    p = subparsers.add_parser(
        "train", help="fine-tune the triage model (corpus or a hospital's CSV/JSONL), or an existing model on "
                      "feedback records (--feedback)",
        description="Without --feedback: train from the base encoder on --data / --corpus / a fresh synthetic "
                    "corpus. With --feedback FILE: fine-tune --from-model on the records of the exported `feedback` "
                    "topic (JSON lines; they hold patients' free text: PHI), mixed with a replay sample of that "
                    "model's own training split, then report before/after on its test split and on the records.")
    p.add_argument("--out", default=None, help="model directory to write (default: models/triage/torch; with "
                                                "--feedback: models/triage/finetuned/<model_version>)")
    p.add_argument("--data", action="append", help="hospital CSV/JSONL file (repeatable); default: synthetic corpus")
    p.add_argument("--labels", help="JSON label set for --data (units, acuities, needs)")
    p.add_argument("--corpus", help="a directory written by `wardflow corpus`")
    p.add_argument("--base-model", help="HF BERT directory (default: packaged MiniLM-L6)")
    _sizes(p)
    p.add_argument("--epochs", type=int, default=3, help="passes over the data (with --feedback: over the mix of "
                                                          "feedback and replay)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None,
                   help="encoder learning rate (default 1e-4; with --feedback 2e-5: the model already fits its data, "
                        "and big steps on a few hundred corrections would overwrite what it learned)")
    p.add_argument("--lr-head", type=float, default=None, help="learning rate of the heads (default 2e-3; with "
                                                               "--feedback 5e-4, for the same reason)")
    p.add_argument("--max-length", type=int, default=None, help="tokens read in training (default 128; with "
                                                                "--feedback: the parent's)")
    p.add_argument("--freeze-layers", type=int, default=3, help="freeze embeddings + this many lower layers")
    p.add_argument("--patience", type=int, default=3, help="validation checks without improvement before stopping")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds for the training loop (default 480; with --feedback 300)")
    g = p.add_argument_group("fine-tuning on feedback records")
    g.add_argument("--feedback", action="append", metavar="FILE",
                   help="JSONL export of the `feedback` topic, one record per line (repeatable); PHI")
    g.add_argument("--from-model", default=None, help="trained PyTorch model directory to start from, with its "
                                                      "data/ splits (default: models/triage/torch)")
    g.add_argument("--reports", default=None, help="directory for feedback_eval.json/.md "
                                                   "(default: reports/feedback/<model_version>)")
    g.add_argument("--feedback-share", type=float, default=None,
                   help="share of each epoch made of feedback records, oversampled to reach it (default 0.25)")
    g.add_argument("--replay", type=int, default=None,
                   help="examples of the parent's training split replayed per epoch, so it does not forget "
                        "(default 1000; raised to keep --feedback-share with many records)")
    g.add_argument("--steps", type=int, default=None, help="exactly this many optimizer steps (instead of --epochs)")
    g.add_argument("--feedback-holdout", type=float, default=None,
                   help="share of the records kept out of training and evaluated separately (default 0)")
    g.add_argument("--no-carry-feedback", action="store_true",
                   help="do not tune again on the parent's own earlier feedback (its data/feedback.jsonl)")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate", help="test-split report: model vs TF-IDF baseline (JSON + Markdown)")
    p.add_argument("--model", default=str(DEFAULT_OUT / "torch"), help="PyTorch or exported model directory")
    p.add_argument("--data", action="append", help="CSV/JSONL with a split column (default: the model's data/)")
    p.add_argument("--data-dir", help="directory with train/validation/test.jsonl")
    p.add_argument("--out", default=str(DEFAULT_REPORTS), help="report directory")
    p.add_argument("--threshold", type=float, default=0.55, help="uncertainty threshold to report on (default 0.55, the worker's default)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--handwritten", default=None,
                   help="hand-written notes (JSONL/CSV, labelled) reported apart from the test split (default: the "
                        "packaged inference/eval/handwritten_notes.jsonl, when the model's label set covers it)")
    p.add_argument("--no-handwritten", action="store_true", help="skip the hand-written notes")
    p.add_argument("--policy", default=None, help="triage policy YAML (decoding costs, safety thresholds; default: "
                                                  "the packaged inference/triage_policy.yaml)")
    p.add_argument("--target-accuracy", type=float, default=0.9,
                   help="unit accuracy wanted on the cases not flagged uncertain; the report gives the lowest "
                        "threshold meeting it (default 0.9)")
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("export", help="ONNX export, check vs PyTorch, optimize, int8 quantize")
    p.add_argument("--model", default=str(DEFAULT_OUT / "torch"), help="trained PyTorch model directory")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="writes <out>/onnx and <out>/int8")
    p.add_argument("--tolerance", type=float, default=2e-3, help="max abs logit difference vs PyTorch")
    _common(p, seed=False)
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("predict", help="JSON lines {id,text,age,sex} in, calibrated predictions out")
    p.add_argument("--model", default=None, help="exported model directory (default: settings.model_path)")
    p.add_argument("--input", default="-", help="input JSONL file, - for stdin")
    p.add_argument("--output", default="-", help="output JSONL file, - for stdout")
    p.add_argument("--threshold", type=float, default=None, help="uncertainty threshold (default: settings)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    _common(p, seed=False)
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser("build-model", help="corpus -> train -> evaluate -> export -> quantize (cached)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--reports", default=str(DEFAULT_REPORTS))
    p.add_argument("--force", action="store_true", help="redo every step")
    _sizes(p, n_train=None, n_train_help="generated training cases (default: BuildSettings.n_train, 15000)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training cases (default: BuildSettings.epochs, 1; the time budget may "
                        "stop training sooner)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds for the training loop")
    p.add_argument("--hold-out-test-presentations", action="store_true",
                   help="an evaluation build: training does not read the test split's presentations, so the test "
                        "report measures unseen presentations (the default build reads them, and its test split "
                        "holds out templates only; validation always holds out its own; docs/inference.md)")
    p.add_argument("--heldout-fraction", type=_heldout_fraction, default=None,
                   help="share of each unit's presentations held out of training for validation, and again for "
                        "test, 0 < F <= 0.3 (default: inference.corpus.HELDOUT_FRACTION; docs/inference.md)")
    _common(p)
    p.set_defaults(func=cmd_build_model)


logging.getLogger("onnxruntime").setLevel(logging.WARNING)
