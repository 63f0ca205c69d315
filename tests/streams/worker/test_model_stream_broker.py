"""On the real broker with a small trained model: admissions placed by the model, a deteriorating
patient paged and then escalated when nobody acknowledges, a poison text dead-lettered while the
admissions batched with it are placed."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import orjson
import pytest

from streams.devtools.kafka_io import produce_all, read_until
from tests import events as ev
from tests.inference_support import tiny_exported

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]
HID = "test-hosp"
CALM = dict(resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
            temperature_c=36.8)
SICK = dict(resp_rate=26, spo2=90, on_oxygen=True, systolic_bp=95, heart_rate=118, consciousness="A",
            temperature_c=38.6)


def test_model_placements_and_an_unacknowledged_page_escalating(broker, run_id, start_worker):
    model_dir = tiny_exported() / "int8"
    version = json.loads((model_dir / "triage_config.json").read_text())["model_version"]
    prefix = f"{run_id}."
    start_worker(model_path=model_dir, allow_no_model=False)
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, age=40 + i, sex="F", event_id=f"a{i}",
                          text="Crushing central chest pain radiating to the left arm, sweaty.") for i in range(3)]
    items += [
        ev.admission(HID, "PX", "EX", 5, age=80, sex="M", requested_unit="MEDICINE", event_id="ax"),
        ev.vitals(HID, "PX", "EX", 10, event_id="v1", **CALM),
        ev.vitals(HID, "PX", "EX", 70, event_id="v2", **SICK),
        ev.bed_status(HID, "SURG-SR1", "cleaning", 90, event_id="b1"),  # 20 minutes on: nobody acknowledged
    ]
    asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, i) for i in items]))

    def done(records) -> bool:
        return any(orjson.loads(r.value)["kind"] == "escalation" for r in records)

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], done, timeout_s=120, settle_s=2))
    decisions = [orjson.loads(r.value) for r in records]
    by_cause = {d["caused_by"]: d for d in decisions}
    for i in range(3):
        d = by_cause[f"a{i}"]
        assert d["prediction"]["model_version"] == version, d
        assert d["kind"] in ("assignment", "needs_confirmation", "no_bed", "no_bed_needed")
        assert abs(sum(d["prediction"]["unit_probs"].values()) - 1) < 1e-3
        assert "text" not in d and "Crushing" not in orjson.dumps(d).decode()
    page = next(d for d in decisions if d["kind"] == "page")
    escalation = next(d for d in decisions if d["kind"] == "escalation")
    assert page["caused_by"] == "v2" and page["role"] == "critical_care_outreach" and "resp rate 26" in page["reasons"][0]["text"]
    assert escalation["caused_by"] == "b1" and escalation["role"] == "rapid_response"


def _poisoned_copy(model_dir: Path, out: Path, word: str) -> Path:
    """The model with one vocabulary entry past its embedding table: a text holding `word` makes the
    ONNX run fail (as a tokenizer/model mismatch or a runtime fault on one odd input would)."""
    shutil.copytree(model_dir, out)
    tokenizer = json.loads((out / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab[word] = len(vocab) + 5000
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    return out


def test_a_poison_text_goes_to_dead_letters_while_its_batch_neighbours_are_placed(broker, run_id, start_worker,
                                                                                  tmp_path):
    model_dir = _poisoned_copy(tiny_exported() / "int8", tmp_path / "poisoned", "zzpoison")
    prefix = f"{run_id}."
    start_worker(model_path=model_dir, allow_no_model=False, inference_batch_wait_ms=200)
    text = "Crushing central chest pain radiating to the left arm, sweaty."
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, age=50 + i, sex="M", event_id=f"a{i}",
                          text=("zzpoison " + text) if i == 2 else text) for i in range(5)]
    asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, i) for i in items]))

    def done(records) -> bool:
        causes = {orjson.loads(r.value).get("caused_by") for r in records if r.topic.endswith("decisions")}
        letters = [r for r in records if r.topic.endswith("dead-letters")]
        return {"a0", "a1", "a3", "a4"} <= causes and bool(letters)

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions", f"{prefix}dead-letters"], done,
                                     timeout_s=120, settle_s=2))
    decisions = [orjson.loads(r.value) for r in records if r.topic.endswith("decisions")]
    letters = [orjson.loads(r.value) for r in records if r.topic.endswith("dead-letters")]
    assert {d["caused_by"] for d in decisions} == {"a0", "a1", "a3", "a4"}  # nothing for the poisoned one
    for d in decisions:
        assert d["prediction"]["model_version"] and d["kind"] in ("assignment", "needs_confirmation", "no_bed", "no_bed_needed")
    [letter] = letters
    assert letter["topic"] == f"{prefix}admissions" and letter["field"] == "text"
    assert letter["code"] == "inference_error", letter
    assert orjson.loads(letter["value"])["event_id"] == "a2"  # the original event is kept for replay
    assert "zzpoison" not in letter["message"]  # the reason names the field, never echoes the text
