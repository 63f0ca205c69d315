"""The served model's second reader: TF-IDF + logistic regression, blended with the encoder.

On notes written by other people the encoder and the lexical model err differently: the encoder
reads paraphrase and context, the n-grams read the exact clinical terms and abbreviations
whatever the sentence around them (measured on the hand-written set, issue 12 note: unit
macro-F1 0.705 encoder alone, 0.856 lexical alone at argmax). The served prediction is their
weighted geometric mean per head (a log-linear pool of the two calibrated distributions; the
encoder's share is chosen per head on the validation split by log loss when the model is built:
`weight` for the unit and the needs, `acuity_weight` for the acuity); needs average their
probabilities. The decoding, the safety floor and the uncertainty
flag then run on the blend as they did on the encoder alone.

Serving needs numpy only: the fitted vectorizers (`inference.baseline.TfidfBaseline`, scikit-
learn, training side: `TfidfBaseline.reader`) are exported as vocabularies, IDF weights and one
weight matrix, and the transform is
reimplemented here (lower case; words `\\b\\w\\w+\\b` as 1-2-grams; `char_wb` 3-5-grams;
sublinear TF, IDF, L2 per vectorizer). A test checks it against scikit-learn on the corpus.

Format 2 adds the measured signs in bands (`inference.sign_features`, scaled by `sign_scale`) as
the last rows of the weight matrix; only the acuity head has weights there. Format 1 files (no
sign bands) still load.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.encoding import META_DIM, meta_matrix, sigmoid, softmax
from inference.exceptions import ModelConfigError
from inference.sign_features import BANDS, SIGN_DIM, sign_matrix
from inference.signals import Signals

LEXICAL_FILE = "lexical.npz"
FORMAT = 2
READS_FORMATS = (1, 2)  # 1: no sign bands
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


def _band_spec() -> list[list]:
    """The sign bands' definition as a reader file stores it (JSON: name, edges)."""
    return [[name, list(edges)] for name, edges in BANDS]


class LexicalModel:
    def __init__(self, vocab: dict[str, tuple[list[str], np.ndarray]], weights: np.ndarray, bias: np.ndarray,
                 heads: dict[str, Head], temperatures: dict[str, float], meta_scale: float, weight: float, *,
                 sign_scale: float = 0.0, acuity_weight: float | None = None) -> None:
        self._vocab = {name: ({t: i for i, t in enumerate(terms)}, idf) for name, (terms, idf) in vocab.items()}
        self._terms = {name: terms for name, (terms, _) in vocab.items()}
        self._offset = {"word": 0, "char": len(vocab["word"][0])}
        self.n_text = self._offset["char"] + len(vocab["char"][0])
        self.weights, self.bias, self.heads = weights, bias, heads
        self.temperatures, self.meta_scale = temperatures, meta_scale
        if sign_scale < 0:
            raise ModelConfigError(f"{LEXICAL_FILE}: sign_scale must be 0 (no sign bands) or more, not {sign_scale}")
        self.sign_scale = float(sign_scale)
        self.n_features = self.n_text + META_DIM + (SIGN_DIM if self.sign_scale else 0)
        if not 0.0 <= weight <= 1.0:
            raise ModelConfigError(f"{LEXICAL_FILE}: the encoder's weight must be between 0 and 1, not {weight}")
        self.weight = weight
        if acuity_weight is not None and not 0.0 <= acuity_weight <= 1.0:
            raise ModelConfigError(f"{LEXICAL_FILE}: the encoder's acuity weight must be between 0 and 1, "
                                   f"not {acuity_weight}")
        self.acuity_weight = weight if acuity_weight is None else acuity_weight

    @property
    def head_weights(self) -> dict[str, float]:
        """The encoder's share per head: `weight` for the unit and the needs, `acuity_weight` for the acuity."""
        return {"unit": self.weight, "acuity": self.acuity_weight, "needs": self.weight}

    # ------------------------------------------------------------------ files
    def save(self, model_dir: Path) -> Path:
        path = Path(model_dir) / LEXICAL_FILE
        meta = {"format": FORMAT, "temperatures": self.temperatures, "meta_scale": self.meta_scale,
                "weight": self.weight, "acuity_weight": self.acuity_weight, "sign_scale": self.sign_scale,
                "sign_bands": _band_spec() if self.sign_scale else [],
                "heads": {k: [h.kind, h.size, h.start, h.stop, list(h.classes)] for k, h in self.heads.items()},
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
            if meta.get("format") not in READS_FORMATS:
                raise ModelConfigError(f"{path}: format {meta.get('format')}, this code reads "
                                       f"{', '.join(map(str, READS_FORMATS))}")
            if float(meta.get("sign_scale", 0.0)) and meta.get("sign_bands") != _band_spec():
                raise ModelConfigError(f"{path}: its sign bands are not this code's (inference.sign_features); "
                                       "rebuild the reader (wardflow build-model)")
            heads = {k: Head(v[0], int(v[1]), int(v[2]), int(v[3]), tuple(int(c) for c in v[4]))
                     for k, v in meta["heads"].items()}
            vocab = {"word": (list(meta["word_terms"]), word_idf), "char": (list(meta["char_terms"]), char_idf)}
            model = cls(vocab, weights, bias, heads, {k: float(v) for k, v in meta["temperatures"].items()},
                        float(meta["meta_scale"]), float(meta["weight"]),
                        sign_scale=float(meta.get("sign_scale", 0.0)),
                        acuity_weight=float(meta.get("acuity_weight", meta["weight"])))
        except FileNotFoundError:
            raise ModelConfigError(f"{path}: missing (the model's config names it)") from None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelConfigError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
        if set(heads) != set(HEADS) or weights.shape != (model.n_features, len(bias)):
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

    def scores(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str],
               signals: Sequence[Signals] | None = None) -> np.ndarray:
        meta = meta_matrix(zip(ages, sexes, strict=True)).astype(np.float64) * self.meta_scale
        w_meta = self.weights[self.n_text:self.n_text + META_DIM].astype(np.float64)
        out = meta @ w_meta + self.bias
        if self.sign_scale:
            signs = sign_matrix(texts, ages, signals) * self.sign_scale
            out += signs @ self.weights[self.n_text + META_DIM:].astype(np.float64)
        for i, text in enumerate(texts):
            idx, val = self._text_features(text)
            if len(idx):
                out[i] += val @ self.weights[idx].astype(np.float64)
        return out

    def logits(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str],
               signals: Sequence[Signals] | None = None) -> dict[str, np.ndarray]:
        """As `TfidfBaseline.logits`: log-probabilities of the class heads, log-odds of the needs. `signals`:
        the texts' signs already parsed (the sign bands parse them otherwise)."""
        z = self.scores(texts, ages, sexes, signals)
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

    def probs(self, texts: Sequence[str], ages: Sequence[float], sexes: Sequence[str],
              signals: Sequence[Signals] | None = None) -> dict[str, np.ndarray]:
        lg = self.logits(texts, ages, sexes, signals)
        t = self.temperatures
        return {"unit": softmax(lg["unit"], t["unit"]), "acuity": softmax(lg["acuity"], t["acuity"]),
                "needs": sigmoid(lg["needs"], t["needs"])}


def blend(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray],
          weight: float | Mapping[str, float]) -> dict[str, np.ndarray]:
    """The served distribution: per class head the weighted geometric mean of the two calibrated
    distributions, renormalised (`weight`: the encoder's share, one for every head or one per head);
    the needs' probabilities averaged."""
    def share(head: str) -> float:
        return float(weight) if isinstance(weight, (int, float)) else float(weight[head])

    out = {}
    for head in ("unit", "acuity"):
        w = share(head)
        z = w * np.log(np.clip(encoder[head], 1e-12, None)) + (1 - w) * np.log(np.clip(lexical[head], 1e-12, None))
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        out[head] = p / p.sum(axis=-1, keepdims=True)
    w = share("needs")
    out["needs"] = w * np.asarray(encoder["needs"]) + (1 - w) * np.asarray(lexical["needs"])
    return out


WEIGHT_GRID = (1.0, 0.75, 0.5, 0.25)
TIE = 0.005  # relative log-loss difference treated as a tie


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def _largest_near_lowest(losses: dict[str, float]) -> float:
    # the encoder reads the words; the lexical reader helps it: of the shares within TIE of the lowest
    # loss, the encoder keeps the largest
    lowest = min(losses.values())
    return max(w for w in WEIGHT_GRID if losses[str(w)] <= lowest * (1 + TIE))


def choose_head_weights(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray], unit_y: np.ndarray,
                        acuity_y: np.ndarray) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The encoder's share per head, each by its own log loss on labelled rows (the validation split): the
    two readers need not be equally good at the unit and at the acuity (the lexical reader's acuity head
    also reads the sign bands). The needs follow the unit's share. Returns the shares and the losses."""
    losses: dict[str, dict[str, float]] = {"unit": {}, "acuity": {}}
    for w in WEIGHT_GRID:
        p = blend(encoder, lexical, w)
        losses["unit"][str(w)] = _log_loss(p["unit"], unit_y)
        losses["acuity"][str(w)] = _log_loss(p["acuity"], acuity_y)
    unit = _largest_near_lowest(losses["unit"])
    return {"unit": unit, "acuity": _largest_near_lowest(losses["acuity"]), "needs": unit}, losses
