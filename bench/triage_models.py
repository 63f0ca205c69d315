"""Compare triage models on the same data in one run: quality (served and argmax) and serving speed.

For each `NAME=MODEL_ROOT` (a `build-model` / `export` output with `onnx/` and `int8/`), scored on the
same corpus directory (train / validation / test JSONL; the TF-IDF + LR baseline is fitted once on its
training split) and on the packaged hand-written notes: `wardflow evaluate` on the fp32 ONNX graph
(reports under OUT/NAME), then the figures the issue asks for side by side, and the served int8
model's texts/s on the test split's texts (OnnxTriageModel.predict_batch, the worker's path, batches
of 32, the models taking turns over `--rounds` rounds; median). JSON to stdout, Markdown to OUT/compare.md.

    python bench/triage_models.py --data-dir models/triage/corpus --out reports/compare \\
        shipped=/work/main/models/triage v3=models/triage l3=/tmp/l3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = (("unit macro-F1", "unit_macro_f1", "{:.3f}"), ("acuity within one", "acuity_within_one", "{:.3f}"),
        ("under-triage ESI 1-2", "under_triage_esi_1_2", "{:.1%}"), ("  patients", "under_triaged", "{}"),
        ("  not flagged (silent)", "under_triaged_not_flagged", "{}"), ("ESI 1-2 sent home", "esi_1_2_sent_home", "{}"),
        ("over-triage ESI 3-5", "over_triage_esi_3_5", "{:.1%}"), ("needs micro-F1", "needs_micro_f1", "{:.3f}"),
        ("unit ECE", "unit_ece", "{:.3f}"), ("flagged", "flagged_rate", "{:.1%}"),
        ("unit accuracy not flagged", "unit_accuracy_not_flagged", "{:.3f}"))


def _figures(block: dict) -> dict:
    return {k: block.get(k) for _, k, _ in ROWS}


def _speed(int8_dirs: dict[str, Path], texts: list[tuple[str, float, str]], threads: int, rounds: int) -> dict:
    from inference.interface import TriageRequest
    from inference.serving import OnnxTriageModel

    models = {n: OnnxTriageModel.load(d, threads=threads, providers=["CPUExecutionProvider"]) for n, d in int8_dirs.items()}
    reqs = [TriageRequest(str(i), t, a, s) for i, (t, a, s) in enumerate(texts)]
    for m in models.values():
        m.predict_batch(reqs[:32])                            # warm-up
    rates: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(rounds):
        for n, m in models.items():
            t0 = time.perf_counter()
            for i in range(0, len(reqs), 32):
                m.predict_batch(reqs[i:i + 32])
            rates[n].append(len(reqs) / (time.perf_counter() - t0))
    return {n: {"texts_per_s_median": round(statistics.median(r), 1), "runs": [round(x, 1) for x in r]}
            for n, r in rates.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=MODEL_ROOT (with onnx/ and int8/)")
    ap.add_argument("--data-dir", type=Path, required=True, help="train/validation/test.jsonl")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.55, help="uncertainty threshold (the worker's default)")
    ap.add_argument("--speed-n", type=int, default=256, help="test texts timed per model and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-quality", action="store_true", help="speed only")
    a = ap.parse_args(argv)

    from inference.data import by_split, load_files
    from inference.evaluate import evaluate
    from inference.evaluate_decoded import load_handwritten
    from inference.labels import DEFAULT_LABELS

    roots = {}
    for spec in a.models:
        name, _, root = spec.partition("=")
        if not root or not (Path(root) / "int8" / "model.onnx").exists():
            print(f"error: {spec!r}: expected NAME=DIR with DIR/int8/model.onnx", file=sys.stderr)
            return 2
        roots[name] = Path(root)
    examples, labels = load_files([a.data_dir / f"{s}.jsonl" for s in ("train", "validation", "test")], DEFAULT_LABELS)
    hand, hand_name = load_handwritten(labels)
    out: dict = {"data_dir": str(a.data_dir), "threads": a.threads, "threshold": a.threshold, "models": {}}
    if not a.no_quality:
        for i, (name, root) in enumerate(roots.items()):
            t0 = time.monotonic()
            rep = evaluate(root / "onnx", examples, a.out / name, threads=a.threads, threshold=a.threshold,
                           baseline=(i == 0), progress=False, handwritten=hand, handwritten_name=hand_name)
            cfg = json.loads((root / "int8" / "triage_config.json").read_text())
            m = {"model_version": rep.get("model_version"), "base_model": cfg.get("base_model"),
                 "train_seconds": cfg.get("metrics", {}).get("train_seconds"),
                 "train_steps": cfg.get("metrics", {}).get("steps"), "eval_seconds": round(time.monotonic() - t0)}
            for where, key in (("handwritten", "handwritten"), ("test", "served_test")):
                blk = rep.get(key) or {}
                m[where] = {"served": _figures(blk.get("model_decoded", {})), "argmax": _figures(blk.get("model", {}))}
                if i == 0:
                    out.setdefault("tfidf", {})[where] = {"served": _figures(blk.get("baseline_decoded", {})),
                                                          "argmax": _figures(blk.get("baseline", {}))}
            out["models"][name] = m
    test = [e for e in by_split(examples)["test"]][: a.speed_n]
    out["speed_int8"] = _speed({n: r / "int8" for n, r in roots.items()}, [(e.text, e.age, e.sex) for e in test],
                               a.threads, a.rounds)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "compare.json").write_text(json.dumps(out, indent=2) + "\n")
    if not a.no_quality:
        (a.out / "compare.md").write_text(_markdown(out))
    print(json.dumps(out, indent=2))
    return 0


def _markdown(out: dict) -> str:
    cols = [(n, m) for n, m in out["models"].items()] + [("TF-IDF", out.get("tfidf", {}))]
    lines = []
    for where in ("handwritten", "test"):
        lines += [f"\n### {where} (served; argmax in brackets)\n", "| | " + " | ".join(n for n, _ in cols) + " |",
                  "| --- |" + " ---: |" * len(cols)]
        for label, key, fmt in ROWS:
            cells = []
            for _, m in cols:
                s, r = m.get(where, {}).get("served", {}).get(key), m.get(where, {}).get("argmax", {}).get(key)
                cells.append("" if s is None else fmt.format(s) + ("" if r is None else f" ({fmt.format(r)})"))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("\nint8 served texts/s (median): " + ", ".join(f"{n} {v['texts_per_s_median']}"
                                                           for n, v in out["speed_int8"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
