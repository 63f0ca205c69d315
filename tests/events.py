"""Builders for contract events in tests: valid by default, every field overridable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import orjson

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
_ids = count(1)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _event(hospital_id: str, minutes: float, event_id: str | None, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id or f"ev-{next(_ids)}", "hospital_id": hospital_id, "occurred_at": at(minutes), **fields}


def admission(hid: str, pid: str, eid: str, minutes: float = 0, *, age: float = 70, sex: str = "F",
              text: str = "Productive cough and fever for three days.", event_id: str | None = None,
              **extra: Any) -> tuple[str, dict]:
    return "admissions", _event(hid, minutes, event_id, patient_id=pid, encounter_id=eid, age=age, sex=sex,
                                text=text, **extra)


def transfer(hid: str, pid: str, eid: str, to_bed: str, minutes: float = 0, event_id: str | None = None):
    return "transfers", _event(hid, minutes, event_id, patient_id=pid, encounter_id=eid, to_bed_id=to_bed)


def discharge(hid: str, pid: str, eid: str, minutes: float = 0, event_id: str | None = None, **extra: Any):
    return "discharges", _event(hid, minutes, event_id, patient_id=pid, encounter_id=eid, **extra)


def bed_status(hid: str, bed: str, status: str, minutes: float = 0, event_id: str | None = None):
    return "bed-status", _event(hid, minutes, event_id, bed_id=bed, status=status)


def vitals(hid: str, pid: str, eid: str, minutes: float = 0, event_id: str | None = None, **values: Any):
    return "vitals", _event(hid, minutes, event_id, patient_id=pid, encounter_id=eid, **values)


def encode(prefix: str, item: tuple[str, dict]) -> tuple[str, bytes, bytes]:
    """(topic, key, value) ready for the producer."""
    topic, body = item
    return f"{prefix}{topic}", body["hospital_id"].encode(), orjson.dumps(body)


def override(hid: str, decision_id: str, action: str, clinician: str, minutes: float = 0, *,
             bed: str | None = None, deliberate: bool = False, reason: str = "clinical judgement",
             event_id: str | None = None):
    body = _event(hid, minutes, event_id, decision_id=decision_id, action=action, clinician_id=clinician,
                  reason=reason, deliberate=deliberate)
    if bed is not None:
        body["bed_id"] = bed
    return "overrides", body
