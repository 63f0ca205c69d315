"""`wardflow predict`: JSON lines in, calibrated predictions out, through the serving path.

Input lines: {"id", "text", "age", "sex"}. Output lines, in input order:
{"id", "target_unit", "unit_probs", "acuity", "acuity_probs", "needs", "need_probs", "uncertain",
"model_version"}, or for a bad line {"id", "error": {"code", "message"}} naming the field (never
the text). Bad lines never stop the others. No torch here: only the serving imports.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from inference.interface import PredictionFailed, TriagePrediction, TriageRequest

CHUNK = 256


def parse_line(line: str, line_no: int) -> TriageRequest | PredictionFailed:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return PredictionFailed("", "invalid_json", f"line {line_no}: not valid JSON")
    if not isinstance(obj, dict):
        return PredictionFailed("", "invalid_json", f"line {line_no}: must be a JSON object")
    rid = obj.get("id")
    rid_s = rid if isinstance(rid, str) else ("" if rid is None else str(rid))
    for f in ("id", "text", "age", "sex"):
        if f not in obj:
            return PredictionFailed(rid_s, f"missing_{f}", f"line {line_no}: field {f!r} is missing")
    if not isinstance(rid, str) or not rid:
        return PredictionFailed(rid_s, "invalid_id", f"line {line_no}: field 'id' must be a non-empty string")
    return TriageRequest(id=rid, text=obj["text"], age=obj["age"], sex=obj["sex"])


def predict_stream(model, lines: Iterable[str]) -> Iterator[dict]:
    """Output records for input lines, chunk by chunk, in order; blank lines are skipped."""
    chunk: list[tuple[int, TriageRequest | PredictionFailed]] = []

    def flush() -> Iterator[dict]:
        reqs = [(k, r) for k, (_, r) in enumerate(chunk) if isinstance(r, TriageRequest)]
        preds = model.predict_batch([r for _, r in reqs]) if reqs else []
        predicted: dict[int, TriagePrediction | PredictionFailed] = {
            k: p for (k, _), p in zip(reqs, preds, strict=True)}
        for k, (_, r) in enumerate(chunk):
            yield (predicted[k] if isinstance(r, TriageRequest) else r).to_dict()

    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        chunk.append((n, parse_line(line, n)))
        if len(chunk) >= CHUNK:
            yield from flush()
            chunk = []
    if chunk:
        yield from flush()


def _open_in(path: str) -> IO[str]:
    return sys.stdin if path == "-" else open(path, encoding="utf-8")


def _open_out(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8")


def run(model_dir: Path, input_path: str, output_path: str, *, threads: int = 2,
        uncertainty_threshold: float = 0.6, batch_size: int = 32, providers=None,
        policy: Path | None = None) -> tuple[int, int]:
    """(predicted, failed) counts; `policy`: the triage policy YAML (default: the packaged one)."""
    from inference.serving import OnnxTriageModel

    model = OnnxTriageModel.load(Path(model_dir), threads=threads, uncertainty_threshold=uncertainty_threshold,
                                 providers=providers, batch_size=batch_size, policy=policy)
    ok = bad = 0
    fin, fout = _open_in(input_path), _open_out(output_path)
    try:
        for rec in predict_stream(model, fin):
            if "error" in rec:
                bad += 1
            else:
                ok += 1
            fout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fout.flush()
    finally:
        if fin is not sys.stdin:
            fin.close()
        if fout is not sys.stdout:
            fout.close()
    return ok, bad
