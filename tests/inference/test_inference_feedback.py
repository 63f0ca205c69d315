"""`wardflow train --feedback`: a TINY trained model (tests/inference_support.py) fine-tuned on feedback
records that relabel one distinctive phrase learns the correction without forgetting the rest; the new
directory is a normal model directory with its lineage; the report has before/after on the parent's
test split and on the records; bad records are reported by line and skipped; null acuity is masked."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests import inference_support as sup

PHRASE = "small cut on finger"          # DISCHARGE in the toy task; the hospital says ORTHO
OLD, NEW = "DISCHARGE", "ORTHO"
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
TUNE_ARGS = ["--seed", "3", "--epochs", "6", "--batch-size", "8", "--lr", "2e-3", "--lr-head", "5e-3",
             "--freeze-layers", "0", "--feedback-share", "0.5", "--replay", "48", "--threads", "1", "--no-progress"]


def feedback_records(n: int = 12, seed: int = 7) -> list[dict]:
    """Corrections as the worker publishes them (`FeedbackRecord.to_dict()`); every other one without acuity."""
    from allocator.feedback import FeedbackRecord

    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = f"{sup._FILLERS[i % len(sup._FILLERS)]} {PHRASE} {rng.choice(sup._FILLERS)}".strip()
        rec = FeedbackRecord(encounter_id=f"E-{i}", text=text, age=float(rng.randint(20, 80)), sex=rng.choice("FM"),
                             target_unit=NEW, acuity=None if i % 2 else 3, needs=(), source="override",
                             who="dr-a", at=T0 + timedelta(minutes=i), previous_target_unit=OLD, corrected=True)
        out.append(rec.to_dict())
    return out


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def unit_predictions(model_dir: Path, texts: list[str]) -> list[str]:
    from inference.data import Example
    from inference.evaluate import model_logits

    exs = [Example(t, 40.0, "F", "CARDIAC", 3, ()) for t in texts]
    logits, cfg = model_logits(model_dir, exs, threads=1, progress=False)
    return [cfg.labels.units[i] for i in logits["unit"].argmax(1)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The CLI run: 12 corrections (6 without acuity), one bad line and a superseded duplicate."""
    from streams.cli import main

    parent = sup.tiny_trained_model()
    d = tmp_path_factory.mktemp("feedback")
    recs = feedback_records()
    dup = dict(recs[0], target_unit=OLD, corrected=False, at=(T0 - timedelta(hours=1)).isoformat())  # older: loses
    fb = write_lines(d / "feedback.jsonl", [dup] + recs + [dict(recs[1], encounter_id="E-x", target_unit="ICU")])
    out, reports = d / "model", d / "reports"
    rc = main(["train", "--feedback", str(fb), "--from-model", str(parent), "--out", str(out),
               "--reports", str(reports), *TUNE_ARGS])
    assert rc == 0
    return {"parent": parent, "out": out, "reports": reports, "file": fb, "records": recs}


def test_parent_did_not_predict_the_correction():
    texts = [r["text"] for r in feedback_records()]
    assert unit_predictions(sup.tiny_trained_model(), texts).count(NEW) <= 2, "premise: the parent says DISCHARGE"


def test_fine_tuned_model_learns_the_correction_and_keeps_the_rest(tuned):
    from inference.export import load_examples_for

    texts = [r["text"] for r in tuned["records"]]
    before, after = unit_predictions(tuned["parent"], texts), unit_predictions(tuned["out"], texts)
    assert before.count(NEW) <= 2 and after.count(NEW) >= 11, (before, after)
    # unseen phrasings of the corrected phrase move too
    fresh = [f"{a} {PHRASE} {b}".strip() for a in ("seen in triage", "") for b in ("brought by family", "today")]
    assert unit_predictions(tuned["out"], fresh).count(NEW) >= 3
    # the rest of the parent's test split (other phrases) is still right: replay kept it
    rest = [e for e in load_examples_for(tuned["out"]) if e.split == "test" and PHRASE not in e.text]
    preds = unit_predictions(tuned["out"], [e.text for e in rest])
    assert np.mean([p == e.unit for p, e in zip(preds, rest, strict=True)]) >= 0.8


def test_new_model_directory_has_the_normal_layout_and_its_lineage(tuned):
    from inference.feedback import file_sha256

    out, parent = tuned["out"], tuned["parent"]
    for name in ("model.safetensors", "tokenizer.json", "encoder_config.json", "triage_config.json",
                 "data/train.jsonl", "data/validation.jsonl", "data/test.jsonl", "data/feedback.jsonl"):
        assert (out / name).exists(), name
    cfg, pcfg = (json.loads((p / "triage_config.json").read_text()) for p in (out, parent))
    assert cfg["model_version"].startswith("wf-triage-") and cfg["model_version"] != pcfg["model_version"]
    assert cfg["labels"] == pcfg["labels"] and cfg["max_length"] == pcfg["max_length"]
    ft = cfg["metrics"]["fine_tune"]
    assert ft["parent_model_version"] == pcfg["model_version"] and ft["lineage"] == [pcfg["model_version"]]
    assert ft["n_feedback"] == 12 and ft["n_feedback_rejected"] == 1 and ft["n_feedback_superseded"] == 1
    assert ft["n_acuity_masked"] == 6
    assert ft["feedback_files"] == [{"path": str(tuned["file"]), "sha256": file_sha256(tuned["file"]), "records": 14,
                                     "usable": 13, "rejected": 1}]
    assert len((out / "data" / "feedback.jsonl").read_text().splitlines()) == 12
    assert (out / "data" / "test.jsonl").read_bytes() == (parent / "data" / "test.jsonl").read_bytes()


def test_report_has_before_and_after_on_the_test_split_and_the_feedback(tuned):
    rep = json.loads((tuned["reports"] / "feedback_eval.json").read_text())
    md = (tuned["reports"] / "feedback_eval.md").read_text()
    t = rep["heldout_test"]
    assert t["n"] == 16
    for key in ("unit_macro_f1", "acuity_macro_f1", "needs_macro_f1"):
        assert 0 <= t["before"][key] <= 1 and 0 <= t["after"][key] <= 1
        assert t["delta"][key] == pytest.approx(t["after"][key] - t["before"][key], abs=1e-6)
    f = rep["feedback"]
    assert f["n"] == 12 and f["before"]["n_corrected"] == 12
    assert f["before"]["unit_accuracy"] <= 2 / 12 and f["after"]["unit_accuracy"] >= 11 / 12
    assert f["after"]["predicts_previous_unit_corrected"] <= 1 / 12
    assert f["before"]["n_acuity_known"] == 6            # the null-acuity records are left out of acuity accuracy
    assert rep["parent_model_version"] != rep["model_version"]
    assert rep["records"]["issues"] == [{"file": str(tuned["file"]), "line": 14, "field": "target_unit",
                                         "message": rep["records"]["issues"][0]["message"]}]
    assert "Held-out test split" in md and "corrections learned" in md and "| unit macro-F1 |" in md
    assert "line" in md and "| 14 | target_unit |" in md
    for r in tuned["records"]:                            # the report holds no free text
        assert r["text"] not in md and r["text"] not in json.dumps(rep)


def test_bad_records_are_reported_by_line_and_skipped(tmp_path):
    from inference.config import load_config
    from inference.feedback import load_feedback

    labels = load_config(sup.tiny_trained_model()).labels
    good = feedback_records(3)
    no_text = {k: v for k, v in good[0].items() if k != "text"} | {"encounter_id": "E-nt"}
    lines = [good[0], dict(good[1], target_unit="ICU"), "", no_text, "{not json", dict(good[1], needs=["oxygen"]),
             dict(good[1], acuity=9), good[2], [1, 2], {"value": json.dumps(good[1])}]
    fs = load_feedback([write_lines(tmp_path / "fb.jsonl", lines)], labels)
    assert [it.encounter_id for it in fs.items] == ["E-0", "E-2", "E-1"]          # the envelope's record counts
    got = [(i.line, i.field) for i in fs.issues]
    assert got == [(2, "target_unit"), (4, "text"), (5, None), (6, "needs"), (7, "acuity"), (9, None)]
    assert fs.files[0]["rejected"] == 6 and fs.files[0]["usable"] == 3
    for i in fs.issues:
        assert str(i).startswith(f"file {tmp_path / 'fb.jsonl'}, line {i.line}")
        assert PHRASE not in str(i)


def test_a_file_of_only_bad_records_is_a_one_line_error(tmp_path, capsys):
    from streams.cli import main

    good = feedback_records(2)
    bad = write_lines(tmp_path / "bad.jsonl", [dict(good[0], target_unit="ICU"), {k: v for k, v in good[1].items()
                                                                                   if k != "text"}])
    rc = main(["train", "--feedback", str(bad), "--from-model", str(sup.tiny_trained_model()),
               "--out", str(tmp_path / "m"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "no usable feedback record" in err and "line 1" in err and "'target_unit'" in err
    assert not (tmp_path / "m").exists()
    rc = main(["train", "--feedback", str(tmp_path / "missing.jsonl"), "--from-model", str(sup.tiny_trained_model()),
               "--no-progress"])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_unknown_acuity_is_masked_out_of_the_loss():
    import torch

    from inference.finetune import IGNORE, batch_loss

    torch.manual_seed(0)
    u, a, n = (torch.randn(3, 4, requires_grad=True), torch.randn(3, 5, requires_grad=True),
               torch.randn(3, 2, requires_grad=True))
    yu, yn = torch.tensor([0, 1, 2]), torch.zeros(3, 2)
    ya = torch.tensor([1, IGNORE, 3])
    batch_loss(u, a, n, yu, ya, yn).backward()
    assert torch.all(a.grad[1] == 0) and torch.any(a.grad[0] != 0) and torch.any(u.grad[1] != 0)
    a.grad = None
    loss = batch_loss(u, a, n, yu, torch.full((3,), IGNORE), yn)       # a batch with no acuity at all
    loss.backward()
    assert torch.isfinite(loss) and (a.grad is None or torch.all(a.grad == 0))   # not even in the graph


def test_fine_tuning_is_seeded(tmp_path):
    from inference.finetune import FineTuneSettings, fine_tune, prepare

    fb = write_lines(tmp_path / "fb.jsonl", feedback_records(6))
    s = FineTuneSettings(seed=5, steps=4, batch_size=8, lr_encoder=1e-3, lr_head=5e-3, freeze_layers=0, replay=16,
                         threads=1, progress=False)
    cfgs = [fine_tune(prepare(sup.tiny_trained_model(), [fb], s), tmp_path / name) for name in ("a", "b")]
    assert cfgs[0].model_version == cfgs[1].model_version and cfgs[0].metrics["steps"] == 4
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    s2 = FineTuneSettings(**{**s.__dict__, "seed": 6})
    assert prepare(sup.tiny_trained_model(), [fb], s2).model_version != cfgs[0].model_version


def test_export_works_on_the_fine_tuned_model(tuned, tmp_path):
    from inference.config import load_config
    from inference.export import export_model, load_examples_for

    export_model(tuned["out"], tmp_path, load_examples_for(tuned["out"]), threads=1, progress=False)
    cfg = load_config(tmp_path / "int8")
    assert cfg.model_version == load_config(tuned["out"]).model_version
    assert cfg.metrics["fine_tune"]["n_feedback"] == 12


def test_a_second_round_carries_earlier_feedback_and_can_hold_records_out(tuned, tmp_path):
    from inference.finetune import FineTuneSettings, evaluate_fine_tune, fine_tune, prepare

    again = dict(tuned["records"][0], target_unit="CARDIAC", at=(T0 + timedelta(days=1)).isoformat())  # supersedes
    new = [dict(r, encounter_id=f"N-{i}") for i, r in enumerate(feedback_records(8, seed=9))]
    fb = write_lines(tmp_path / "round2.jsonl", [again] + new)
    s = FineTuneSettings(seed=3, steps=3, batch_size=8, lr_encoder=1e-3, freeze_layers=0, replay=16, holdout=0.5,
                         threads=1, progress=False)
    prep = prepare(tuned["out"], [fb], s)
    assert len(prep.carried_items) == 11 and "E-0" not in {it.encounter_id for it in prep.carried_items}
    assert prep.heldout_items and len(prep.train_items) + len(prep.heldout_items) == 9
    cfg = fine_tune(prep, tmp_path / "m2")
    assert cfg.metrics["fine_tune"]["lineage"] == [load_version(tuned["parent"]), load_version(tuned["out"])]
    rep = evaluate_fine_tune(prep, tmp_path / "m2", tmp_path / "rep", threads=1, progress=False)
    assert rep["earlier_feedback"]["n"] == 11 and rep["feedback_heldout"]["n"] == len(prep.heldout_items)
    assert "held out" in (tmp_path / "rep" / "feedback_eval.md").read_text()
    assert len((tmp_path / "m2" / "data" / "feedback.jsonl").read_text().splitlines()) == 20


def load_version(model_dir: Path) -> str:
    return json.loads((model_dir / "triage_config.json").read_text())["model_version"]


def test_train_without_feedback_keeps_its_defaults(monkeypatch, tmp_path):
    import inference.train as train_mod
    from streams.cli import main

    seen = {}

    def fake_train(examples, labels, out, settings):
        seen.update(settings=settings, out=out)
        raise KeyboardInterrupt                   # stop here: only the wiring is under test

    monkeypatch.setattr(train_mod, "train", fake_train)
    data = sup.write_toy_jsonl(tmp_path / "toy.jsonl")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(data), "--no-progress"]) == 130
    s = seen["settings"]
    assert (s.lr_encoder, s.lr_head, s.train_max_length, s.time_budget_s) == (1e-4, 2e-3, 128, 480.0)
    assert Path(seen["out"]) == Path("models/triage/torch")
    assert main(["train", "--data", str(data), "--replay", "10"]) == 2
