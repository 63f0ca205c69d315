"""The served model's second reader: TF-IDF + logistic regression, blended with the encoder.

On notes written by other people the encoder and the lexical model err differently: the encoder
reads paraphrase and context, the n-grams read the exact clinical terms and abbreviations
whatever the sentence around them (measured on the hand-written set, issue 12 note: unit
macro-F1 0.705 encoder alone, 0.856 lexical alone at argmax). The served prediction is their
weighted geometric mean per head (a log-linear pool of the two calibrated distributions;
`weight` is the encoder's share, chosen on the validation split by log loss when the model is
built); needs average their probabilities. The decoding, the safety floor and the uncertainty
flag then run on the blend as they did on the encoder alone.

Serving needs numpy only: the fitted vectorizers (`inference.baseline.TfidfBaseline`, scikit-
learn, training side: `TfidfBaseline.reader`) are exported as vocabularies, IDF weights and one
weight matrix, and the transform is
reimplemented here (lower case; words `\\b\\w\\w+\\b` as 1-2-grams; `char_wb` 3-5-grams;
sublinear TF, IDF, L2 per vectorizer). A test checks it against scikit-learn on the corpus.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.encoding import META_DIM, meta_matrix, sigmoid, softmax
from inference.exceptions import ModelConfigError

LEXICAL_FILE = "lexical.npz"
FORMAT = 1
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_SPACES = re.compile(r"\s\s+")
_FLOOR = -30.0  # log-probability of a class the training data never showed (as the baseline reports it)
HEADS = ("unit", "acuity", "needs")


@dataclass(frozen=True)
class Head:
    """Columns `start:stop` of the weight matrix. `softmax`: one column per class seen in training
    (`classes`, indices into the head's labels), log-softmax over them, `_FLOOR` elsewhere; `odds`: one
    column per label, its log-odds."""

    kind: str
    size: int
    start: int
    stop: int
    classes: tuple[int, ...]


def word_terms(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


def char_wb_terms(text: str, low: int = 3, high: int = 5) -> list[str]:
    out: list[str] = []
    for word in _SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(low, high + 1):
            offset = 0
            out.append(w[offset:offset + n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset:offset + n])
            if offset == 0:  # the word is shorter than n: counted once
                break
    return out


class LexicalModel:
    def __init__(self, vocab: dict[str, tuple[list[str], np.ndarray]], weights: np.ndarray, bias: np.ndarray,
                 heads: dict[str, Head], temperatures: dict[str, float], meta_scale: float, weight: float) -> None:
        self._vocab = {name: ({t: i for i, t in enumerate(terms)}, idf) for name, (terms, idf) in vocab.items()}
        self._terms = {name: terms for name, (terms, _) in vocab.items()}
        self._offset = {"word": 0, "char": len(vocab["word"][0])}
        self.n_text = self._offset["char"] + len(vocab["char"][0])
        self.weights, self.bias, self.heads = weights, bias, heads
        self.temperatures, self.meta_scale = temperatures, meta_scale
        if not 0.0 <= weight <= 1.0:
            raise ModelConfigError(f"{LEXICAL_FILE}: the encoder's weight must be between 0 and 1, not {weight}")
        self.weight = weight

    # ------------------------------------------------------------------ files
    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / LEXICAL_FILE
        meta = {"format": FORMAT, "temperatures": self.temperatures, "meta_scale": self.meta_scale,
                "weight": self.weight, "heads": {k: [h.kind, h.size, h.start, h.stop, list(h.classes)]
                                                  for k, h in self.heads.items()},
                "word_terms": self._terms["word"], "char_terms": self._terms["char"]}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, weights=self.weights, bias=self.bias, word_idf=self._vocab["word"][1],
                                char_idf=self._vocab["char"][1], meta=np.frombuffer(json.dumps(meta).encode(),
                                                                                    dtype=np.uint8))
        return path

    @classmethod
    def load(cls, model_dir: Path) -> LexicalModel:
        path = Path(model_dir) / LEXICAL_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                weights, bias = z["weights"], z["bias"]
                word_idf, char_idf = z["word_idf"], z["char_idf"]
            if meta.get("format") != FORMAT:
                raise ModelConfigError(f"{path}: format {meta.get('format')}, this code reads {FORMAT}")
            heads = {k: Head(v[0], int(v[1]), int(v[2]), int(v[3]), tuple(int(c) for c in v[4]))
                     for k, v in meta["heads"].items()}
            vocab = {"word": (list(meta["word_terms"]), word_idf), "char": (list(meta["char_terms"]), char_idf)}
            model = cls(vocab, weights, bias, heads, {k: float(v) for k, v in meta["temperatures"].items()},
                        float(meta["meta_scale"]), float(meta["weight"]))
        except FileNotFoundError:
            raise ModelConfigError(f"{path}: missing (the model's config names it)") from None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelConfigError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
        if set(heads) != set(HEADS) or weights.shape != (model.n_text + META_DIM, len(bias)):
            raise ModelConfigError(f"{path}: heads or weight shapes do not match its vocabularies")
        return model

    # ------------------------------------------------------------------ scoring
    def _text_features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and values of one text's TF-IDF features (each vectorizer L2-normalised)."""
        idx: list[int] = []
        val: list[float] = []
        for name, terms in (("word", word_terms(text)), ("char", char_wb_terms(text))):
            index, idf = self._vocab[name]
            counts = Counter(i for i in (index.get(t) for t in terms) if i is not None)
            if not counts:
                continue
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
            x = tf * idf[cols]
            x /= np.sqrt(np.dot(x, x))
            idx.extend((cols + self._offset[name]).tolist())
            val.extend(x.tolist())
        return np.asarray(idx, dtype=np.int64), np.asarray(val, dtype=np.float64)

    def scores(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str]) -> np.ndarray:
        meta = meta_matrix(zip(ages, sexes, strict=True)).astype(np.float64) * self.meta_scale
        w_meta = self.weights[self.n_text:].astype(np.float64)
        out = meta @ w_meta + self.bias
        for i, text in enumerate(texts):
            idx, val = self._text_features(text)
            if len(idx):
                out[i] += val @ self.weights[idx].astype(np.float64)
        return out

    def logits(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str]) -> dict[str, np.ndarray]:
        """As `TfidfBaseline.logits`: log-probabilities of the class heads, log-odds of the needs."""
        z = self.scores(texts, ages, sexes)
        out: dict[str, np.ndarray] = {}
        for name, h in self.heads.items():
            cols = z[:, h.start:h.stop]
            if h.kind == "odds":
                out[name] = cols
                continue
            logp = np.full((len(z), h.size), _FLOOR)
            if len(h.classes) == 1:
                logp[:, h.classes[0]] = 0.0
            else:
                p = softmax(cols)
                logp[:, list(h.classes)] = np.log(np.clip(p, 1e-12, None))
            out[name] = logp
        return out

    def probs(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str]) -> dict[str, np.ndarray]:
        lg = self.logits(texts, ages, sexes)
        t = self.temperatures
        return {"unit": softmax(lg["unit"], t["unit"]), "acuity": softmax(lg["acuity"], t["acuity"]),
                "needs": sigmoid(lg["needs"], t["needs"])}


def blend(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray], weight: float) -> dict[str, np.ndarray]:
    """The served distribution: per class head the weighted geometric mean of the two calibrated
    distributions, renormalised (`weight`: the encoder's share); the needs' probabilities averaged."""
    out = {}
    for head in ("unit", "acuity"):
        z = weight * np.log(np.clip(encoder[head], 1e-12, None)) + (1 - weight) * np.log(
            np.clip(lexical[head], 1e-12, None))
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        out[head] = p / p.sum(axis=-1, keepdims=True)
    out["needs"] = weight * np.asarray(encoder["needs"]) + (1 - weight) * np.asarray(lexical["needs"])
    return out


WEIGHT_GRID = (1.0, 0.75, 0.5, 0.25)
TIE = 0.005  # relative log-loss difference treated as a tie


def choose_weight(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray], unit_y: np.ndarray,
                  acuity_y: np.ndarray) -> tuple[float, dict[str, float]]:
    """The encoder's share with the lowest log loss (unit + acuity) on labelled rows (the validation split)."""
    losses = {}
    rows = np.arange(len(unit_y))
    for w in WEIGHT_GRID:
        p = blend(encoder, lexical, w)
        losses[str(w)] = float(-np.log(np.clip(p["unit"][rows, unit_y], 1e-12, None)).mean()
                               - np.log(np.clip(p["acuity"][rows, acuity_y], 1e-12, None)).mean())
    lowest = min(losses.values())
    # the encoder reads the words; the lexical reader helps it: of the shares within TIE of the lowest
    # loss, the encoder keeps the largest
    best = max(w for w in WEIGHT_GRID if losses[str(w)] <= lowest * (1 + TIE))
    return best, losses
