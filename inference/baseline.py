"""The baseline every report compares against: TF-IDF + logistic regression, one model per head.

Word 1-2-grams and character 3-5-grams, plus the same age/sex features the transformer gets.
Trained on the same training split; its temperatures are fitted on the same validation split.

With `sign_scale` > 0 (the served lexical reader, not the baseline reports compare against), the
acuity head also reads the note's measured signs in bands (`inference.sign_features`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from inference.calibration import fit_temperature_sigmoid, fit_temperature_softmax
from inference.data import Example
from inference.encoding import META_DIM, meta_matrix
from inference.labels import LabelSet
from inference.lexical import Head, LexicalModel
from inference.sign_features import SIGN_DIM, sign_matrix

MEMMAP_ABOVE = "1M"  # arrays larger than this reach the fitting processes memory-mapped (joblib's max_nbytes)


class TfidfBaseline:
    def __init__(self, labels: LabelSet, seed: int = 0, C: float = 4.0, word_features: int = 60000,
                 char_features: int = 80000, max_iter: int = 2000, sign_scale: float = 0.0) -> None:
        if sign_scale < 0:
            raise ValueError(f"sign_scale must be 0 (no sign features) or more, not {sign_scale}")
        self.labels, self.seed, self.C, self.sign_scale = labels, seed, C, float(sign_scale)
        self.word_features, self.char_features, self.max_iter = word_features, char_features, max_iter
        self.temperatures = {"unit": 1.0, "acuity": 1.0, "needs": 1.0}
        self.acuity_plain: _Fitted | None = None

    def _features(self, exs: Sequence[Example], text_features=None):
        """(text + age/sex features for every head, the same with the sign bands for the acuity head);
        `text_features`: the (word, char) matrices of `exs` when already computed (by the fit)."""
        w, c = text_features or (self.word.transform([e.text for e in exs]), self.char.transform([e.text for e in exs]))
        m = sparse.csr_matrix(meta_matrix((e.age, e.sex) for e in exs) * 3.0)
        x = sparse.hstack([w, c, m]).tocsr()
        if not self.sign_scale:
            return x, x
        signs = sparse.csr_matrix(sign_matrix([e.text for e in exs], [e.age for e in exs]) * self.sign_scale)
        return x, sparse.hstack([x, signs]).tocsr()

    def fit(self, train: Sequence[Example], validation: Sequence[Example] = (), *, threads: int = 1,
            keep_plain_acuity: bool = False) -> TfidfBaseline:
        """Fit the vectorizers and one logistic regression per head on `train`; temperatures on `validation`.

        `threads` > 1 fits the heads side by side in worker processes (deterministic for a given `threads`; the
        weights agree with a fit one by one within the solver's tolerance).
        `keep_plain_acuity` (with `sign_scale` > 0) also fits an acuity head without the sign bands, so that
        `without_signs()` gives the plain baseline from the same fit instead of a second one."""
        from joblib import Parallel, delayed
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=self.word_features)
        self.char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, sublinear_tf=True,
                                    max_features=self.char_features)
        texts = [e.text for e in train]
        x, xa = self._features(train, (self.word.fit_transform(texts), self.char.fit_transform(texts)))
        for m in (x, xa):  # the workers read them memory-mapped, read-only: nothing may sort them in place there
            m.sort_indices()
        lab = self.labels
        yu = np.array([lab.units.index(e.unit) for e in train])
        ya = np.array([lab.acuity_index(e.acuity) for e in train])

        def lr(solver: str):  # same convex optimum as lbfgs, several times faster here
            return LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed, solver=solver)

        jobs = [("unit", lr("newton-cg"), x, yu, len(lab.units)), ("acuity", lr("newton-cg"), xa, ya, len(lab.acuities))]
        if keep_plain_acuity and self.sign_scale:
            jobs.append(("acuity_plain", lr("newton-cg"), x, ya, len(lab.acuities)))
        jobs += [(f"need:{n}", lr("liblinear"), x, np.array([int(n in e.needs) for e in train]), 2) for n in lab.needs]
        # one process per core: the solvers hold the GIL for much of their time, so threads barely help;
        # each worker runs one BLAS thread: the weights agree with a fit one by one within the solver tolerance
        fits = Parallel(n_jobs=max(1, threads), backend="loky" if threads > 1 else "sequential",
                        max_nbytes=MEMMAP_ABOVE)(
            delayed(_Fitted)(*j[1:]) for j in jobs)
        done = dict(zip([j[0] for j in jobs], fits, strict=True))
        self.unit, self.acuity = done["unit"], done["acuity"]
        self.acuity_plain = done.get("acuity_plain")
        self.needs = [done[f"need:{n}"] for n in lab.needs]
        if validation:
            self._fit_temperatures(validation)
        return self

    def _fit_temperatures(self, validation: Sequence[Example]) -> None:
        lab = self.labels
        lv = self.logits(validation)
        self.temperatures = {
            "unit": fit_temperature_softmax(lv["unit"], np.array([lab.units.index(e.unit) for e in validation])),
            "acuity": fit_temperature_softmax(lv["acuity"],
                                              np.array([lab.acuity_index(e.acuity) for e in validation])),
            "needs": fit_temperature_sigmoid(lv["needs"], np.array(
                [[float(n in e.needs) for n in lab.needs] for e in validation]).reshape(len(validation), -1)),
        }

    def without_signs(self, validation: Sequence[Example] = ()) -> TfidfBaseline:
        """The plain baseline (no sign bands) from this fit: the same vectorizers, unit and need heads, and the
        acuity head fitted without the signs (`fit(..., keep_plain_acuity=True)`); temperatures on
        `validation`. The same as `TfidfBaseline(labels).fit(train, validation)` with the same settings (exactly,
        when both fitted one by one)."""
        if self.acuity_plain is None:
            raise ValueError("without_signs() needs a fit with sign_scale > 0 and keep_plain_acuity=True")
        plain = TfidfBaseline(self.labels, seed=self.seed, C=self.C, word_features=self.word_features,
                              char_features=self.char_features, max_iter=self.max_iter)
        plain.word, plain.char, plain.unit, plain.needs = self.word, self.char, self.unit, self.needs
        plain.acuity = self.acuity_plain
        if validation:
            plain._fit_temperatures(validation)
        return plain

    def reader(self, weight: float) -> LexicalModel:
        """This baseline as the served lexical reader (`inference.lexical`, numpy only), the encoder's
        share `weight`."""
        b = self
        vocab = {}
        for name, vec in (("word", b.word), ("char", b.char)):
            terms = [""] * len(vec.vocabulary_)
            for term, i in vec.vocabulary_.items():
                terms[i] = term
            vocab[name] = (terms, np.asarray(vec.idf_, dtype=np.float64))
        n_plain = len(vocab["word"][0]) + len(vocab["char"][0]) + META_DIM
        n_features = n_plain + (SIGN_DIM if b.sign_scale else 0)
        columns: list[np.ndarray] = []
        biases: list[float] = []
        heads: dict[str, Head] = {}

        def add(weight_row: np.ndarray, bias: float) -> None:  # heads without the sign bands: zeros there
            row = np.zeros(n_features)
            w = np.asarray(weight_row, dtype=np.float64).ravel()
            row[:len(w)] = w
            columns.append(row)
            biases.append(float(bias))

        zero = np.zeros(n_features)
        for head, fitted in (("unit", b.unit), ("acuity", b.acuity)):
            start = len(columns)
            model = fitted.model
            if model is None:  # one class seen: it gets log-probability 0
                add(zero, 0.0)
                classes: tuple[int, ...] = (int(fitted.present[0]),)
            elif model.coef_.shape[0] == 1:  # two classes seen: sklearn's binary form, p1 = sigmoid(z)
                add(zero, 0.0)
                add(model.coef_[0], model.intercept_[0])
                classes = tuple(int(c) for c in model.classes_)
            else:
                for row, bias in zip(model.coef_, model.intercept_, strict=True):
                    add(row, bias)
                classes = tuple(int(c) for c in model.classes_)
            heads[head] = Head("softmax", fitted.n, start, len(columns), classes)
        start = len(columns)
        for fitted in b.needs:
            if fitted.model is None:
                add(zero, 30.0 if fitted.present[0] == 1 else -30.0)
            else:
                add(fitted.model.coef_[0], fitted.model.intercept_[0])
        heads["needs"] = Head("odds", len(b.needs), start, len(columns), ())
        return LexicalModel(vocab, np.stack(columns, axis=1).astype(np.float32), np.asarray(biases, dtype=np.float64), heads,
                   dict(b.temperatures), 3.0, weight, sign_scale=b.sign_scale)

    def logits(self, exs: Sequence[Example]) -> dict[str, np.ndarray]:
        """Log-probabilities (softmax heads) and log-odds (needs) — temperature-scalable logits."""
        x, xa = self._features(exs)
        needs = np.stack([f.log_odds(x) for f in self.needs], axis=1) if self.needs else np.zeros((len(exs), 0))
        return {"unit": self.unit.log_proba(x), "acuity": self.acuity.log_proba(xa), "needs": needs}


class _Fitted:
    """A logistic regression that copes with classes absent from the training data."""

    def __init__(self, model, x, y: np.ndarray, n_classes: int) -> None:
        self.n = n_classes
        self.present = np.unique(y)
        self.model = model.fit(x, y) if len(self.present) > 1 else None

    def log_proba(self, x) -> np.ndarray:
        out = np.full((x.shape[0], self.n), -30.0)
        if self.model is None:
            out[:, self.present[0]] = 0.0
            return out
        out[:, self.model.classes_] = np.log(np.clip(self.model.predict_proba(x), 1e-12, None))
        return out

    def log_odds(self, x) -> np.ndarray:
        if self.model is None:
            return np.full(x.shape[0], 30.0 if self.present[0] == 1 else -30.0)
        return self.model.decision_function(x)
