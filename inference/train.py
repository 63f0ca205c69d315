"""`wardflow train`: fine-tune a BERT encoder with three heads, early stopping, temperatures.

Seeded end to end (data order, dropout, initialisation). Training reads `train_max_length`
tokens; the saved config tells serving to read up to `max_length` (256).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads crawl on a shared, busy CPU

import torch
from torch import nn
from tqdm.auto import tqdm

from inference.calibration import fit_temperature_sigmoid, fit_temperature_softmax
from inference.config import TriageConfig, result_settings
from inference.data import Example, by_split, fingerprint
from inference.encoding import meta_matrix, sigmoid, softmax
from inference.labels import LabelSet
from inference.model import TriageNet, load_encoder, save_model
from inference.textenc import encode, load_tokenizer, pad, pad_id_of

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    base_model: str = ""               # HF BERT directory; "" = packaged MiniLM-L6
    seed: int = 13
    epochs: int = 3
    batch_size: int = 32
    lr_encoder: float = 1e-4
    lr_head: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.06
    train_max_length: int = 128
    max_length: int = 256
    freeze_layers: int = 3             # embeddings + lowest 3 layers frozen: ~2x faster steps on CPU
    patience: int = 3                  # evaluations without improvement before stopping
    evals_per_epoch: int = 3
    time_budget_s: float = 480.0       # the training loop stops here, keeping the best weights
    threads: int = 2
    eval_batch_size: int = 64
    val_check_size: int = 250          # validation subset for the checks during training
    progress: bool = True

    def key(self) -> dict:
        return result_settings(self)


@dataclass
class Tensors:
    ids: list[list[int]]
    meta: np.ndarray
    unit: np.ndarray
    acuity: np.ndarray
    needs: np.ndarray
    examples: list[Example] = field(default_factory=list)


def tensorize(examples: Sequence[Example], tok, labels: LabelSet) -> Tensors:
    ids = encode(tok, [e.text for e in examples])
    meta = meta_matrix((e.age, e.sex) for e in examples)
    unit = np.array([labels.units.index(e.unit) for e in examples], dtype=np.int64)
    acu = np.array([labels.acuity_index(e.acuity) for e in examples], dtype=np.int64)
    needs = np.zeros((len(examples), len(labels.needs)), dtype=np.float32)
    for i, e in enumerate(examples):
        for n in e.needs:
            needs[i, labels.needs.index(n)] = 1.0
    return Tensors(ids, meta, unit, acu, needs, list(examples))


def _batch(t: Tensors, idx: Sequence[int], pad_id: int):
    input_ids, mask = pad([t.ids[i] for i in idx], pad_id)
    return (torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(t.meta[list(idx)]),
            torch.from_numpy(t.unit[list(idx)]), torch.from_numpy(t.acuity[list(idx)]),
            torch.from_numpy(t.needs[list(idx)]))



def train_step(net, opt, sched, data: Tensors, idx: Sequence[int], pad_id: int, loss_fn) -> float:
    """One optimiser step on one batch: forward, `loss_fn(u, a, n, yu, ya, yn)`, clipped backward; the loss."""
    net.train()
    ids, mask, meta, yu, ya, yn = _batch(data, idx, pad_id)
    u, a, n = net(ids, mask, meta)
    loss = loss_fn(u, a, n, yu, ya, yn)
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(loss.item())

def train_batches(t: Tensors, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within pools of 50 batches, shuffle batches."""
    order = list(range(len(t.ids)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for s in range(0, len(order), pool):
        chunk = sorted(order[s:s + pool], key=lambda i: len(t.ids[i]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict_logits(net: TriageNet, t: Tensors, pad_id: int, batch_size: int = 64,
                   progress: bool = False, desc: str = "predict") -> dict[str, np.ndarray]:
    net.eval()
    order = sorted(range(len(t.ids)), key=lambda i: len(t.ids[i]))
    outs = {"unit": np.zeros((len(order), net.unit_head.out_features), np.float32),
            "acuity": np.zeros((len(order), net.acuity_head.out_features), np.float32),
            "needs": np.zeros((len(order), net.n_needs), np.float32)}
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(chunks, desc=desc, disable=not progress, leave=False):
        ids, mask, meta, *_ = _batch(t, idx, pad_id)
        u, a, n = net(ids, mask, meta)
        outs["unit"][idx], outs["acuity"][idx], outs["needs"][idx] = u.numpy(), a.numpy(), n.numpy()
    return outs


def macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    f1s = []
    for c in range(n):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def val_score(logits: dict[str, np.ndarray], t: Tensors) -> dict[str, float]:
    nu, na = logits["unit"].shape[1], logits["acuity"].shape[1]
    s = {"unit_macro_f1": macro_f1(t.unit, logits["unit"].argmax(1), nu),
         "acuity_macro_f1": macro_f1(t.acuity, logits["acuity"].argmax(1), na)}
    if t.needs.shape[1]:
        pred = logits["needs"] > 0
        tp = float((pred & (t.needs > 0.5)).sum())
        s["needs_micro_f1"] = 2 * tp / max(float(pred.sum() + (t.needs > 0.5).sum()), 1.0)
    else:
        s["needs_micro_f1"] = 1.0
    s["score"] = (s["unit_macro_f1"] + s["acuity_macro_f1"] + 0.5 * s["needs_micro_f1"]) / 2.5
    return s


def fit_temperatures(logits: dict[str, np.ndarray], t: Tensors) -> dict[str, float]:
    return {"unit": fit_temperature_softmax(logits["unit"], t.unit),
            "acuity": fit_temperature_softmax(logits["acuity"], t.acuity),
            "needs": fit_temperature_sigmoid(logits["needs"], t.needs)}


def _next_eval(step: int, total: int, settings: TrainSettings) -> int:
    """Validation checks at evenly spaced points of the (planned) schedule, from its first third."""
    n = max(1, settings.evals_per_epoch * settings.epochs)
    points = [max(1, round(total * (k + 1) / n)) for k in range(n)]
    points = [p for p in points if p >= total // 3] or [total]
    return next((p for p in points if p > step), total)


def version_id(data_fp: str, settings: TrainSettings) -> str:
    h = hashlib.sha256(json.dumps({"data": data_fp, "settings": settings.key()}, sort_keys=True).encode())
    return "wf-triage-" + h.hexdigest()[:12]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def train(examples: Sequence[Example], labels: LabelSet, out_dir: Path, settings: TrainSettings) -> TriageConfig:
    """Train, pick the best validation checkpoint, fit temperatures, save to `out_dir`."""
    from inference.model import default_base_model

    torch.set_num_threads(max(1, settings.threads))
    _set_seed(settings.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = Path(settings.base_model) if settings.base_model else default_base_model()
    encoder, hf_tok = load_encoder(base)
    hf_tok.save_pretrained(str(out_dir / "_tok"))
    tok_json = out_dir / "_tok" / "tokenizer.json"
    tok = load_tokenizer(tok_json, settings.train_max_length)
    pad_id = pad_id_of(tok)
    splits = by_split(examples)
    data_fp = fingerprint(examples, labels)
    tr, va = tensorize(splits["train"], tok, labels), tensorize(splits["validation"], tok, labels)
    log.info("training on %d examples, validating on %d (base %s)", len(tr.ids), len(va.ids), base)

    net = TriageNet(encoder, len(labels.units), len(labels.acuities), len(labels.needs))
    net.freeze_lower(settings.freeze_layers)
    enc_params = [p for p in net.encoder.parameters() if p.requires_grad]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": settings.lr_encoder},
                             {"params": head_params, "lr": settings.lr_head}], weight_decay=settings.weight_decay)
    rng = random.Random(settings.seed)
    steps_per_epoch = math.ceil(len(tr.ids) / settings.batch_size)
    full_total = max(1, steps_per_epoch * settings.epochs)
    plan = {"total": full_total}   # re-planned to fit the time budget (the LR decays to the planned end)
    warm = max(1, int(plan["total"] * settings.warmup))

    def lr_factor(s: int) -> float:
        total = plan["total"]
        return min(1.0, (s + 1) / warm) * max(0.02, 1 - max(0, s - warm) / max(1, total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    ce, bce = nn.CrossEntropyLoss(), nn.BCEWithLogitsLoss(reduction="sum")

    def loss_fn(u, a, n, yu, ya, yn):
        return ce(u, yu) + ce(a, ya) + (bce(n, yn) / len(yu) if yn.shape[1] else 0.0)
    # intermediate checks on a fixed validation subset (cheap); the final fit uses all of it
    sub = sorted(random.Random(settings.seed + 1).sample(range(len(va.ids)), min(len(va.ids), settings.val_check_size)))
    va_check = Tensors([va.ids[i] for i in sub], va.meta[sub], va.unit[sub], va.acuity[sub], va.needs[sub])

    best, best_state, bad, step, history = -1.0, None, 0, 0, []
    t0 = time.monotonic()
    stop_reason = "epochs"
    next_eval = _next_eval(0, plan["total"], settings)
    bar = tqdm(total=plan["total"], desc="train", disable=not settings.progress, unit="step")
    for epoch in range(settings.epochs):
        for idx in train_batches(tr, settings.batch_size, rng):
            loss = train_step(net, opt, sched, tr, idx, pad_id, loss_fn)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", best=f"{max(best, 0):.3f}")
            elapsed = time.monotonic() - t0
            if step == 8 or (step > 8 and step % 25 == 0):
                # the whole schedule must fit the budget: steps so far at this pace, a margin for checks
                fit = int(step * settings.time_budget_s * 0.9 / max(elapsed, 1e-6))
                fit = min(max(step + 1, fit), full_total)
                if fit != plan["total"]:
                    plan["total"] = fit
                    bar.total = fit
                    next_eval = _next_eval(step, fit, settings)
            out_of_time = elapsed > settings.time_budget_s
            if step >= next_eval or step >= plan["total"] or out_of_time:
                next_eval = _next_eval(step, plan["total"], settings)
                s = val_score(predict_logits(net, va_check, pad_id, settings.eval_batch_size), va_check)
                s.update(step=step, epoch=epoch + 1, elapsed_s=round(time.monotonic() - t0, 1))
                history.append(s)
                if s["score"] > best + 1e-4:
                    best, best_state, bad = s["score"], copy.deepcopy(net.state_dict()), 0
                else:
                    bad += 1
                log.info("step %d/%d val unit F1 %.3f acuity F1 %.3f needs F1 %.3f", step, plan["total"],
                         s["unit_macro_f1"], s["acuity_macro_f1"], s["needs_micro_f1"])
                if bad >= settings.patience:
                    stop_reason = "early_stopping"
                    break
            if out_of_time:
                stop_reason = "time_budget"
                break
            if step >= plan["total"]:
                stop_reason = "schedule_done"
                break
        if stop_reason != "epochs":
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    val_logits = predict_logits(net, va, pad_id, settings.eval_batch_size)
    temps = fit_temperatures(val_logits, va)
    cfg = TriageConfig(labels=labels, temperatures=temps, max_length=settings.max_length,
                       train_max_length=settings.train_max_length, model_version=version_id(data_fp, settings),
                       data_fingerprint=data_fp, base_model=str(base),
                       metrics={"validation": val_score(val_logits, va), "history": history, "stop_reason": stop_reason,
                                "train_seconds": round(time.monotonic() - t0, 1), "steps": step,
                                "full_schedule_steps": full_total,
                                "n_train": len(tr.ids), "n_validation": len(va.ids), "settings": settings.key()})
    save_model(net, cfg, tok_json, out_dir)
    for p in (out_dir / "_tok").iterdir():
        p.unlink()
    (out_dir / "_tok").rmdir()
    log.info("saved %s (%s, stop: %s, temperatures %s)", out_dir, cfg.model_version, stop_reason,
             {k: round(v, 3) for k, v in temps.items()})
    return cfg


def calibrated(logits: dict[str, np.ndarray], temps: dict[str, float]) -> dict[str, np.ndarray]:
    return {"unit": softmax(logits["unit"], temps["unit"]), "acuity": softmax(logits["acuity"], temps["acuity"]),
            "needs": sigmoid(logits["needs"], temps["needs"])}
