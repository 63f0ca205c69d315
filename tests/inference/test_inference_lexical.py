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
    choose_head_weights,
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


def test_the_weight_is_the_lowest_loss_per_head_and_a_tie_goes_to_the_encoder() -> None:
    y = np.array([0, 1])
    good, bad = np.array([[0.9, 0.1], [0.1, 0.9]]), np.full((2, 2), 0.5)
    sharp = {"unit": good, "acuity": good, "needs": np.zeros((2, 0))}
    flat = {"unit": bad, "acuity": bad, "needs": np.zeros((2, 0))}
    # the encoder is right and sure: all of it; the reader is: the smallest share on the grid
    assert choose_head_weights(sharp, flat, y, y)[0] == {"unit": 1.0, "acuity": 1.0, "needs": 1.0}
    assert choose_head_weights(flat, sharp, y, y)[0] == {"unit": 0.25, "acuity": 0.25, "needs": 0.25}
    assert choose_head_weights(sharp, sharp, y, y)[0]["unit"] == 1.0  # the same everywhere: a tie
    # each head by its own loss: the encoder reads the unit, the reader the acuity; needs follow the unit
    enc = {"unit": good, "acuity": bad, "needs": np.zeros((2, 0))}
    lex = {"unit": bad, "acuity": good, "needs": np.zeros((2, 0))}
    weights, losses = choose_head_weights(enc, lex, y, y)
    assert weights == {"unit": 1.0, "acuity": 0.25, "needs": 1.0}
    assert set(losses) == {"unit", "acuity"} and losses["acuity"]["0.25"] < losses["acuity"]["1.0"]


def test_the_blend_takes_one_share_per_head() -> None:
    enc = {"unit": np.array([[0.7, 0.3]]), "acuity": np.array([[0.5, 0.5]]), "needs": np.array([[0.9]])}
    lex = {"unit": np.array([[0.1, 0.9]]), "acuity": np.array([[0.9, 0.1]]), "needs": np.array([[0.1]])}
    out = blend(enc, lex, {"unit": 1.0, "acuity": 0.0, "needs": 0.5})
    np.testing.assert_allclose(out["unit"], enc["unit"])
    np.testing.assert_allclose(out["acuity"], lex["acuity"])
    np.testing.assert_allclose(out["needs"], [[0.5]])


def test_a_built_model_serves_the_blend_and_evaluates_both(tmp_path: Path) -> None:
    from inference.build import BASELINE_FILE, add_lexical_reader, load_baseline
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
    assert result["lexical"]["encoder_acuity_weight"] in (1.0, 0.75, 0.5, 0.25)
    chosen = result["need_threshold"]["threshold"]
    for sub in ("onnx", "int8"):
        assert load_config(root / sub).lexical_file == LEXICAL_FILE and (root / sub / LEXICAL_FILE).exists()
        assert load_config(root / sub).need_threshold == chosen  # served with the threshold validation chose
    scores = result["need_threshold"]["validation_needs_micro_f1"]
    assert scores[f"{chosen:g}"] == max(scores.values()) and any("need threshold" in s for s in said)
    served = OnnxTriageModel.load(root / "int8", threads=1)
    assert served.lexical is not None and served.lexical.weight == result["lexical"]["encoder_weight"]
    assert served.lexical.acuity_weight == result["lexical"]["encoder_acuity_weight"]
    assert served.lexical.sign_scale > 0  # the built reader's acuity head reads the sign bands
    rows = toy_rows(2, 9)
    out = served.predict_batch([TriageRequest(str(i), r["text"], float(r["age"]), r["sex"]) for i, r in enumerate(rows)])
    assert all(isinstance(p, TriagePrediction) for p in out)
    enc = served.calibrate(served.logits([r["text"] for r in rows], [r["age"] for r in rows], [r["sex"] for r in rows]))
    want = served.served_probs(enc, [r["text"] for r in rows], [float(r["age"]) for r in rows], [r["sex"] for r in rows])
    for p, u, a in zip(out, want["unit"], want["acuity"], strict=True):  # the signs parsed once give the same
        assert p.unit_probs == {k: round(float(x), 6) for k, x in zip(labels.units, u, strict=True)}
        assert list(p.acuity_probs.values()) == [round(float(x), 6) for x in a]
    report = evaluate(root / "onnx", exs, tmp_path / "report", threads=1, progress=False, handwritten=exs[:8],
                      handwritten_name="toy")
    assert report["lexical_weight"] == result["lexical"]["encoder_weight"]
    assert report["lexical_acuity_weight"] == result["lexical"]["encoder_acuity_weight"]
    assert {"model", "encoder", "baseline"} <= set(report["served_test"]["summary"])
    assert {"model", "encoder"} <= set(report["handwritten"]["summary"])
    # the step kept the plain baseline from its own fit; the build's evaluation uses it instead of a second fit
    kept = load_baseline(root / "lexical" / BASELINE_FILE)
    again = evaluate(root / "onnx", exs, tmp_path / "report2", threads=1, progress=False, fitted_baseline=kept)
    assert again["summary"]["baseline"] == report["summary"]["baseline"]
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



# ---------------------------------------------------------------- the acuity head reads the sign bands
_URGENT_OBS = ("HR 128, BP 84/50, RR 26", "sats 89% RA, HR 118", "GCS 12, HR 124")
_CALM_OBS = ("HR 78, BP 128/76, RR 14", "sats 98% RA, HR 70", "obs: HR 84 BP 132/80 T 36.8")


def _with_obs(exs: list[Example]) -> list[Example]:
    """The toy notes with observations that follow their acuity (ESI 1-2 abnormal, 3-5 normal)."""
    out = []
    for i, e in enumerate(exs):
        obs = (_URGENT_OBS if e.acuity <= 2 else _CALM_OBS)[i % 3]
        out.append(Example(f"{e.text}. {obs}", e.age, e.sex, e.unit, e.acuity, e.needs, e.split, e.group, e.register))
    return out


@pytest.fixture(scope="module")
def fitted_signs(tmp_path_factory: pytest.TempPathFactory):
    exs, labels = _examples(tmp_path_factory.mktemp("lexical_signs"))
    splits = {k: _with_obs(v) for k, v in by_split(exs).items()}
    b = TfidfBaseline(labels, word_features=500, char_features=800, sign_scale=1.0).fit(
        splits["train"], splits["validation"])
    return b, labels, splits


def test_a_reader_with_sign_bands_scores_as_the_fitted_baseline(fitted_signs) -> None:
    from inference.sign_features import SIGN_DIM

    b, _, splits = fitted_signs
    reader = b.reader(0.5)
    assert reader.n_features == reader.n_text + 9 + SIGN_DIM
    signs = reader.weights[-SIGN_DIM:]
    acuity, unit, needs = reader.heads["acuity"], reader.heads["unit"], reader.heads["needs"]
    assert np.abs(signs[:, acuity.start:acuity.stop]).max() > 0.01  # the acuity head uses them ...
    assert not signs[:, unit.start:unit.stop].any() and not signs[:, needs.start:needs.stop].any()  # ... only it
    rows = splits["test"] + [Example(text=t, age=a, sex=s, unit="CARDIAC", acuity=2, needs=())
                             for t, a, s in zip(ODD_TEXTS, (0.5, 3, 15, 40, 70, 90, 101), "FMXFMXF", strict=True)]
    got = reader.logits([e.text for e in rows], [e.age for e in rows], [e.sex for e in rows])
    for head, want in b.logits(rows).items():
        np.testing.assert_allclose(got[head], want, atol=2e-4, err_msg=head)


def test_the_sign_bands_move_acuity_and_nothing_else(fitted_signs) -> None:
    b, _, _ = fitted_signs
    reader = b.reader(0.5)
    text = "chest pain since this morning"
    calm = reader.probs([f"{text}. HR 76, BP 130/80, RR 14"], [50.0], ["M"])
    shocked = reader.probs([f"{text}. HR 76, BP 130/80, RR 14"], [50.0], ["M"])
    np.testing.assert_array_equal(calm["acuity"], shocked["acuity"])  # same text, same answer
    shocked = reader.probs([f"{text}. HR 131, BP 80/50, RR 28"], [50.0], ["M"])
    urgent = [0, 1]  # ESI 1 and 2 in the toy label set's order
    assert shocked["acuity"][0, urgent].sum() > calm["acuity"][0, urgent].sum()
    plain = TfidfBaseline(b.labels, word_features=500, char_features=800)
    assert plain.sign_scale == 0.0 and b.reader(0.5).sign_scale == 1.0
    with pytest.raises(ValueError, match="sign_scale"):
        TfidfBaseline(b.labels, sign_scale=-1.0)


def test_one_fit_gives_the_reader_and_the_plain_baseline(fitted_signs) -> None:
    # the build fits once: the served reader (with the sign bands) and the reports' plain baseline
    b, labels, splits = fitted_signs
    both = TfidfBaseline(labels, word_features=500, char_features=800, sign_scale=1.0).fit(
        splits["train"], splits["validation"], keep_plain_acuity=True)
    plain = both.without_signs(splits["validation"])
    alone = TfidfBaseline(labels, word_features=500, char_features=800).fit(splits["train"], splits["validation"])
    rows = splits["test"]
    for head, want in alone.logits(rows).items():
        np.testing.assert_array_equal(plain.logits(rows)[head], want, err_msg=head)
    for head, want in b.logits(rows).items():  # the reader is the one fitted without the extra head
        np.testing.assert_array_equal(both.logits(rows)[head], want, err_msg=head)
    assert plain.temperatures == alone.temperatures and plain.sign_scale == 0.0
    with pytest.raises(ValueError, match="keep_plain_acuity"):
        b.without_signs()


def test_heads_fitted_in_two_processes_agree_with_one_by_one(fitted_signs, monkeypatch) -> None:
    import inference.baseline

    b, labels, splits = fitted_signs
    monkeypatch.setattr(inference.baseline, "MEMMAP_ABOVE", 1)  # as on a full corpus: the features memory-mapped
    two = TfidfBaseline(labels, word_features=500, char_features=800, sign_scale=1.0).fit(
        splits["train"], splits["validation"], threads=2)
    texts = [e.text for e in splits["test"]]
    ages, sexes = [e.age for e in splits["test"]], [e.sex for e in splits["test"]]
    for head, want in b.reader(1.0).probs(texts, ages, sexes).items():
        np.testing.assert_allclose(two.reader(1.0).probs(texts, ages, sexes)[head], want, atol=0.02, err_msg=head)


def test_a_saved_reader_with_sign_bands_loads_back_and_a_format_1_file_still_loads(fitted, fitted_signs,
                                                                                    tmp_path: Path) -> None:
    b, _, splits = fitted_signs
    reader = b.reader(0.5)
    reader.acuity_weight = 0.25
    reader.save(tmp_path)
    again = LexicalModel.load(tmp_path)
    assert again.sign_scale == 1.0 and again.head_weights == {"unit": 0.5, "acuity": 0.25, "needs": 0.5}
    texts, ages, sexes = [e.text for e in splits["test"]], [e.age for e in splits["test"]], [e.sex for e in splits["test"]]
    for head, value in reader.probs(texts, ages, sexes).items():
        np.testing.assert_array_equal(again.probs(texts, ages, sexes)[head], value)
    # a reader fitted on other sign bands than this code's does not load
    with np.load(tmp_path / LEXICAL_FILE) as z:
        banded = dict(z)
    meta = json.loads(bytes(banded["meta"]).decode())
    meta["sign_bands"][0][1] = [40, 50]
    banded["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / LEXICAL_FILE, **banded)
    with pytest.raises(ModelConfigError, match="sign bands are not this code's"):
        LexicalModel.load(tmp_path)
    # a reader written before the sign bands (format 1: no `sign_scale`) reads as it did
    plain, _, _ = fitted
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    plain.reader(0.5).save(old_dir)
    with np.load(old_dir / LEXICAL_FILE) as z:
        arrays = dict(z)
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["format"] = 1
    del meta["sign_scale"], meta["acuity_weight"], meta["sign_bands"]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(old_dir / LEXICAL_FILE, **arrays)
    old = LexicalModel.load(old_dir)
    assert old.sign_scale == 0.0 and old.head_weights == {"unit": 0.5, "acuity": 0.5, "needs": 0.5}
    np.testing.assert_allclose(old.logits(texts, ages, sexes)["acuity"], plain.logits(splits["test"])["acuity"],
                               atol=2e-4)
    meta["format"] = 7
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(old_dir / LEXICAL_FILE, **arrays)
    with pytest.raises(ModelConfigError, match="format 7"):
        LexicalModel.load(old_dir)
