"""On the real broker with a small trained model: admissions placed by the model, a deteriorating
patient paged and then escalated when nobody acknowledges."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from streams.kafka_io import produce_all, read_until
from tests import events as ev
from tests.inference_support import tiny_exported

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]
HID = "test-hosp"
CALM = dict(resp_rate=16, spo2=97, on_oxygen=False, systolic_bp=125, heart_rate=72, consciousness="A",
            temperature_c=36.8)
SICK = dict(resp_rate=26, spo2=90, on_oxygen=True, systolic_bp=95, heart_rate=118, consciousness="A",
            temperature_c=38.6)


def test_model_placements_and_an_unacknowledged_page_escalating(broker, run_id, start_worker):
    model_dir = tiny_exported() / "int8"
    version = json.loads((model_dir / "triage_config.json").read_text())["model_version"]
    prefix = f"{run_id}."
    start_worker(model_path=model_dir, allow_no_model=False)
    items = [ev.admission(HID, f"P{i}", f"E{i}", i, age=40 + i, sex="F", event_id=f"a{i}",
                          text="Crushing central chest pain radiating to the left arm, sweaty.") for i in range(3)]
    items += [
        ev.admission(HID, "PX", "EX", 5, age=80, sex="M", requested_unit="MEDICINE", event_id="ax"),
        ev.vitals(HID, "PX", "EX", 10, event_id="v1", **CALM),
        ev.vitals(HID, "PX", "EX", 70, event_id="v2", **SICK),
        ev.bed_status(HID, "SURG-SR1", "cleaning", 90, event_id="b1"),  # 20 minutes on: nobody acknowledged
    ]
    asyncio.run(produce_all(broker.bootstrap, [ev.encode(prefix, i) for i in items]))

    def done(records) -> bool:
        return any(orjson.loads(r.value)["kind"] == "escalation" for r in records)

    records = asyncio.run(read_until(broker.bootstrap, [f"{prefix}decisions"], done, timeout_s=120, settle_s=2))
    decisions = [orjson.loads(r.value) for r in records]
    by_cause = {d["caused_by"]: d for d in decisions}
    for i in range(3):
        d = by_cause[f"a{i}"]
        assert d["prediction"]["model_version"] == version, d
        assert d["kind"] in ("assignment", "needs_confirmation", "no_bed", "no_bed_needed")
        assert abs(sum(d["prediction"]["unit_probs"].values()) - 1) < 1e-3
        assert "text" not in d and "Crushing" not in orjson.dumps(d).decode()
    page = next(d for d in decisions if d["kind"] == "page")
    escalation = next(d for d in decisions if d["kind"] == "escalation")
    assert page["caused_by"] == "v2" and page["role"] == "critical_care_outreach" and "resp rate 26" in page["reasons"][0]["text"]
    assert escalation["caused_by"] == "b1" and escalation["role"] == "rapid_response"
