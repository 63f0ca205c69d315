"""The model in the stream: micro-batched triage of admissions, between sequencer and state.

The sequencer hands each released batch of admissions to the model (up to
`inference_batch_size` texts, gathered for at most `inference_batch_wait_ms`), in a worker
thread so the event loop keeps consuming. Each prediction, or the reason one failed, rides
with its admission to the state agent in the stages' envelope (`streams.contract.envelope`): the text
itself never leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from inference.interface import PredictionFailed, TriageModel, TriagePrediction, TriageRequest
from streams.contract.envelope import PredictionFailure
from streams.contract.models import Admission, PredictionOut
from streams.contract.validation import ContractViolation, decode_event
from streams.pipeline.metrics import WorkerMetrics


def triage_request(event: Admission) -> TriageRequest:
    """The model's input for an admission the contract accepted."""
    return TriageRequest(id=event.event_id, text=event.text, age=float(event.age), sex=event.sex)


def decoded_admission(value: bytes | None) -> Admission | None:
    """The admission, decoded once for the model; None for anything the contract refuses (the state agent
    dead-letters it with the reason)."""
    try:
        event = decode_event("admissions", value)
    except ContractViolation:
        return None
    return event if isinstance(event, Admission) else None


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


def prediction_out(result: TriagePrediction) -> PredictionOut:
    """The model's prediction as the contract carries it, from the sequencer stage to the decisions (the
    request's `id` is not part of it)."""
    return PredictionOut.model_validate(result.to_dict())


def envelope_parts(result: TriagePrediction | PredictionFailed) -> tuple[PredictionOut | None, PredictionFailure | None]:
    """(prediction, failure) for the envelope: exactly one of them is set."""
    if isinstance(result, PredictionFailed):
        return None, PredictionFailure(result.code, result.message)
    return prediction_out(result), None
