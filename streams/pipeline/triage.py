"""The model in the stream: micro-batched triage of admissions, between sequencer and state.

The sequencer hands each released batch of admissions to the model (up to
`inference_batch_size` texts, gathered for at most `inference_batch_wait_ms`), in a worker
thread so the event loop keeps consuming. Each prediction, or the reason one failed, rides
with its admission to the state agent in a message header: the text itself never leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson

from inference.interface import PredictionFailed, TriageModel, TriagePrediction, TriageRequest
from streams.contract.models import Admission
from streams.contract.validation import ContractViolation, decode_event
from streams.pipeline.metrics import WorkerMetrics

H_PREDICTION = "wardflow-prediction"
H_PREDICTION_ERROR = "wardflow-prediction-error"


def triage_request(value: bytes | None) -> TriageRequest | None:
    """The model's input for a valid admission; None for anything the contract refuses (dead-lettered later)."""
    try:
        event = decode_event("admissions", value)
    except ContractViolation:
        return None
    assert isinstance(event, Admission)
    return TriageRequest(id=event.event_id, text=event.text, age=float(event.age), sex=event.sex)


async def predict(model: TriageModel, requests: Sequence[TriageRequest], batch_size: int,
                  metrics: WorkerMetrics) -> list[TriagePrediction | PredictionFailed]:
    """Predictions aligned with `requests`; a failing batch is retried one by one, so one bad text fails alone."""
    loop = asyncio.get_running_loop()
    results: list[TriagePrediction | PredictionFailed] = []
    for start in range(0, len(requests), batch_size):
        chunk = list(requests[start:start + batch_size])
        began = time.perf_counter()
        try:
            out = await loop.run_in_executor(None, model.predict_batch, chunk)
        except Exception:  # noqa: BLE001 - isolate the culprit instead of failing its neighbours
            metrics.errors.labels(stage="inference").inc()
            out = [await _predict_one(loop, model, r) for r in chunk]
        metrics.inference_batch.observe(len(chunk))
        metrics.inference_latency.observe(time.perf_counter() - began)
        for r in out:
            if isinstance(r, TriagePrediction):
                metrics.predictions.labels(unit=r.target_unit, uncertain=str(r.uncertain).lower()).inc()
        results.extend(out)
    return results


async def _predict_one(loop: asyncio.AbstractEventLoop, model: TriageModel,
                       request: TriageRequest) -> TriagePrediction | PredictionFailed:
    try:
        return (await loop.run_in_executor(None, model.predict_batch, [request]))[0]
    except Exception as exc:  # noqa: BLE001 - reported on the event, never with its text
        return PredictionFailed(id=request.id, code="inference_failed",
                                message=f"admissions: the model failed on field 'text' ({type(exc).__name__})")


def prediction_headers(result: TriagePrediction | PredictionFailed) -> list[tuple[str, bytes]]:
    if isinstance(result, PredictionFailed):
        return [(H_PREDICTION_ERROR, orjson.dumps({"code": result.code, "message": result.message}))]
    body = {"target_unit": result.target_unit, "unit_probs": result.unit_probs, "acuity": result.acuity,
            "acuity_probs": result.acuity_probs, "needs": list(result.needs), "need_probs": result.need_probs,
            "uncertain": result.uncertain, "model_version": result.model_version,
            "reasons": [r.to_dict() for r in result.reasons]}
    return [(H_PREDICTION, orjson.dumps(body))]


def read_prediction(headers: dict[str, bytes]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(prediction, error) carried by a message of the ordered topic."""
    pred = headers.get(H_PREDICTION)
    err = headers.get(H_PREDICTION_ERROR)
    return (orjson.loads(pred) if pred else None), (orjson.loads(err) if err else None)
