"""Tokenization shared by training, export and serving: `tokenizers` + numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.exceptions import ModelConfigError, ModelNotFoundError


def load_tokenizer(path: Path, max_length: int):
    """The fast tokenizer from `tokenizer.json`, truncating to `max_length`, never padding."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise ModelNotFoundError(f"tokenizer file {path} does not exist")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception
        raise ModelConfigError(f"{path}: cannot load tokenizer ({type(exc).__name__})") from None
    tok.no_padding()
    tok.enable_truncation(max_length=int(max_length))
    return tok


def encode(tok, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(list(texts))]


def pad(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence: (input_ids, attention_mask), both int64."""
    n = len(ids)
    width = max((len(x) for x in ids), default=1) or 1
    out = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, x in enumerate(ids):
        out[i, :len(x)] = x
        mask[i, :len(x)] = 1
    return out, mask


def pad_id_of(tok) -> int:
    for name in ("[PAD]", "<pad>"):
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    return 0


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, longest first); padding only to each
    batch's own longest."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
