"""FHIR R4 in and out (streams.gateway.fhir_map, streams.gateway.fhir): R4B validation, OperationOutcome, events."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.operationoutcome import OperationOutcome

from allocator.hospital import load_hospitals
from streams.contract.models import Admission, BedStatusChange, Cancellation, Discharge, Transfer, Vitals
from streams.devtools.broker import free_port
from streams.devtools.kafka_io import read_until
from streams.gateway.fhir_map import (
    DecisionsProjection,
    FhirRefused,
    bundle_events,
    location_resources,
    validate_bundle,
)

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hl7_hospital.yaml"
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def hospital():
    return load_hospitals(FIXTURE)["test-hosp"]


PATIENT = {"resourceType": "Patient", "id": "P1", "birthDate": "1948-02-03", "gender": "female"}


def encounter(status: str = "in-progress", locations=(), **extra) -> dict:
    return {"resourceType": "Encounter", "id": "E1", "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/P1"}, "period": {"start": "2026-11-24T08:15:00+00:00"},
            "location": [{"location": {"reference": f"Location/{ref}"}, "status": st} for ref, st in locations],
            **extra}


def bundle(*resources: dict, kind: str = "transaction", bundle_id: str = "B1") -> bytes:
    entries = [{"fullUrl": f"urn:uuid:{i}", "resource": r,
                **({"request": {"method": "PUT", "url": f"{r['resourceType']}/{r.get('id', i)}"}}
                   if kind in ("transaction", "batch") else {})} for i, r in enumerate(resources)]
    return orjson.dumps({"resourceType": "Bundle", "id": bundle_id, "type": kind, "entry": entries})


def events(body: bytes, hospital):
    data, _ = validate_bundle(body)
    return bundle_events(data, hospital, NOW)


def test_encounter_in_progress_with_a_planned_unit_is_an_admission(hospital):
    (out,) = events(bundle(PATIENT, encounter(locations=[("MED", "planned")],
                                               reasonCode=[{"text": "Fall at home, hip pain"}])), hospital)
    e = out.event
    assert isinstance(e, Admission)
    assert (e.patient_id, e.encounter_id, e.age, e.sex, e.requested_unit, e.text) == \
        ("P1", "E1", 78.0, "F", "MED", "Fall at home, hip pain")


def test_a_created_encounter_in_an_active_bed_is_an_admission_to_that_bed(hospital):
    body = orjson.loads(bundle(PATIENT, encounter(locations=[("MED-SR1", "active")], reasonCode=[{"text": "Sepsis"}])))
    body["entry"][1]["request"]["method"] = "POST"
    (out,) = events(orjson.dumps(body), hospital)
    assert isinstance(out.event, Admission) and (out.event.bed_id, out.event.requested_unit) == ("MED-SR1", "MED")


def test_encounter_with_an_active_bed_is_a_transfer_and_finished_a_discharge(hospital):
    (t,) = events(bundle(encounter(locations=[("MED-B1-A", "completed"), ("MED-SR1", "active")])), hospital)
    assert isinstance(t.event, Transfer) and t.event.to_bed_id == "MED-SR1"
    (d,) = events(bundle(encounter("finished", period={"start": "2026-11-24T08:00:00Z",
                                                       "end": "2026-11-24T10:00:00Z"})), hospital)
    assert isinstance(d.event, Discharge) and d.event.occurred_at.hour == 10
    (c,) = events(bundle(encounter("entered-in-error")), hospital)
    assert isinstance(c.event, Cancellation) and (c.topic, c.event.cancels) == ("cancellations", "admission")


def test_vital_signs_observations_with_ucum_units(hospital):
    obs = [{"resourceType": "Observation", "id": f"O{i}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/P1"}, "encounter": {"reference": "Encounter/E1"},
            "effectiveDateTime": "2026-11-24T08:30:00+00:00", "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": u}}
           for i, (code, v, u) in enumerate([("9279-1", 22, "/min"), ("8310-5", 100.4, "[degF]")])]
    bp = {"resourceType": "Observation", "id": "BP", "status": "final", "code": {"coding": [
        {"system": "http://loinc.org", "code": "85354-9"}]}, "subject": {"reference": "Patient/P1"},
        "encounter": {"reference": "Encounter/E1"}, "effectiveDateTime": "2026-11-24T08:30:00Z",
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                       "valueQuantity": {"value": 92, "code": "mm[Hg]"}},
                      {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                       "valueQuantity": {"value": 60, "code": "mm[Hg]"}}]}
    got = [o.event for o in events(bundle(*obs, bp, kind="message"), hospital)]
    assert all(isinstance(v, Vitals) for v in got)
    assert [(v.resp_rate, v.temperature_c, v.systolic_bp) for v in got] == [(22, None, None), (None, 38.0, None),
                                                                            (None, None, 92)]
    bad = dict(obs[0], valueQuantity={"value": 22, "code": "kg"})
    with pytest.raises(FhirRefused) as info:
        events(bundle(bad), hospital)
    assert info.value.expression.endswith("valueQuantity.code")


def test_location_operational_status_from_v2_0116(hospital):
    loc = {"resourceType": "Location", "id": "SURG-SR1", "operationalStatus": {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0116", "code": "K"}}
    (out,) = events(bundle(loc, kind="subscription-notification"), hospital)
    assert isinstance(out.event, BedStatusChange) and (out.event.bed_id, out.event.status) == ("SURG-SR1", "blocked")


@pytest.mark.parametrize("body,code,expression", [
    (b"{not json", "structure", ""),
    (orjson.dumps({"resourceType": "Patient"}), "structure", "resourceType"),
    # R5's Encounter.class is a list; the R4B model refuses it instead of dropping it
    (bundle(dict(encounter(), **{"class": [{"coding": [{"code": "IMP"}]}]})), "invalid", "Bundle.entry[0].resource"),
    (bundle(encounter(status="bogus")), "code-invalid", "Bundle.entry[0].resource.status"),
    (bundle(encounter()), "required", "Bundle.entry[0].resource.subject"),  # admission without its Patient
    (bundle(PATIENT, encounter()), "required", "Bundle.entry[1].resource.reasonCode"),
    (bundle(encounter(locations=[("NOWHERE", "active")])), "code-invalid", "Bundle.entry[0].resource.location[0].location"),
    (bundle(PATIENT, kind="document"), "not-supported", "Bundle.type"),
])
def test_invalid_bundles_are_refused_with_a_path(hospital, body, code, expression):
    with pytest.raises(FhirRefused) as info:
        events(body, hospital)
    assert info.value.code == code and info.value.expression.startswith(expression)


def test_out_resources_are_valid_r4b_and_carry_no_free_text(hospital):
    locs = location_resources(hospital, {"MED-SR1": {"status": "occupied"}, "SURG-SR1": {"status": "closed"}})
    for r in locs:
        Location.model_validate(r)
    by_id = {r["id"]: r for r in locs}
    assert by_id["MED-SR1"]["operationalStatus"]["code"] == "O" and by_id["SURG-SR1"]["operationalStatus"]["code"] == "C"
    assert by_id["MED-B1-A"]["operationalStatus"]["code"] == "U" and by_id["MED"]["physicalType"]["coding"][0]["code"] == "wa"
    p = DecisionsProjection()
    reasons = [{"code": "news2_high", "text": "NEWS2 7 (the patient said: chest pain)"}]
    p.apply({"decision_id": "d1", "kind": "assignment", "encounter_id": "E1", "patient_id": "P1", "bed_id": "MED-SR1",
             "created_at": "2026-11-24T08:15:00+00:00", "reasons": reasons})
    p.apply({"decision_id": "d2", "kind": "needs_confirmation", "encounter_id": "E2", "patient_id": "P2",
             "bed_id": "MED-B1-A", "created_at": "2026-11-24T08:16:00+00:00", "reasons": reasons})
    p.apply({"decision_id": "d3", "kind": "page", "page_id": "pg1", "encounter_id": "E1", "patient_id": "P1",
             "role": "rapid_response", "pager": "1002", "priority": "emergency",
             "created_at": "2026-11-24T08:20:00+00:00", "reasons": reasons})
    beds = {"MED-SR1": {"status": "occupied", "encounter_id": "E1", "patient_id": "P1", "since": "2026-11-24T08:15:00+00:00"},
            "MED-B1-A": {"status": "held", "encounter_id": "E2", "patient_id": "P2", "since": "2026-11-24T08:16:00+00:00"},
            "MED-B2-A": {"status": "occupied", "encounter_id": "E3", "patient_id": "P3", "since": "2026-11-24T07:00:00+00:00"},
            "MED-B2-B": {"status": "dirty", "since": "2026-11-24T07:00:00+00:00"}}
    encs = p.encounter_resources(beds)
    for r in encs:
        Encounter.model_validate(r)
    assert [(e["id"], e["location"][0]["status"]) for e in encs] == [("E1", "planned"), ("E2", "reserved"),
                                                                     ("E3", "active")]
    (cr,) = p.communication_requests()
    CommunicationRequest.model_validate(cr)
    assert cr["priority"] == "stat" and cr["recipient"][0]["identifier"]["value"] == "1002"
    assert "chest pain" not in json.dumps(encs + [cr])  # reason texts never go out, codes only
    del beds["MED-B1-A"]  # the hold lapsed: the worker freed the bed
    assert [e["id"] for e in p.encounter_resources(beds)] == ["E1", "E3"]


# --------------------------------------------------------------------------- over HTTP, on the broker


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/fhir+json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.broker
def test_bundles_over_http(broker, run_id):
    from tests.streams.gateway.test_gateway_mllp import start_gateway

    async def scenario():
        port = free_port()
        gw, _ = await start_gateway(broker, run_id, fhir_port=port, fhir_host="127.0.0.1")
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            good = bundle(PATIENT, encounter(locations=[("MED", "planned")], reasonCode=[{"text": "Short of breath"}]))
            status, reply = await asyncio.to_thread(http, "POST", base, good)
            assert status == 200 and reply["type"] == "transaction-response"
            Bundle.model_validate(reply)
            bad = bundle(encounter(status="bogus"), bundle_id="B2")
            status, reply = await asyncio.to_thread(http, "POST", base + "/Bundle", bad)
            assert status == 422
            OperationOutcome.model_validate(reply)
            assert reply["issue"][0]["expression"] == ["Bundle.entry[0].resource.status"]
            status, meta = await asyncio.to_thread(http, "GET", base + "/metadata")
            assert status == 200 and meta["fhirVersion"] == "4.0.1"
            status, reply = await asyncio.to_thread(http, "GET", base + "/Location")
            assert status == 503 and reply["resourceType"] == "OperationOutcome"  # no worker running here
            rs = await read_until(broker.bootstrap, [f"{run_id}.admissions", f"{run_id}.dead-letters"],
                                  lambda rs: len(rs) >= 2, timeout_s=20, settle_s=0.5)
            by_topic = {r.topic.split(".", 1)[1]: orjson.loads(r.value) for r in rs}
            assert by_topic["admissions"]["encounter_id"] == "E1" and by_topic["admissions"]["requested_unit"] == "MED"
            assert by_topic["dead-letters"]["code"] == "fhir_code-invalid"
            assert by_topic["dead-letters"]["value"].encode() == bad and by_topic["dead-letters"]["topic"] == "fhir-r4"
        finally:
            await gw.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=90))


def test_the_example_bundle_in_docs_is_an_admission_on_the_demo_hospital():
    import re

    from allocator.hospital import DEMO_HOSPITAL_PATH

    text = (Path(__file__).resolve().parents[3] / "docs" / "fhir.md").read_text(encoding="utf-8")
    body = re.search(r"```json\n(.*?)```", text, re.S).group(1).encode()
    (out,) = events(body, load_hospitals(DEMO_HOSPITAL_PATH)["st-elsewhere"])
    assert isinstance(out.event, Admission) and out.event.requested_unit == "W14"


def test_a_search_without_worker_state_says_so(hospital):
    from streams.gateway.fhir_map import searchset

    bundle_out = searchset(location_resources(hospital, {}), "http://x/fhir", "the worker holds no state")
    Bundle.model_validate(bundle_out)
    assert bundle_out["entry"][-1]["search"]["mode"] == "outcome"
    assert bundle_out["entry"][-1]["resource"]["issue"][0]["severity"] == "warning"
    assert bundle_out["total"] == len(bundle_out["entry"]) - 1
