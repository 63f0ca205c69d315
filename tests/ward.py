"""A worker in memory over the stream tests' hospital: send events, get the decisions they caused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from allocator.hospital import Hospital, load_hospitals
from streams.contract.envelope import PredictionFailure
from streams.contract.models import Decision, PredictionOut
from streams.devtools.memory import InMemoryWorker
from streams.pipeline.processor import RawMessage
from streams.state.handlers import HandlerContext
from tests import events as ev

FIXTURE = Path(__file__).parent / "fixtures" / "stream_hospital.yaml"
HID = "test-hosp"


class Ward:
    """The same processor as on the broker, fed in order with consecutive offsets."""

    def __init__(self, hospitals: dict[str, Hospital] | None = None, context: HandlerContext | None = None) -> None:
        self.worker = InMemoryWorker(hospitals or load_hospitals(FIXTURE), context=context)
        self.offset = 0

    def send(self, *items, predicted: dict | None = None, error: dict | None = None) -> list[Decision]:
        """Feed `items` (tests.events builders); `predicted`/`error`: the sequencer's model output for each."""
        before = len(self.worker.sink.decisions)
        msgs = []
        for item in items:
            topic, key, value = ev.encode("wardflow.", item)
            msgs.append(RawMessage(topic=topic, partition=0, offset=self.offset, key=key, value=value,
                                   prediction=None if predicted is None else PredictionOut.model_validate(predicted),
                                   prediction_error=None if error is None else PredictionFailure(**error)))
            self.offset += 1
        asyncio.run(self.worker.feed(msgs))
        return self.worker.sink.decisions[before:]
