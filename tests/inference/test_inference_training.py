"""Training: a TINY random BERT given by path learns a separable toy task well above chance; the model
directory holds weights, tokenizer, label config, temperatures, version id and data fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests import inference_support as sup


@pytest.fixture(scope="module")
def model_dir():
    return sup.tiny_trained_model()


def test_model_directory_contents(model_dir):
    for name in ("model.safetensors", "tokenizer.json", "encoder_config.json", "triage_config.json"):
        assert (model_dir / name).exists(), name
    cfg = json.loads((model_dir / "triage_config.json").read_text())
    assert cfg["labels"] == sup.TOY_LABELS
    assert set(cfg["temperatures"]) == {"unit", "acuity", "needs"} and all(t > 0 for t in cfg["temperatures"].values())
    assert cfg["model_version"].startswith("wf-triage-") and len(cfg["data_fingerprint"]) == 16
    assert cfg["max_length"] == 64 and cfg["train_max_length"] == 32
    assert cfg["base_model"] == str(sup.tiny_bert_dir())
    assert cfg["metrics"]["history"], "validation was checked during training"


def test_tiny_model_learns_the_toy_task_well_above_chance(model_dir):
    from inference.evaluate import model_logits
    from inference.export import load_examples_for

    test = [e for e in load_examples_for(model_dir) if e.split == "test"]
    logits, cfg = model_logits(model_dir, test, progress=False)
    units = np.array([cfg.labels.units.index(e.unit) for e in test])
    acc = float((logits["unit"].argmax(1) == units).mean())
    assert acc >= 0.8, acc                      # chance is 0.25
    needs_true = np.array([[n in e.needs for n in cfg.labels.needs] for e in test])
    assert float(((logits["needs"] > 0) == needs_true).mean()) >= 0.8


def test_age_and_sex_reach_the_model(model_dir):
    import torch

    from inference.encoding import meta_matrix
    from inference.model import load_model

    net, _ = load_model(model_dir)
    ids = torch.tensor([[101, 2000, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a = net(ids, mask, torch.from_numpy(meta_matrix([(30.0, "F")])))[0]
        b = net(ids, mask, torch.from_numpy(meta_matrix([(3.0, "M")])))[0]
    assert not torch.allclose(a, b)


def test_training_is_seeded(tmp_path):
    from inference.data import load_files
    from inference.train import train

    examples, labels = load_files([sup.write_toy_jsonl(tmp_path / "toy.jsonl")])
    settings = sup.tiny_settings(epochs=2)
    c1 = train(examples, labels, tmp_path / "a", settings)
    c2 = train(examples, labels, tmp_path / "b", settings)
    assert c1.model_version == c2.model_version and c1.data_fingerprint == c2.data_fingerprint
    assert c1.temperatures == pytest.approx(c2.temperatures, rel=1e-5)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_evaluate_writes_json_markdown_and_figures(model_dir, tmp_path):
    from inference.data import load_files
    from inference.evaluate import evaluate
    from inference.export import load_examples_for

    examples, _ = load_files([model_dir / "data" / f"{s}.jsonl" for s in ("train", "validation", "test")],
                             require_train=False)
    rep = evaluate(model_dir, examples, tmp_path, progress=False)
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.md").exists()
    for sysname in ("model", "baseline"):
        m = rep[sysname]
        for head in ("unit", "acuity", "needs"):
            assert 0 <= m[head]["macro_f1"] <= 1 and "ece_before" in m[head] and "ece_after" in m[head]
            assert (tmp_path / "figures" / m[head]["confusion_png"]).stat().st_size > 1000
            assert (tmp_path / "figures" / m[head]["reliability_png"]).stat().st_size > 1000
        assert {"exact", "within_one", "under_triage_rate_esi_1_2"} <= set(m["acuity"])
    md = (tmp_path / "report.md").read_text()
    assert "baseline" in md.lower() and "under-triage" in md
    assert load_examples_for(model_dir)


def test_a_build_says_when_the_time_budget_cut_training_short() -> None:
    from inference.build import short_schedule_warning

    said = short_schedule_warning({"steps": 97, "full_schedule_steps": 471})
    assert "WARNING" in said and "97 of its 471" in said and "--time-budget" in said
    assert short_schedule_warning({"steps": 236, "full_schedule_steps": 471}) == ""  # half or more: fine
    assert short_schedule_warning({"steps": 30}) == ""  # an older model's metrics: nothing to compare


def test_a_trained_model_records_its_full_schedule(model_dir):
    from inference.config import load_config

    m = load_config(model_dir).metrics
    assert isinstance(m["full_schedule_steps"], int) and 0 < m["steps"] <= m["full_schedule_steps"]


def test_the_report_says_what_its_test_split_held_out_of_training() -> None:
    from inference.report_md import held_out_line

    assert held_out_line({"n_test": 10, "n_test_unseen_presentations": 4, "n_test_read_presentations": 6}).startswith(
        "4 from presentations never read in training")
    seen = held_out_line({"n_test": 10, "n_test_read_presentations": 10})
    assert "every test presentation was read in training" in seen and "--hold-out-test-presentations" in seen
    assert held_out_line({"n_test": 10, "n_test_read_presentations": 0}) == "the data's own test split"  # no groups


def test_the_default_build_reads_the_test_presentations_and_an_evaluation_build_does_not(monkeypatch) -> None:
    import inference.build
    from inference.corpus import HELDOUT_FRACTION

    got = []
    monkeypatch.setattr(inference.build, "build", lambda out, reports, force, settings: got.append(settings))
    for argv in (["build-model"], ["build-model", "--hold-out-test-presentations", "--heldout-fraction", "0.15"],
                 ["build-model", "--n-train", "6000", "--epochs", "2"]):
        args = sup.parse_cli(argv + ["--threads", "1"])
        assert args.func(args) == 0
    assert got[0].train_on_test_presentations and got[0].heldout_fraction == HELDOUT_FRACTION
    assert not got[1].train_on_test_presentations and got[1].heldout_fraction == 0.15
    # the default build reads 15,000 cases once; the options still set both
    assert (got[0].n_train, got[0].epochs) == (15000, 1) == (inference.build.BuildSettings().n_train,
                                                             inference.build.BuildSettings().epochs)
    assert (got[2].n_train, got[2].epochs) == (6000, 2)
