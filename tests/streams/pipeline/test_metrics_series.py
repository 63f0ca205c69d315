"""Honest metrics: every labelled error series exists at 0 from the start, batch-size quantiles are whole texts,
and the share of escalated pages counts each page once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import generate_latest

from allocator.hospital import load_hospitals
from streams.contract.validation import CODES
from streams.devtools.memory import InMemoryWorker
from streams.pipeline.metrics import BATCH_BUCKETS, ERROR_STAGES, WorkerMetrics
from streams.pipeline.processor import STATE_CODES, RawMessage
from tests import events as ev

FIXTURE = Path(__file__).parents[2] / "fixtures" / "stream_hospital.yaml"
HID = "test-hosp"


def _samples(metrics: WorkerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_error_and_dead_letter_series_exist_at_zero_from_the_start():
    text = _samples(WorkerMetrics())
    for stage in ERROR_STAGES:
        assert f'wardflow_event_errors_total{{stage="{stage}"}} 0.0' in text
    for code in (*CODES, *STATE_CODES):
        assert f'wardflow_dead_letters_total{{code="{code}"}} 0.0' in text
    assert "wardflow_pages_escalated_total 0.0" in text


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus' histogram_quantile over cumulative (le, count) pairs (linear inside a bucket)."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return buckets[-1][0]


def test_batch_size_quantiles_are_whole_texts():
    metrics = WorkerMetrics()
    for _ in range(100):
        metrics.inference_batch.observe(1)
    counts = []
    for sample in metrics.inference_batch.collect()[0].samples:
        if sample.name.endswith("_bucket") and sample.labels["le"] != "+Inf":
            counts.append((float(sample.labels["le"]), sample.value))
    assert round(_quantile(counts, 0.5), 6) == 1.0  # was 0.5 with a bucket (0, 1]
    assert 1.0 <= _quantile(counts, 0.95) < 1.5
    assert all(b % 1 == 0.5 for b in BATCH_BUCKETS)


def test_escalated_pages_never_exceed_pages():
    """One page escalated up the whole chain is one escalated page, whatever the number of escalations."""
    worker = InMemoryWorker(load_hospitals(FIXTURE))
    items = [ev.admission(HID, "P1", "E1", 0, requested_unit="MEDICINE", event_id="a1"),
             ev.vitals(HID, "P1", "E1", 5, event_id="v1", resp_rate=25, spo2=95, on_oxygen=False, systolic_bp=120,
                       heart_rate=100, consciousness="A", temperature_c=37.0)]  # NEWS2 5: urgent response
    items += [ev.bed_status(HID, "SURG-SR1", "dirty", m, event_id=f"tick-{m}") for m in range(20, 200, 15)]
    msgs = [RawMessage(topic=f"wardflow.{t}", partition=0, offset=i, key=k, value=v)
            for i, (t, k, v) in enumerate(ev.encode("", item) for item in items)]
    asyncio.run(worker.feed(msgs))
    m = worker.processor.metrics
    escalations = sum(s.value for s in m.escalations.collect()[0].samples if s.name.endswith("_total"))
    pages = sum(s.value for s in m.pages.collect()[0].samples if s.name.endswith("_total"))
    escalated = m.pages_escalated._value.get()
    assert pages == 1 and escalations >= 2, (pages, escalations)
    assert escalated == 1
