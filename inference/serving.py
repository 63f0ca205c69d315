"""Serving: the exported ONNX triage model behind `interface.TriageModel`.

Imports onnxruntime, tokenizers and numpy only (plus this package's standard-library and
numpy modules, and pydantic + PyYAML for the triage policy); torch and transformers are never
imported on this path (a test checks). Every prediction goes through `inference.decoding`
(joint cost-sensitive decoding and the ESI safety floor) before it is returned.

Batch API: requests in, predictions out, aligned. Requests are validated one by one (a bad
age, sex or empty text fails that request alone), tokenized, sorted by length into buckets
and padded only to each bucket's longest sequence. CUDA when the provider is present, CPU
otherwise; intra-op threads from the caller (settings.inference_threads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.config import TriageConfig, load_config
from inference.decoding import check_policy, decode
from inference.encoding import meta_vector, sigmoid, softmax
from inference.exceptions import ModelConfigError, ModelNotFoundError
from inference.interface import PredictionFailed, TriagePrediction, TriageRequest, validate_request
from inference.lexical import LexicalModel, blend
from inference.policy import TriagePolicy, load_policy
from inference.signals import Signals, parse_signals
from inference.textenc import length_buckets, load_tokenizer, pad, pad_id_of

INPUT_NAMES = ("input_ids", "attention_mask", "meta")
OUTPUT_NAMES = ("unit_logits", "acuity_logits", "need_logits")
MODEL_FILE = "model.onnx"


def choose_providers(providers: Sequence[str] | None = None) -> list[str]:
    available = ort.get_available_providers()
    if providers:
        wanted = [p for p in providers if p in available]
        if not wanted:
            raise ModelConfigError(f"none of the execution providers {list(providers)} is available "
                                   f"(available: {available})")
        return wanted
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(onnx_path: Path, threads: int = 2, providers: Sequence[str] | None = None, *,
                 spin: bool = False) -> ort.InferenceSession:
    """An onnxruntime session. `spin=False`: idle intra-op threads sleep instead of spinning, which
    measured ~20% more throughput on a busy shared 2-core machine (the worker's asyncio loop and
    Kafka clients share those cores); set True on a dedicated inference host."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=choose_providers(providers))


def run_logits(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, meta: np.ndarray) -> dict[str, np.ndarray]:
    u, a, n = session.run(list(OUTPUT_NAMES), {"input_ids": ids, "attention_mask": mask, "meta": meta})
    return {"unit": u, "acuity": a, "needs": n}


class OnnxTriageModel:
    """A calibrated triage model served from an exported directory (model.onnx, tokenizer.json,
    triage_config.json)."""

    def __init__(self, session: ort.InferenceSession, tokenizer, config: TriageConfig, *,
                 uncertainty_threshold: float = 0.6, batch_size: int = 32, model_dir: Path | None = None,
                 policy: TriagePolicy | None = None) -> None:
        self.session, self.tokenizer, self.config = session, tokenizer, config
        self.policy = policy or load_policy()
        check_policy(self.policy, config.labels)
        self.uncertainty_threshold = float(uncertainty_threshold)
        self.batch_size = max(1, int(batch_size))
        self.model_dir = model_dir
        self.model_version = config.model_version
        self.pad_id = pad_id_of(tokenizer)
        self.providers = session.get_providers()
        labels = config.labels
        self._units, self._needs = labels.units, labels.needs
        self._acuity_keys = tuple(str(a) for a in labels.acuities)
        self.lexical: LexicalModel | None = None
        if config.lexical_file and model_dir is not None:
            self.lexical = LexicalModel.load(model_dir)

    @classmethod
    def load(cls, model_dir: Path, *, threads: int = 2, uncertainty_threshold: float = 0.6,
             providers: Sequence[str] | None = None, batch_size: int = 32,
             policy: TriagePolicy | Path | None = None) -> OnnxTriageModel:
        """`policy`: the triage policy (decoding costs, safety thresholds) or its YAML path; default the
        packaged `inference/triage_policy.yaml`."""
        model_dir = Path(model_dir)
        cfg = load_config(model_dir)
        onnx_path = model_dir / (cfg.onnx_file or MODEL_FILE)
        if not onnx_path.exists():
            raise ModelNotFoundError(f"{model_dir}: missing {onnx_path.name} (run `wardflow export`)")
        if not 0.0 <= float(uncertainty_threshold) <= 1.0:
            raise ModelConfigError("uncertainty_threshold must be between 0 and 1")
        tok = load_tokenizer(model_dir / "tokenizer.json", cfg.max_length)
        pol = policy if isinstance(policy, TriagePolicy) else load_policy(Path(policy) if policy else None)
        return cls(make_session(onnx_path, threads, providers), tok, cfg,
                   uncertainty_threshold=uncertainty_threshold, batch_size=batch_size, model_dir=model_dir,
                   policy=pol)

    # ------------------------------------------------------------------ raw logits
    def tokenize(self, texts: Sequence[str]) -> list[list[int] | None]:
        """Token ids per text; None where the tokenizer fails on that text alone."""
        try:
            return [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        except Exception:  # noqa: BLE001 - isolate the failing text(s)
            out: list[list[int] | None] = []
            for t in texts:
                try:
                    out.append(self.tokenizer.encode(t).ids)
                except Exception:  # noqa: BLE001 - this text alone fails (tokenizers raises plain Exception)
                    out.append(None)
            return out

    def logits_from_ids(self, ids: Sequence[Sequence[int]], meta: np.ndarray, *, bucket: bool = True,
                        batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Logits for tokenized inputs, in input order. `bucket=False` pads each batch to its longest
        in arrival order (what a naive server does)."""
        bs = batch_size or self.batch_size
        n = len(ids)
        groups = (length_buckets([len(x) for x in ids], bs) if bucket
                  else [list(range(i, min(i + bs, n))) for i in range(0, n, bs)])
        out: dict[str, np.ndarray] = {}
        for idx in groups:
            x, m = pad([ids[i] for i in idx], self.pad_id)
            res = run_logits(self.session, x, m, np.ascontiguousarray(meta[idx], dtype=np.float32))
            for k, v in res.items():
                if k not in out:
                    out[k] = np.zeros((n, v.shape[1]), dtype=np.float32)
                out[k][idx] = v
        return out

    def logits(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str], **kw) -> dict[str, np.ndarray]:
        tokenized = self.tokenize(texts)
        ids = [x for x in tokenized if x is not None]
        if len(ids) != len(tokenized):
            raise ModelConfigError("the tokenizer failed on at least one text")
        meta = np.asarray([meta_vector(a, s) for a, s in zip(ages, sexes, strict=True)], dtype=np.float32)
        return self.logits_from_ids(ids, meta, **kw)

    def calibrate(self, logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The encoder's calibrated probabilities (alone: see `served_probs` for what is served)."""
        t = self.config.temperatures
        return {"unit": softmax(logits["unit"], t["unit"]), "acuity": softmax(logits["acuity"], t["acuity"]),
                "needs": sigmoid(logits["needs"], t["needs"])}

    def served_probs(self, encoder: dict[str, np.ndarray], texts: Sequence[str], ages: Sequence[float],
                     sexes: Sequence[str], signals: Sequence[Signals] | None = None) -> dict[str, np.ndarray]:
        """What the decoding reads: the encoder's calibrated probabilities, blended with the lexical
        reader's when the model has one (`inference.lexical`; `signals`: the texts' signs, parsed once)."""
        if self.lexical is None:
            return encoder
        return blend(encoder, self.lexical.probs(texts, ages, sexes, signals), self.lexical.head_weights)

    def probabilities(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str]) -> dict[str, np.ndarray]:
        """Served probabilities for whole texts (evaluation): encoder, then the blend."""
        return self.served_probs(self.calibrate(self.logits(texts, ages, sexes)), texts, ages, sexes)

    # ------------------------------------------------------------------ the TriageModel API
    def predict_batch(self, requests: Sequence[TriageRequest]) -> list[TriagePrediction | PredictionFailed]:
        results: list[TriagePrediction | PredictionFailed | None] = [None] * len(requests)
        ok: list[int] = []
        for i, req in enumerate(requests):
            err = validate_request(req)
            if err is not None:
                results[i] = err
            else:
                ok.append(i)
        ids_all = self.tokenize([requests[i].text for i in ok]) if ok else []
        good: list[int] = []
        ids: list[list[int]] = []
        signals: dict[int, Signals] = {}  # each text's measured signs, parsed once for the reader and the floors
        for i, x in zip(ok, ids_all, strict=True):
            if x is None or len(x) == 0:
                results[i] = PredictionFailed(requests[i].id, "tokenizer_error", "field 'text' could not be tokenized")
                continue
            try:
                signals[i] = parse_signals(requests[i].text)
            except Exception:  # noqa: BLE001 - never an unchecked prediction; this request fails alone
                results[i] = PredictionFailed(requests[i].id, "safety_check_failed",
                                              "the safety layer could not read field 'text'")
                continue
            good.append(i)
            ids.append(x)
        if good:
            meta = np.asarray([meta_vector(requests[i].age, requests[i].sex) for i in good], dtype=np.float32)
            probs = self._probs_isolating_failures(ids, meta, good, requests, results)
            if self.lexical is not None:
                try:
                    probs = self.served_probs(probs, [requests[i].text for i in good],
                                              [float(requests[i].age) for i in good], [requests[i].sex for i in good],
                                              [signals[i] for i in good])
                except Exception:  # noqa: BLE001 - never served without the reader the model was validated with
                    for i in good:
                        if results[i] is None:
                            results[i] = PredictionFailed(requests[i].id, "inference_error",
                                                          "the lexical reader could not score field 'text'")
            for j, i in enumerate(good):
                if results[i] is None:
                    try:
                        results[i] = self._prediction(requests[i], {k: v[j] for k, v in probs.items()},
                                                      signals[i])
                    except Exception:  # noqa: BLE001 - never an unchecked prediction; this request fails alone
                        results[i] = PredictionFailed(requests[i].id, "safety_check_failed",
                                                      "the safety layer could not read field 'text'")
        done = [r for r in results if r is not None]
        if len(done) != len(requests):  # every branch above answers its request
            raise RuntimeError("a triage request was left without a result")
        return done

    def _probs_isolating_failures(self, ids, meta, good, requests, results) -> dict[str, np.ndarray]:
        try:
            return self.calibrate(self.logits_from_ids(ids, meta))
        except Exception:  # noqa: BLE001 - retry one by one so a single bad input fails alone
            parts: dict[str, list[np.ndarray]] = {}
            for j, i in enumerate(good):
                try:
                    p = self.calibrate(self.logits_from_ids([ids[j]], meta[j:j + 1]))
                except Exception:  # noqa: BLE001 - this request alone fails, reported as inference_error
                    results[i] = PredictionFailed(requests[i].id, "inference_error",
                                                  "the model could not score this request (field 'text')")
                    p = {"unit": np.full((1, len(self._units)), np.nan),
                         "acuity": np.full((1, len(self._acuity_keys)), np.nan),
                         "needs": np.full((1, len(self._needs)), np.nan)}
                for k, v in p.items():
                    parts.setdefault(k, []).append(v)
            return {k: np.concatenate(v, axis=0) for k, v in parts.items()}

    def _prediction(self, req: TriageRequest, p: dict[str, np.ndarray], signals: Signals) -> TriagePrediction:
        """Model probabilities -> the decoded, safety-checked prediction (`inference.decoding`)."""
        up, ap, npb = p["unit"], p["acuity"], p["needs"]
        unit_probs = {u: round(float(x), 6) for u, x in zip(self._units, up, strict=True)}
        acuity_probs = {a: round(float(x), 6) for a, x in zip(self._acuity_keys, ap, strict=True)}
        need_probs = {n: round(float(x), 6) for n, x in zip(self._needs, npb, strict=True)}
        d = decode(up.tolist(), ap.tolist(), npb.tolist(), self.config.labels, age=float(req.age), text=req.text,
                   policy=self.policy, threshold=self.uncertainty_threshold,
                   need_threshold=self.config.need_threshold, signals=signals)
        return TriagePrediction(id=req.id, target_unit=d.unit, unit_probs=unit_probs, acuity=d.acuity,
                                acuity_probs=acuity_probs, needs=d.needs, need_probs=need_probs,
                                uncertain=d.uncertain, model_version=self.model_version, reasons=d.reasons)
