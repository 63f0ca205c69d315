"""Building decisions with deterministic ids, so a replay re-emits byte-identical decisions.

A decision's id is derived from its cause (hospital, event id) and its position among the
decisions that event caused; `created_at` is the cause's event time, not the wall clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from allocator.placement import Reason
from streams.contract.models import Decision, FeedbackOut, ReasonOut

_NAMESPACE = uuid.UUID("6f1d2c1e-5b0a-4c37-9a55-1f0e8f5d2b11")


def decision_id(hospital_id: str, caused_by: str, kind: str, seq: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{hospital_id}|{caused_by}|{kind}|{seq}"))


def reasons_out(reasons: Iterable[Reason | ReasonOut | tuple[str, str]]) -> list[ReasonOut]:
    out = []
    for r in reasons:
        if isinstance(r, ReasonOut):
            out.append(r)
        elif isinstance(r, tuple):
            out.append(ReasonOut(code=r[0], text=r[1]))
        else:
            out.append(ReasonOut(code=r.code, text=r.text))
    return out


class DecisionLog:
    """Collects the decisions one event causes, numbering them for deterministic ids."""

    def __init__(self, hospital_id: str, caused_by: str, created_at: datetime) -> None:
        self.hospital_id = hospital_id
        self.caused_by = caused_by
        self.created_at = created_at
        self.decisions: list[Decision] = []
        self.feedback: list[FeedbackOut] = []

    def add(self, kind: str, reasons: Iterable[Reason | ReasonOut | tuple[str, str]], **fields: Any) -> Decision:
        decision = Decision(
            decision_id=decision_id(self.hospital_id, self.caused_by, kind, len(self.decisions)),
            kind=kind,
            hospital_id=self.hospital_id,
            created_at=self.created_at,
            caused_by=self.caused_by,
            reasons=reasons_out(reasons),
            **fields,
        )
        self.decisions.append(decision)
        return decision

    def add_feedback(self, record: Any, model_version: str | None) -> FeedbackOut:
        """An `allocator.feedback.FeedbackRecord` as the feedback topic carries it."""
        out = FeedbackOut(feedback_id=decision_id(self.hospital_id, self.caused_by, "feedback", len(self.feedback)),
                          hospital_id=self.hospital_id, caused_by=self.caused_by, model_version=model_version,
                          **{**record.to_dict(), "at": record.at, "needs": list(record.needs)})
        self.feedback.append(out)
        return out
