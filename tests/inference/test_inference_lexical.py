"""The lexical reader (inference.lexical): scikit-learn's TF-IDF + LR reproduced in numpy, blended with the encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.baseline import TfidfBaseline
from inference.data import Example, by_split, load_files
from inference.exceptions import ModelConfigError
from inference.lexical import (
    LEXICAL_FILE,
    LexicalModel,
    blend,
    char_wb_terms,
    choose_weight,
    word_terms,
)
from tests.inference_support import toy_rows, write_toy_jsonl

ODD_TEXTS = ["", "   ", "SpO2 91% on RA, RR 26!!  HR 128", "a b c", "Ünïcödé   naïve café\tCAFÉ\n\nend",
             "x" * 3000, "?PE r/o ACS; query sepsis -- 'worst headache of my life'"]


def _examples(tmp_path: Path) -> tuple[list[Example], object]:
    return load_files([write_toy_jsonl(tmp_path / "toy.jsonl")], None)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    exs, labels = _examples(tmp_path_factory.mktemp("lexical"))
    splits = by_split(exs)
    b = TfidfBaseline(labels, word_features=500, char_features=800).fit(splits["train"], splits["validation"])
    return b, labels, splits


def test_the_analyzers_are_scikit_learns(fitted) -> None:
    b, _, _ = fitted
    word, char = b.word.build_analyzer(), b.char.build_analyzer()
    for text in ODD_TEXTS:
        assert sorted(word_terms(text)) == sorted(word(text))
        assert sorted(char_wb_terms(text)) == sorted(char(text))


def test_the_reader_scores_as_the_fitted_baseline(fitted) -> None:
    b, _, splits = fitted
    reader = b.reader(0.5)
    rows = splits["test"] + [Example(text=t, age=a, sex=s, unit="CARDIAC", acuity=2, needs=())
                             for t, a, s in zip(ODD_TEXTS, (0.5, 3, 15, 40, 70, 90, 101), "FMXFMXF", strict=True)]
    texts, ages, sexes = [e.text for e in rows], [e.age for e in rows], [e.sex for e in rows]
    want = b.logits(rows)
    got = reader.logits(texts, ages, sexes)
    for head in ("unit", "acuity", "needs"):
        assert got[head].shape == want[head].shape
        np.testing.assert_allclose(got[head], want[head], atol=2e-4, err_msg=head)


def test_a_saved_reader_loads_back_the_same(fitted, tmp_path: Path) -> None:
    b, _, splits = fitted
    reader = b.reader(0.75)
    reader.save(tmp_path)
    again = LexicalModel.load(tmp_path)
    assert again.weight == 0.75 and again.temperatures == reader.temperatures
    texts = [e.text for e in splits["test"]]
    ages, sexes = [e.age for e in splits["test"]], [e.sex for e in splits["test"]]
    for head, value in reader.probs(texts, ages, sexes).items():
        np.testing.assert_array_equal(again.probs(texts, ages, sexes)[head], value)


def test_a_missing_or_foreign_file_is_a_clear_error(fitted, tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="missing"):
        LexicalModel.load(tmp_path)
    (tmp_path / LEXICAL_FILE).write_bytes(b"not an npz")
    with pytest.raises(ModelConfigError, match="unreadable"):
        LexicalModel.load(tmp_path)
    b, _, _ = fitted
    with pytest.raises(ModelConfigError, match="between 0 and 1"):
        b.reader(1.5)


def test_the_blend_is_a_normalised_geometric_mean() -> None:
    enc = {"unit": np.array([[0.7, 0.2, 0.1]]), "acuity": np.array([[0.5, 0.5]]), "needs": np.array([[0.9, 0.1]])}
    lex = {"unit": np.array([[0.1, 0.2, 0.7]]), "acuity": np.array([[0.9, 0.1]]), "needs": np.array([[0.1, 0.3]])}
    for head, value in blend(enc, lex, 1.0).items():
        np.testing.assert_allclose(value, enc[head])
    for head, value in blend(enc, lex, 0.0).items():
        np.testing.assert_allclose(value, lex[head])
    half = blend(enc, lex, 0.5)
    np.testing.assert_allclose(half["unit"].sum(), 1.0)
    np.testing.assert_allclose(half["unit"][0, 0], half["unit"][0, 2])  # sqrt(0.07) both
    assert half["unit"][0, 1] == pytest.approx(0.2 / (0.2 + 2 * np.sqrt(0.07)))
    np.testing.assert_allclose(half["needs"], [[0.5, 0.2]])


def test_the_weight_is_the_lowest_loss_and_a_tie_goes_to_the_encoder() -> None:
    y = np.array([0, 1])
    sharp = {"unit": np.array([[0.9, 0.1], [0.1, 0.9]]), "acuity": np.array([[0.9, 0.1], [0.1, 0.9]]),
             "needs": np.zeros((2, 0))}
    flat = {"unit": np.full((2, 2), 0.5), "acuity": np.full((2, 2), 0.5), "needs": np.zeros((2, 0))}
    assert choose_weight(sharp, flat, y, y)[0] == 1.0  # the encoder is right and sure: all of it
    assert choose_weight(flat, sharp, y, y)[0] == 0.25  # the reader is: the smallest share on the grid
    assert choose_weight(sharp, sharp, y, y)[0] == 1.0  # the same everywhere: a tie


def test_a_built_model_serves_the_blend_and_evaluates_both(tmp_path: Path) -> None:
    from inference.build import add_lexical_reader
    from inference.config import load_config
    from inference.evaluate import evaluate
    from inference.interface import TriagePrediction, TriageRequest
    from inference.serving import OnnxTriageModel
    from tests.inference_support import tiny_exported

    root = tmp_path / "model"
    shutil.copytree(tiny_exported(), root)
    exs, labels = _examples(tmp_path)
    said: list[str] = []
    result = add_lexical_reader(root, exs, labels, threads=1, say=said.append)
    assert result["lexical"]["encoder_weight"] in (1.0, 0.75, 0.5, 0.25)
    chosen = result["need_threshold"]["threshold"]
    for sub in ("onnx", "int8"):
        assert load_config(root / sub).lexical_file == LEXICAL_FILE and (root / sub / LEXICAL_FILE).exists()
        assert load_config(root / sub).need_threshold == chosen  # served with the threshold validation chose
    scores = result["need_threshold"]["validation_needs_micro_f1"]
    assert scores[f"{chosen:g}"] == max(scores.values()) and any("need threshold" in s for s in said)
    served = OnnxTriageModel.load(root / "int8", threads=1)
    assert served.lexical is not None and served.lexical.weight == result["lexical"]["encoder_weight"]
    rows = toy_rows(2, 9)
    out = served.predict_batch([TriageRequest(str(i), r["text"], float(r["age"]), r["sex"]) for i, r in enumerate(rows)])
    assert all(isinstance(p, TriagePrediction) for p in out)
    enc = served.calibrate(served.logits([r["text"] for r in rows], [r["age"] for r in rows], [r["sex"] for r in rows]))
    want = served.served_probs(enc, [r["text"] for r in rows], [float(r["age"]) for r in rows], [r["sex"] for r in rows])
    for p, u in zip(out, want["unit"], strict=True):
        assert p.unit_probs == {k: round(float(x), 6) for k, x in zip(labels.units, u, strict=True)}
    report = evaluate(root / "onnx", exs, tmp_path / "report", threads=1, progress=False, handwritten=exs[:8],
                      handwritten_name="toy")
    assert report["lexical_weight"] == result["lexical"]["encoder_weight"]
    assert {"model", "encoder", "baseline"} <= set(report["served_test"]["summary"])
    assert {"model", "encoder"} <= set(report["handwritten"]["summary"])
    # removed again: the model serves its encoder alone
    removed = add_lexical_reader(root, exs, labels, threads=1, enabled=False, say=said.append)
    assert OnnxTriageModel.load(root / "int8", threads=1).lexical is None
    assert load_config(root / "int8").need_threshold == removed["need_threshold"]["threshold"]  # chosen again
    cfg = json.loads((root / "int8" / "triage_config.json").read_text())
    assert cfg["lexical_file"] == ""


def test_a_model_naming_a_reader_it_lacks_does_not_load(tmp_path: Path) -> None:
    from inference.serving import OnnxTriageModel
    from tests.inference_support import tiny_exported

    root = tmp_path / "int8"
    shutil.copytree(tiny_exported() / "int8", root)
    cfg = json.loads((root / "triage_config.json").read_text())
    cfg["lexical_file"] = LEXICAL_FILE
    (root / "triage_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelConfigError, match="missing"):
        OnnxTriageModel.load(root, threads=1)



def test_heads_with_two_classes_or_one_are_scored_as_scikit_learn_does(fitted) -> None:
    _, labels, splits = fitted
    two = [e for e in splits["train"] if e.unit in ("CARDIAC", "ORTHO")]  # acuity 2 and 3 only
    for e in two:  # close_observation never present: a head that saw one class
        assert "close_observation" not in e.needs
    b = TfidfBaseline(labels, word_features=300, char_features=300).fit(two, two[:6])
    assert b.unit.model is not None and b.unit.model.coef_.shape[0] == 1
    assert b.needs[1].model is None
    reader = b.reader(0.5)
    rows = splits["test"]
    got = reader.logits([e.text for e in rows], [e.age for e in rows], [e.sex for e in rows])
    for head, want in b.logits(rows).items():
        np.testing.assert_allclose(got[head], want, atol=2e-4, err_msg=head)

