"""The worker's processing without a broker: dict tables and a list sink.

Used by tests (the same scenarios as on the real broker) and to recompute the expected
state from an input stream after a crash test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from allocator.hospital import Hospital
from streams.contract.models import DeadLetter, Decision, FeedbackOut
from streams.pipeline.metrics import WorkerMetrics
from streams.pipeline.processor import EventProcessor, Outcome, RawMessage
from streams.state.handlers import HandlerContext
from streams.state.tables import TABLE_NAMES


class ListSink:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []
        self.dead_letters: list[DeadLetter] = []
        self.feedback: list[FeedbackOut] = []

    async def send_outputs(self, hospital_id: str, outputs: dict[str, list[str]]) -> None:
        self.decisions.extend(Decision.model_validate_json(d) for d in outputs.get("decisions", []))
        self.feedback.extend(FeedbackOut.model_validate_json(f) for f in outputs.get("feedback", []))

    async def send_dead_letter(self, key: bytes | None, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    async def flush(self) -> None:
        """Nothing is in flight in memory."""


class InMemoryWorker:
    """An EventProcessor over plain dicts; `feed()` runs messages through it in order."""

    def __init__(self, hospitals: Mapping[str, Hospital], *, topic_prefix: str = "wardflow.",
                 retention: timedelta = timedelta(hours=72), context: HandlerContext | None = None,
                 tables: dict[str, dict[str, Any]] | None = None) -> None:
        self.tables: dict[str, dict[str, Any]] = tables if tables is not None else {name: {} for name in TABLE_NAMES}
        self.sink = ListSink()
        self.processor = EventProcessor(topic_prefix=topic_prefix, hospitals=hospitals, tables=self.tables,
                                        sink=self.sink, metrics=WorkerMetrics(), dedupe_retention=retention,
                                        context=context)

    async def feed(self, messages: Iterable[RawMessage]) -> list[Outcome]:
        return [await self.processor.process(m) for m in messages]
