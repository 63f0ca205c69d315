"""`wardflow export`: PyTorch -> ONNX (dynamic batch and sequence), checked, optimized, int8.

1. export fp32 ONNX with dynamic `batch` and `sequence` axes (inputs input_ids, attention_mask,
   meta; outputs unit_logits, acuity_logits, need_logits);
2. check it against PyTorch on real inputs (several batch sizes and lengths); a difference
   beyond the tolerance raises `ExportMismatchError` naming the output;
3. onnxruntime transformer graph optimizations (attention / layer-norm / GELU fusion), checked again;
4. int8 dynamic quantization of the optimized graph;
5. refit the temperatures on the int8 model (validation set) and measure its macro-F1 change
   against fp32 on the test set.

Result: `<out>/onnx/` (fp32, optimized) and `<out>/int8/` (the serving directory), each with
model.onnx, tokenizer.json and triage_config.json.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.config import TriageConfig, load_config
from inference.data import Example, by_split
from inference.encoding import meta_matrix
from inference.exceptions import ExportError, ExportMismatchError
from inference.serving import INPUT_NAMES, MODEL_FILE, OUTPUT_NAMES, make_session, run_logits
from inference.textenc import encode, load_tokenizer, pad, pad_id_of

log = logging.getLogger(__name__)

FP32_TOLERANCE = 2e-3      # max abs logit difference, fp32 ONNX (optimized or not) vs PyTorch
_NAME_OF = {"unit": "unit_logits", "acuity": "acuity_logits", "needs": "need_logits"}

_DEFAULT_TEXTS = (
    "72M c/o central chest pain radiating to L arm, sweaty. ECG ST elevation II III aVF. HR 98 BP 150/90",
    "twisted ankle playing football, able to weight bear, xray no fracture",
    "I've had a cough with green phlegm for 5 days and I'm out of breath",
    "Dear Doctor, thank you for seeing this 8 year old boy with RIF pain and vomiting since yesterday.",
    "33/40 pregnant, headache and flashing lights, BP 168/112, 3+ protein",
    "no chest pain, MRSA screen negative, denies SI",
)


def sample_inputs(tok, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str],
                  batch_sizes: Sequence[int] = (1, 3, 8, 16)) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Real inputs of several batch sizes and sequence lengths."""
    ids = encode(tok, texts)
    meta = meta_matrix(zip(ages, sexes, strict=True))
    pid = pad_id_of(tok)
    out, start = [], 0
    for bs in batch_sizes:
        idx = [(start + i) % len(ids) for i in range(bs)]
        start += bs
        x, m = pad([ids[i] for i in idx], pid)
        out.append((x, m, np.ascontiguousarray(meta[idx])))
    return out


def torch_reference(net, batches) -> list[dict[str, np.ndarray]]:
    import torch

    refs = []
    with torch.no_grad():
        for x, m, meta in batches:
            u, a, n = net(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(meta))
            refs.append({"unit": u.numpy(), "acuity": a.numpy(), "needs": n.numpy()})
    return refs


def validate_onnx(onnx_path: Path, batches, references, tolerance: float = FP32_TOLERANCE,
                  threads: int = 2) -> dict[str, float]:
    """Max abs difference per output between the ONNX graph and the reference; raises on excess."""
    try:
        sess = make_session(onnx_path, threads, ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
        raise ExportError(f"onnxruntime cannot load {onnx_path}: {type(exc).__name__}: {exc}") from None
    worst = {k: 0.0 for k in _NAME_OF}
    for (x, m, meta), ref in zip(batches, references, strict=True):
        got = run_logits(sess, x, m, meta)
        for k in _NAME_OF:
            if got[k].shape != ref[k].shape:
                raise ExportMismatchError(_NAME_OF[k], float("inf"), tolerance,
                                          f"shape {got[k].shape} != {ref[k].shape} at batch {x.shape[0]}")
            d = float(np.max(np.abs(got[k] - ref[k]))) if ref[k].size else 0.0
            worst[k] = max(worst[k], d)
            if not np.isfinite(d) or d > tolerance:
                raise ExportMismatchError(_NAME_OF[k], d, tolerance,
                                          f"batch {x.shape[0]} x {x.shape[1]} tokens, {onnx_path.name}")
    return {_NAME_OF[k]: v for k, v in worst.items()}


def export_onnx(net, onnx_path: Path, example) -> None:
    import torch

    x, m, meta = (torch.from_numpy(a) for a in example)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "meta": {0: "batch"}, "unit_logits": {0: "batch"}, "acuity_logits": {0: "batch"},
            "need_logits": {0: "batch"}}
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    try:
        with warnings.catch_warnings():   # tracer notes about constant shapes checks; the graph is validated
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (x, m, meta), str(onnx_path), input_names=list(INPUT_NAMES),
                              output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=17,
                              do_constant_folding=True, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; one clear error
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None


def optimize(onnx_in: Path, onnx_out: Path, num_heads: int, hidden_size: int) -> None:
    """onnxruntime's transformer optimizer (BERT fusions), on CPU, kept in fp32."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = [logging.getLogger(n) for n in ("onnx_model", "fusion_base", "fusion_utils", "onnx_model_bert",
                                            "fusion_skiplayernorm", "fusion_attention", "fusion_embedlayer")]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        opt = optimize_model(str(onnx_in), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                             opt_level=1, use_gpu=False)
        opt.save_model_to_file(str(onnx_out))
    except Exception as exc:  # noqa: BLE001 - the optimizer raises many kinds; one clear error
        raise ExportError(f"transformer graph optimization failed: {type(exc).__name__}: {exc}") from None
    log.info("graph fusions: %s", {k: v for k, v in (opt.get_fused_operator_statistics() or {}).items() if v})


def quantize_int8(onnx_in: Path, onnx_out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        import onnx

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.WARNING)          # the quantizer logs every tensor at INFO on the root logger
        try:
            # per-channel weights and reduced range: measured -0.6 vs -2.5 macro-F1 points (unit head) for
            # per-tensor on the default model; reduce_range avoids u8s8 saturation on CPUs without VNNI
            quantize_dynamic(str(onnx_in), str(onnx_out), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        finally:
            root.setLevel(level)
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many kinds; one clear error
        raise ExportError(f"int8 dynamic quantization failed: {type(exc).__name__}: {exc}") from None


def _write_dir(dst: Path, onnx_file: Path, src_model_dir: Path, cfg: TriageConfig) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    if onnx_file.resolve() != (dst / MODEL_FILE).resolve():
        shutil.copyfile(onnx_file, dst / MODEL_FILE)
    shutil.copyfile(src_model_dir / "tokenizer.json", dst / "tokenizer.json")
    cfg.onnx_file = MODEL_FILE
    cfg.save(dst)


def export_model(model_dir: Path, out_dir: Path, examples: Sequence[Example] = (), *, threads: int = 2,
                 tolerance: float = FP32_TOLERANCE, progress: bool = True) -> dict:
    """The whole export; returns a summary (differences, int8 temperatures and metric changes)."""
    import torch

    from inference.model import load_model

    torch.set_num_threads(max(1, threads))
    t0 = time.monotonic()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    net, cfg = load_model(model_dir)
    # the classic attention pattern, which onnxruntime's optimizer fuses into Attention ops
    with contextlib.suppress(AttributeError, ValueError):
        net.encoder.set_attn_implementation("eager")
    tok = load_tokenizer(model_dir / "tokenizer.json", cfg.max_length)
    splits = by_split(examples) if examples else {"validation": [], "test": []}
    probe = (splits["test"] or splits["validation"])[:24]
    if probe:
        batches = sample_inputs(tok, [e.text for e in probe], [e.age for e in probe], [e.sex for e in probe])
    else:
        batches = sample_inputs(tok, _DEFAULT_TEXTS, [72, 25, 45, 8, 31, 50], ["M", "F", "X", "M", "F", "F"])
    refs = torch_reference(net, batches)
    work = out_dir / "_work"
    work.mkdir(parents=True, exist_ok=True)
    raw, opt, q = work / "raw.onnx", work / "opt.onnx", work / "int8.onnx"
    steps = [("export", None), ("check", None), ("optimize", None), ("check optimized", None), ("quantize", None)]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(steps) + 1, desc="export", disable=not progress)
    export_onnx(net, raw, batches[1])
    bar.update(1)
    diffs_raw = validate_onnx(raw, batches, refs, tolerance, threads)
    bar.update(1)
    enc_cfg = net.encoder.config
    optimize(raw, opt, int(enc_cfg.num_attention_heads), int(enc_cfg.hidden_size))
    bar.update(1)
    diffs_opt = validate_onnx(opt, batches, refs, tolerance, threads)
    bar.update(1)
    quantize_int8(opt, q)
    bar.update(1)
    diffs_int8 = validate_onnx(q, batches, refs, tolerance=float("inf"), threads=threads)

    fp32_cfg = TriageConfig.from_dict(cfg.to_dict())
    fp32_cfg.metrics = {**cfg.metrics, "export": {"max_abs_diff_raw": diffs_raw, "max_abs_diff_optimized": diffs_opt}}
    _write_dir(out_dir / "onnx", opt, model_dir, fp32_cfg)
    int8_cfg = TriageConfig.from_dict(cfg.to_dict())
    int8_cfg.precision = "int8"
    summary = {"max_abs_diff_raw": diffs_raw, "max_abs_diff_optimized": diffs_opt, "max_abs_diff_int8": diffs_int8,
               "tolerance": tolerance}
    if splits["validation"]:
        summary.update(refit_int8(out_dir / "onnx", q, splits, int8_cfg, threads))
    int8_cfg.metrics = {**cfg.metrics, "export": summary}
    _write_dir(out_dir / "int8", q, model_dir, int8_cfg)
    bar.update(1)
    bar.close()
    shutil.rmtree(work, ignore_errors=True)
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["sizes_mb"] = {d: round((out_dir / d / MODEL_FILE).stat().st_size / 2 ** 20, 1) for d in ("onnx", "int8")}
    log.info("export done: %s", summary)
    return summary


def refit_int8(fp32_dir: Path, int8_path: Path, splits: dict[str, list[Example]], int8_cfg: TriageConfig,
               threads: int) -> dict:
    """Refit temperatures on the int8 model's validation logits; macro-F1 change vs fp32 on test."""
    from inference.calibration import fit_temperature_sigmoid, fit_temperature_softmax
    from inference.serving import OnnxTriageModel
    from inference.train import macro_f1

    labels = int8_cfg.labels
    fp32 = OnnxTriageModel.load(fp32_dir, threads=threads, providers=["CPUExecutionProvider"])
    tok = fp32.tokenizer
    sess = make_session(int8_path, threads, ["CPUExecutionProvider"])
    int8 = OnnxTriageModel(sess, tok, int8_cfg)

    def logits(model, exs):
        return model.logits([e.text for e in exs], [e.age for e in exs], [e.sex for e in exs])

    val = splits["validation"]
    lv = logits(int8, val)
    yu = np.array([labels.units.index(e.unit) for e in val])
    ya = np.array([labels.acuity_index(e.acuity) for e in val])
    yn = np.array([[float(n in e.needs) for n in labels.needs] for e in val], dtype=np.float64).reshape(len(val), -1)
    int8_cfg.temperatures = {"unit": fit_temperature_softmax(lv["unit"], yu),
                             "acuity": fit_temperature_softmax(lv["acuity"], ya),
                             "needs": fit_temperature_sigmoid(lv["needs"], yn)}
    out = {"int8_temperatures": int8_cfg.temperatures, "fp32_temperatures": fp32.config.temperatures}
    test = splits["test"] or val
    tu = np.array([labels.units.index(e.unit) for e in test])
    ta = np.array([labels.acuity_index(e.acuity) for e in test])
    for name, model in (("fp32", fp32), ("int8", int8)):
        lt = logits(model, test)
        out[f"{name}_test"] = {"unit_macro_f1": macro_f1(tu, lt["unit"].argmax(1), len(labels.units)),
                               "acuity_macro_f1": macro_f1(ta, lt["acuity"].argmax(1), len(labels.acuities))}
    out["int8_change_points"] = {k: round(100 * (out["int8_test"][k] - out["fp32_test"][k]), 2)
                                 for k in out["fp32_test"]}
    return out


def load_examples_for(model_dir: Path) -> list[Example]:
    """The validation and test splits saved beside a trained model (`<model>/data/*.jsonl`)."""
    from inference.data import load_files

    data = Path(model_dir) / "data"
    files = [data / f"{s}.jsonl" for s in ("validation", "test") if (data / f"{s}.jsonl").exists()]
    if not files:
        return []
    exs, _ = load_files(files, load_config(model_dir).labels, require_train=False)
    return exs
