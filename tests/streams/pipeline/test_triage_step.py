"""The worker's inference step: one poison text fails alone, its neighbours are predicted."""

from __future__ import annotations

import asyncio

from inference.interface import PredictionFailed, Reason, TriagePrediction, TriageRequest
from streams.contract.envelope import PredictionFailure
from streams.contract.models import PredictionOut
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.triage import decoded_admission, envelope_parts, predict, prediction_out, triage_request
from tests import events as ev


class FussyModel:
    """Fails any batch holding the word POISON, like a runtime error on one odd input would."""

    model_version = "fussy-1"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_batch(self, requests):
        self.calls.append(len(requests))
        if any("POISON" in r.text for r in requests):
            raise RuntimeError("kernel failure")
        return [TriagePrediction(id=r.id, target_unit="MEDICINE", unit_probs={"MEDICINE": 0.9}, acuity=3,
                                 acuity_probs={"3": 1.0}, needs=(), need_probs={}, uncertain=False,
                                 model_version=self.model_version) for r in requests]


def test_a_poison_text_fails_alone_and_its_batch_goes_on():
    model = FussyModel()
    reqs = [TriageRequest(id=f"r{i}", text=("POISON " if i == 2 else "") + "chest pain", age=60, sex="M")
            for i in range(5)]
    metrics = WorkerMetrics()
    out = asyncio.run(predict(model, reqs, batch_size=8, metrics=metrics))
    assert [type(o).__name__ for o in out] == ["TriagePrediction"] * 2 + ["PredictionFailed"] + ["TriagePrediction"] * 2
    assert out[2].code == "inference_failed" and "text" in out[2].message and "POISON" not in out[2].message
    assert model.calls == [5, 1, 1, 1, 1, 1]  # the batch, then one by one
    assert metrics.errors.labels(stage="inference")._value.get() == 1


def test_batches_are_cut_at_the_configured_size():
    model = FussyModel()
    reqs = [TriageRequest(id=f"r{i}", text="cough", age=30, sex="F") for i in range(70)]
    asyncio.run(predict(model, reqs, batch_size=32, metrics=WorkerMetrics()))
    assert model.calls == [32, 32, 6]


def test_an_admission_becomes_a_typed_request_and_a_typed_prediction_without_the_text():
    topic, key, value = ev.encode("", ev.admission("h", "P1", "E1", 0, text="SECRET words", event_id="a1"))
    admission = decoded_admission(value)
    assert admission is not None and decoded_admission(b"{broken") is None
    req = triage_request(admission)
    assert req.id == "a1" and req.text == "SECRET words"
    [pred] = asyncio.run(predict(FussyModel(), [req], 8, WorkerMetrics()))
    prediction, failure = envelope_parts(pred)
    assert isinstance(prediction, PredictionOut) and failure is None
    assert prediction.target_unit == "MEDICINE" and prediction.model_version == "fussy-1"
    assert b"SECRET" not in prediction.model_dump_json().encode()
    failed = envelope_parts(PredictionFailed(id="a1", code="inference_failed", message="field 'text'"))
    assert failed == (None, PredictionFailure("inference_failed", "field 'text'"))


def test_the_prediction_keeps_every_figure_and_reason_of_the_model():
    result = TriagePrediction(id="a1", target_unit="ICU", unit_probs={"ICU": 0.61, "MEDICINE": 0.39}, acuity=1,
                              acuity_probs={"1": 0.4, "2": 0.6}, needs=("telemetry",), need_probs={"telemetry": 0.7},
                              uncertain=True, model_version="m1",
                              reasons=(Reason("acuity_floor", "acuity raised to 1: BP 76/44 with HR 128"),))
    out = prediction_out(result)
    assert out.model_dump(mode="json") == {k: v for k, v in result.to_dict().items() if k != "id"}
