"""The worker's inference step: one poison text fails alone, its neighbours are predicted."""

from __future__ import annotations

import asyncio

from inference.interface import PredictionFailed, TriagePrediction, TriageRequest
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.triage import predict, prediction_headers, read_prediction, triage_request
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


def test_predictions_ride_in_headers_without_the_text():
    topic, key, value = ev.encode("", ev.admission("h", "P1", "E1", 0, text="SECRET words", event_id="a1"))
    req = triage_request(value)
    assert req is not None and req.id == "a1" and req.text == "SECRET words"
    assert triage_request(b"{broken") is None
    pred = asyncio.run(predict(FussyModel(), [req], 8, WorkerMetrics()))[0]
    headers = dict(prediction_headers(pred))
    assert b"SECRET" not in b"".join(headers.values())
    got, err = read_prediction(headers)
    assert got["target_unit"] == "MEDICINE" and got["model_version"] == "fussy-1" and err is None
    failed = dict(prediction_headers(PredictionFailed(id="a1", code="inference_failed", message="field 'text'")))
    assert read_prediction(failed) == (None, {"code": "inference_failed", "message": "field 'text'"})
