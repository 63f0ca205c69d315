"""Prometheus metrics of a worker, in their own registry (one per worker, none global).

Labels carry topics, codes, kinds, units and roles only: never a patient identifier or text.
"""

from __future__ import annotations

from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Batch sizes are whole texts: bucket bounds halfway between whole numbers, so a quantile interpolated
# inside a bucket lands on the sizes that bucket holds (all batches of 1 give p50 = 1.0, not 0.5).
BATCH_BUCKETS = (0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 8.5, 12.5, 16.5, 24.5, 32.5, 48.5, 64.5, 128.5, 256.5, 512.5, 1024.5)
# Every stage of wardflow_event_errors_total, exported at 0 from the start (a panel never says "No data").
ERROR_STAGES = ("apply", "guard", "inference", "flush_slow", "ordered_gap")

METRIC_NAMES = (
    "wardflow_events_in_total", "wardflow_dead_letters_total", "wardflow_decisions_total",
    "wardflow_decision_latency_seconds", "wardflow_unit_occupancy_ratio", "wardflow_unit_beds",
    "wardflow_patients_waiting", "wardflow_duplicates_total", "wardflow_event_errors_total",
    "wardflow_inference_batch_size", "wardflow_inference_latency_seconds", "wardflow_predictions_total",
    "wardflow_news2_scores_total", "wardflow_pages_total", "wardflow_escalations_total", "wardflow_surge_level",
    "wardflow_pages_escalated_total", "wardflow_checkpoint_events", "wardflow_sequencer_end_offset_listings_total",
)


class WorkerMetrics:
    """All metrics one worker exports; `serve(port)` starts the /metrics endpoint."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("wardflow_events_in", "Input messages received, by contract topic", ["topic"], registry=r)
        self.dead_letters = Counter("wardflow_dead_letters", "Messages sent to dead-letters, by error code", ["code"], registry=r)
        self.decisions = Counter("wardflow_decisions", "Decisions emitted, by kind", ["kind"], registry=r)
        self.feedback = Counter("wardflow_feedback_records", "Feedback records for training, by source", ["source"], registry=r)
        self.duplicates = Counter("wardflow_duplicates", "Repeated event_ids ignored", ["topic"], registry=r)
        self.errors = Counter("wardflow_event_errors", "Unexpected processing trouble by stage (apply: the event was "
                              "dead-lettered; flush_slow: a broker acknowledgement took longer than flush_warn_s; "
                              "ordered_gap: the state agent was handed events past a gap and sought back)",
                              ["stage"], registry=r)
        self.latency = Histogram("wardflow_decision_latency_seconds",
                                 "From the event's arrival at the broker to its decisions acknowledged",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.occupancy = Gauge("wardflow_unit_occupancy_ratio", "Occupied or held beds / beds, per unit",
                               ["hospital", "unit"], registry=r)
        self.beds = Gauge("wardflow_unit_beds", "Beds per unit by status", ["hospital", "unit", "status"], registry=r)
        self.inference_batch = Histogram("wardflow_inference_batch_size", "Texts per inference batch",
                                         buckets=BATCH_BUCKETS, registry=r)
        self.inference_latency = Histogram("wardflow_inference_latency_seconds", "Model time per inference batch",
                                           buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("wardflow_predictions", "Predictions by target unit and uncertainty",
                                   ["unit", "uncertain"], registry=r)
        self.news2 = Counter("wardflow_news2_scores", "Complete NEWS2 scores by band", ["band"], registry=r)
        self.pages = Counter("wardflow_pages", "Pages sent, by role", ["role"], registry=r)
        self.escalations = Counter("wardflow_escalations", "Escalations of unacknowledged pages, by role", ["role"],
                                   registry=r)
        self.pages_escalated = Counter("wardflow_pages_escalated", "Pages escalated at least once (counted at their "
                                       "first escalation): over wardflow_pages_total, the share escalated",
                                       registry=r)
        self.surge = Gauge("wardflow_surge_level", "Surge level (OPEL-style, 1-4) per hospital", ["hospital"],
                           registry=r)
        self.waiting = Gauge("wardflow_patients_waiting", "Patients waiting for a bed", ["hospital"], registry=r)
        self.end_offset_listings = Counter("wardflow_sequencer_end_offset_listings", "Log-end offsets asked of the "
                                           "broker by the sequencer (one request each) for topics the fetcher had "
                                           "not reported, or whose last listing an event queued since made stale",
                                           registry=r)
        self.checkpoint_events = Histogram("wardflow_checkpoint_events", "Events applied per checkpoint (one broker "
                                           "round trip each) by the state agent", buckets=BATCH_BUCKETS, registry=r)

        self._zero_series()

    def _zero_series(self) -> None:
        """Labelled error series exist at 0 from the start: a rate is 0, not "No data", until one happens."""
        from streams.contract.models import INPUT_MODELS, DecisionKind
        from streams.contract.validation import CODES
        from streams.pipeline.processor import STATE_CODES

        for stage in ERROR_STAGES:
            self.errors.labels(stage=stage)
        for code in (*CODES, *STATE_CODES):
            self.dead_letters.labels(code=code)
        for topic in INPUT_MODELS:
            self.events_in.labels(topic=topic)
            self.duplicates.labels(topic=topic)
        for kind in get_args(DecisionKind):
            self.decisions.labels(kind=kind)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
