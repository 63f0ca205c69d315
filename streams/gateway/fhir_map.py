"""FHIR R4 resources <-> WardFlow, as pure functions: Bundles in -> contract events; worker state -> resources out.

Validation uses the `fhir.resources` R4B models (`fhir.resources.R4B.*`): R4B is R4 with
errata, and its models keep R4's fields (the package's default models are R5, which renamed
Encounter.class to a list, moved Encounter.reasonCode, and would silently drop R4 fields).

In:
- Encounter: read as the event its state implies. `finished` -> discharge; `cancelled` or
  `entered-in-error` -> the admission is cancelled (its bed freed); created (`POST` in a
  transaction or batch) -> admission, in the `active` bed when one is named;
  a `location[]` entry with status `active` naming a bed -> transfer to that bed; otherwise
  (`planned`, `arrived`, `triaged`, `in-progress` without an active bed) -> admission, which
  needs the Patient (birthDate, gender) in the same Bundle and a reason (`reasonCode` text
  or display). A location with status planned/reserved naming a unit or bed gives the
  requested unit.
- Observation (vital-signs): LOINC codes and UCUM units, as for HL7 v2 (the same tables),
  including the blood-pressure panel's systolic component; needs `encounter`.
- Location: `operationalStatus` coded from HL7 table v2-0116 -> bed-status.
Locations are referenced by id: `Location/<bed id>` or `Location/<unit code>` of the hospital file.

Out (no free text anywhere): beds as Location with operationalStatus; WardFlow's proposals as
the Encounter's location with status planned (assignment) or reserved (bed held for
confirmation); pages as CommunicationRequest.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from allocator.hospital import Hospital
from streams.contract.models import Admission, BedStatusChange, Cancellation, Discharge, InputEvent, Transfer, Vitals
from streams.gateway.hl7v2 import BED_STATUS, LOINC, UNITS, Outbound

LOINC_SYSTEM = "http://loinc.org"
V2_0116 = "http://terminology.hl7.org/CodeSystem/v2-0116"
BUNDLE_TYPES = ("transaction", "batch", "message", "subscription-notification", "history", "collection")
ENCOUNTER_STATUSES = ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                      "entered-in-error", "unknown")
OBSERVATION_STATUSES = ("final", "amended", "corrected", "preliminary")
BP_PANEL = "85354-9"


class FhirRefused(Exception):
    """One problem for the OperationOutcome: FHIR issue code, FHIRPath expression, diagnostics."""

    def __init__(self, code: str, expression: str, diagnostics: str, status: int = 422) -> None:
        super().__init__(diagnostics)
        self.code = code
        self.expression = expression
        self.diagnostics = diagnostics
        self.status = status


def operation_outcome(issues: list[FhirRefused], severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": i.code, "diagnostics": i.diagnostics,
                       **({"expression": [i.expression]} if i.expression else {})} for i in issues]}


def validate_bundle(body: bytes) -> tuple[dict[str, Any], Bundle]:
    """JSON -> an R4B Bundle, or FhirRefused issues (every validation error, with its path)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirRefused("structure", "", f"the body is not JSON: {exc}", 400) from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirRefused("structure", "resourceType", "the body must be a Bundle resource", 400)
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = "Bundle." + ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise FhirRefused("invalid", path, f"{path}: {err['msg']}{more}", 400) from None
    if bundle.type not in BUNDLE_TYPES:
        raise FhirRefused("not-supported", "Bundle.type", f"Bundle.type {bundle.type!r} is not accepted "
                          f"({', '.join(BUNDLE_TYPES)})")
    return data, bundle


def _ref_id(ref: dict[str, Any] | None, kind: str) -> str | None:
    value = (ref or {}).get("reference") or ""
    if value.startswith(f"{kind}/"):
        return value.split("/", 1)[1].split("/_history", 1)[0]
    if value.startswith("urn:"):
        return value
    return None


def _when(value: str | None, where: str) -> datetime:
    if not value:
        raise FhirRefused("required", where, f"{where} is required (a dateTime with an offset)")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FhirRefused("value", where, f"{where} must be a FHIR dateTime") from None
    if at.tzinfo is None:
        raise FhirRefused("value", where, f"{where} must carry a time zone offset (a local time is ambiguous)")
    return at


@dataclass
class _Ctx:
    hospital: Hospital
    source: str  # Bundle id or a digest: with the resource id and version, the idempotency key
    patients: dict[str, dict[str, Any]]
    events: list[Outbound]

    def add(self, topic: str, model: type[InputEvent], key: str, at: datetime, where: str, **fields: Any) -> None:
        try:
            event = model(event_id=f"fhir:{key}:{len(self.events) + 1}"[:200], hospital_id=self.hospital.hospital_id,
                          occurred_at=at, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise FhirRefused("invalid", where, f"{where}: {topic} field {err['loc'][0] if err['loc'] else ''!s} "
                                                f"{err['msg']}") from None
        self.events.append(Outbound(topic, event))


def bundle_events(data: dict[str, Any], hospital: Hospital, received_at: datetime) -> list[Outbound]:
    """The contract events a validated Bundle means; FhirRefused on the first entry that cannot be mapped."""
    entries = data.get("entry") or []
    patients: dict[str, dict[str, Any]] = {}
    for e in entries:
        r = e.get("resource") or {}
        if r.get("resourceType") == "Patient":
            if r.get("id"):
                patients[f"Patient/{r['id']}"] = r
            if e.get("fullUrl"):
                patients[e["fullUrl"]] = r
    digest = data.get("id") or hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    ctx = _Ctx(hospital, digest, patients, [])
    for i, e in enumerate(entries):
        r = e.get("resource") or {}
        kind = r.get("resourceType")
        where = f"Bundle.entry[{i}].resource"
        method = (e.get("request") or {}).get("method")
        if method == "DELETE":
            raise FhirRefused("not-supported", f"Bundle.entry[{i}].request.method", "DELETE is not supported")
        key = f"{kind}/{r.get('id') or i}/{(r.get('meta') or {}).get('versionId') or digest}"
        if kind == "Encounter":
            _encounter(ctx, r, where, key, received_at, created=method == "POST")
        elif kind == "Observation":
            _observation(ctx, r, where, key)
        elif kind == "Location":
            _location(ctx, r, where, key, received_at)
    return ctx.events


def _encounter(ctx: _Ctx, r: dict[str, Any], where: str, key: str, received_at: datetime, *,
               created: bool = False) -> None:
    status = r.get("status")
    if status not in ENCOUNTER_STATUSES:
        raise FhirRefused("code-invalid", f"{where}.status", f"{where}.status must be one of {', '.join(ENCOUNTER_STATUSES)}")
    encounter_id = r.get("id") or next((i.get("value") for i in r.get("identifier") or [] if i.get("value")), None)
    if not encounter_id:
        raise FhirRefused("required", f"{where}.id", f"{where}: an Encounter needs an id or an identifier")
    patient_ref = (r.get("subject") or {}).get("reference")
    patient_id = _ref_id(r.get("subject"), "Patient")
    if not patient_id:
        raise FhirRefused("required", f"{where}.subject", f"{where}.subject must reference a Patient")
    period = r.get("period") or {}
    at = _when(period.get("end") if status == "finished" else period.get("start"), f"{where}.period") \
        if period else received_at
    beds: dict[str, str] = {}
    unit: str | None = None
    for j, loc in enumerate(r.get("location") or []):
        target = _ref_id(loc.get("location"), "Location")
        if target is None:
            continue
        lstatus = loc.get("status") or "active"
        bed = ctx.hospital.bed(target)
        if bed is not None:
            beds.setdefault(lstatus, target)
            unit = unit or bed.unit
        else:
            try:
                ctx.hospital.unit(target)
            except KeyError:
                raise FhirRefused("code-invalid", f"{where}.location[{j}].location",
                                  f"Location/{target} is no bed or unit of hospital {ctx.hospital.hospital_id}") from None
            unit = unit or target
    common = {"patient_id": patient_id, "encounter_id": encounter_id}
    if status == "finished":
        ctx.add("discharges", Discharge, key, at, where, **common)
    elif status in ("cancelled", "entered-in-error"):
        ctx.add("cancellations", Cancellation, key, at, where, cancels="admission", **common)
    elif "active" in beds and not created:
        ctx.add("transfers", Transfer, key, at, where, to_bed_id=beds["active"], **common)
    elif status in ("planned", "arrived", "triaged", "in-progress"):
        patient = ctx.patients.get(patient_ref or "")
        if patient is None:
            raise FhirRefused("required", f"{where}.subject",
                              f"{where}: an admission needs the Patient ({patient_ref}) in the same Bundle")
        birth = patient.get("birthDate")
        if not birth:
            raise FhirRefused("required", "Patient.birthDate", "Patient.birthDate is required for an admission")
        born = date.fromisoformat(birth[:10]) if len(birth) >= 10 else None
        if born is None:
            raise FhirRefused("value", "Patient.birthDate", "Patient.birthDate must be a full date")
        today = at.date()
        years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        age = float(years) if years >= 1 else round((today - born).days / 365.25, 2)
        sex = {"female": "F", "male": "M", "other": "X", "unknown": "X"}.get(patient.get("gender") or "")
        if sex is None:
            raise FhirRefused("required", "Patient.gender", "Patient.gender is required for an admission")
        texts = [c.get("text") or next((cd.get("display") for cd in c.get("coding") or [] if cd.get("display")), None)
                 for c in r.get("reasonCode") or []]
        text = "; ".join(t for t in texts if t)
        if not text:
            raise FhirRefused("required", f"{where}.reasonCode",
                              f"{where}.reasonCode (text or display) is required: WardFlow places by the reason")
        ctx.add("admissions", Admission, key, at, where, age=age, sex=sex, text=text, requested_unit=unit,
                bed_id=beds.get("active"), **common)
    # onleave / unknown: nothing for the bed picture


def _observation(ctx: _Ctx, r: dict[str, Any], where: str, key: str) -> None:
    if r.get("status") not in OBSERVATION_STATUSES:
        return  # registered, cancelled, entered-in-error: nothing to score
    codes = [c.get("code") for c in (r.get("code") or {}).get("coding") or [] if c.get("system") == LOINC_SYSTEM]
    values: dict[str, Any] = {}

    def read(code: str | None, quantity: dict[str, Any] | None, path: str, concept: dict[str, Any] | None = None) -> None:
        vc = LOINC.get(code or "")
        if vc is None:
            return
        if vc.unit_kind == "acvpu":
            coded = next((c.get("code") for c in (concept or {}).get("coding") or [] if c.get("code")), None)
            if coded not in ("A", "C", "V", "P", "U"):
                raise FhirRefused("value", path, f"{path}: level of consciousness must be coded A, C, V, P or U")
            values["consciousness"] = coded
            return
        if not quantity or quantity.get("value") is None:
            raise FhirRefused("required", path, f"{path}.valueQuantity is required for LOINC {code}")
        unit = str(quantity.get("code") or quantity.get("unit") or "").lower()
        convert = UNITS[vc.unit_kind].get(unit)
        if convert is None:
            raise FhirRefused("value", f"{path}.valueQuantity.code",
                              f"unit {unit or '(none)'!r} is not accepted for {vc.parameter} (UCUM, e.g. "
                              f"{next(iter(UNITS[vc.unit_kind]))})")
        number = convert(float(quantity["value"]))
        if vc.unit_kind == "flow":
            values["on_oxygen"] = number > 0
        elif vc.unit_kind == "fio2":
            values["on_oxygen"] = number > 21
        else:
            values[vc.parameter] = number

    for code in codes:
        if code == BP_PANEL:
            for k, comp in enumerate(r.get("component") or []):
                for c in (comp.get("code") or {}).get("coding") or []:
                    if c.get("system") == LOINC_SYSTEM:
                        read(c.get("code"), comp.get("valueQuantity"), f"{where}.component[{k}]")
        else:
            read(code, r.get("valueQuantity"), where, r.get("valueCodeableConcept"))
    if not values:
        return  # not a vital sign WardFlow scores
    encounter_id = _ref_id(r.get("encounter"), "Encounter")
    patient_id = _ref_id(r.get("subject"), "Patient")
    if not encounter_id or not patient_id:
        raise FhirRefused("required", f"{where}.encounter", f"{where}: vital signs need subject (Patient) and "
                                                             "encounter references to know the stay")
    at = _when(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued"),
               f"{where}.effectiveDateTime")
    ctx.add("vitals", Vitals, key, at, where, patient_id=patient_id, encounter_id=encounter_id, **values)


def _location(ctx: _Ctx, r: dict[str, Any], where: str, key: str, received_at: datetime) -> None:
    status = r.get("operationalStatus")
    if not status:
        return
    if status.get("system") not in (V2_0116, None):
        raise FhirRefused("code-invalid", f"{where}.operationalStatus.system",
                          f"operationalStatus must come from {V2_0116}")
    bed_id = r.get("id")
    if not bed_id or ctx.hospital.bed(bed_id) is None:
        raise FhirRefused("code-invalid", f"{where}.id", f"Location/{bed_id} is not a bed of hospital "
                                                         f"{ctx.hospital.hospital_id}")
    code = status.get("code")
    if code == "O":
        return  # occupancy comes from Encounters
    if code not in BED_STATUS:
        raise FhirRefused("code-invalid", f"{where}.operationalStatus.code",
                          "operationalStatus.code must be a v2-0116 code (C, H, I, K, O, U)")
    new_status, reason = BED_STATUS[code]
    at = received_at
    if (meta := r.get("meta") or {}).get("lastUpdated"):
        at = _when(meta["lastUpdated"], f"{where}.meta.lastUpdated")
    ctx.add("bed-status", BedStatusChange, key, at, where, bed_id=bed_id, status=new_status, reason=reason)


# --------------------------------------------------------------------------- out


_OPERATIONAL = {"available": "U", "occupied": "O", "held": "U", "dirty": "H", "cleaning": "H", "blocked": "K",
                "closed": "C"}
_OPERATIONAL_NAMES = {"U": "Unoccupied", "O": "Occupied", "H": "Housekeeping", "K": "Contaminated", "C": "Closed",
                      "I": "Isolated"}


def location_resources(hospital: Hospital, beds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each unit (physicalType wa) and bed (bd) as a Location; a bed's operationalStatus from the worker's view."""
    out: list[dict[str, Any]] = []
    for unit in hospital.units:
        out.append({"resourceType": "Location", "id": unit.code, "status": "active", "name": unit.name,
                    "mode": "instance", "physicalType": {"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa"}]}})
        for bed in hospital.beds_in_unit(unit.code):
            state = beds.get(bed.bed_id, {"status": "available"})
            code = _OPERATIONAL.get(state["status"], "U")
            out.append({"resourceType": "Location", "id": bed.bed_id, "status": "active", "name": bed.bed_id,
                        "mode": "instance",
                        "operationalStatus": {"system": V2_0116, "code": code, "display": _OPERATIONAL_NAMES[code]},
                        "physicalType": {"coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "bd"}]},
                        "partOf": {"reference": f"Location/{unit.code}"}})
    return out


class DecisionsProjection:
    """WardFlow's proposals and pages as read from the `decisions` topic (bounded, newest kept)."""

    def __init__(self, max_items: int = 10_000) -> None:
        self.max_items = max_items
        self.encounters: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.pages: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def apply(self, d: dict[str, Any]) -> None:
        kind = d.get("kind")
        enc = d.get("encounter_id")
        if kind in ("assignment", "override_applied") and enc and d.get("bed_id"):
            self._put(self.encounters, enc, {**d, "location_status": "planned"})
        elif kind == "needs_confirmation" and enc and d.get("bed_id"):
            self._put(self.encounters, enc, {**d, "location_status": "reserved"})
        elif kind in ("hold_lapsed", "no_bed") and enc:
            self.encounters.pop(enc, None)
        elif kind in ("page", "escalation") and d.get("page_id"):
            self._put(self.pages, d["decision_id"], d)

    def _put(self, store: OrderedDict[str, dict[str, Any]], k: str, v: dict[str, Any]) -> None:
        store[k] = v
        store.move_to_end(k)
        while len(store) > self.max_items:
            store.popitem(last=False)

    def encounter_resources(self, beds: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """One Encounter per occupied or held bed of the worker's beds view.

        The location's status: `reserved` when the bed is held for a clinician's confirmation,
        `planned` when WardFlow's latest assignment put the encounter in this bed (the EHR has not
        moved the patient yet), `active` when the EHR's own transfer put them there.
        """
        out = []
        for bed_id, b in beds.items():
            enc = b.get("encounter_id")
            if not enc or b.get("status") not in ("occupied", "held") or not b.get("patient_id"):
                continue
            d = self.encounters.get(enc)
            if b["status"] == "held":
                status = "reserved"
            elif d is not None and d.get("bed_id") == bed_id and d["location_status"] == "planned":
                status = "planned"
            else:
                status = "active"
            res: dict[str, Any] = {
                "resourceType": "Encounter", "id": enc, "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": f"Patient/{b['patient_id']}"},
                "location": [{"location": {"reference": f"Location/{bed_id}"}, "status": status,
                              **({"period": {"start": b["since"]}} if b.get("since") else {})}]}
            if d is not None and d.get("bed_id") == bed_id:
                res["meta"] = {"tag": [{"system": "https://wardflow.example/decision", "code": d["decision_id"]}]}
            out.append(res)
        return out

    def communication_requests(self) -> list[dict[str, Any]]:
        out = []
        for d in self.pages.values():
            priority = {"emergency": "stat", "urgent": "urgent"}.get(d.get("priority") or "", "routine")
            res: dict[str, Any] = {
                "resourceType": "CommunicationRequest", "id": d["decision_id"], "status": "active",
                "identifier": [{"system": "https://wardflow.example/page", "value": d["page_id"]}],
                "priority": priority, "authoredOn": d["created_at"],
                "category": [{"coding": [{"system": "https://wardflow.example/decision-kind", "code": d["kind"]}]}],
                "reasonCode": [{"coding": [{"system": "https://wardflow.example/reason", "code": r["code"]}]}
                               for r in d.get("reasons") or []],
                "recipient": [{"identifier": {"system": "https://wardflow.example/pager", "value": d.get("pager") or ""},
                               "display": d.get("role") or ""}],
            }
            if d.get("patient_id"):
                res["subject"] = {"reference": f"Patient/{d['patient_id']}"}
            if d.get("encounter_id"):
                res["encounter"] = {"reference": f"Encounter/{d['encounter_id']}"}
            out.append(res)
        return out


def searchset(resources: list[dict[str, Any]], base: str, warning: str | None = None) -> dict[str, Any]:
    """A searchset Bundle; `warning` adds an OperationOutcome entry (search mode `outcome`)."""
    entries = [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
               for r in resources]
    if warning:
        entries.append({"resource": operation_outcome([FhirRefused("informational", "", warning)], "warning"),
                        "search": {"mode": "outcome"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "timestamp": datetime.now(UTC).isoformat(), "entry": entries}
