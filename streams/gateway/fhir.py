"""The FHIR R4 HTTP endpoint of `wardflow hl7` (aiohttp, which faust already brings).

  POST /fhir, /fhir/Bundle   transaction, batch, message or subscription-notification Bundles
                             -> contract events, answered after the broker acknowledged them;
                             a Bundle that cannot be mapped is dead-lettered (raw body) and
                             answered with an OperationOutcome (nothing of it is published)
  GET  /fhir/metadata        CapabilityStatement
  GET  /fhir/Location        units and beds, operationalStatus from the worker's beds view
  GET  /fhir/Encounter       WardFlow's proposals: location status planned (assignment) or reserved (hold)
  GET  /fhir/CommunicationRequest   pages and escalations from the decisions topic
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from allocator.hospital import Hospital
from streams.gateway.fhir_map import (
    DecisionsProjection,
    FhirRefused,
    bundle_events,
    location_resources,
    operation_outcome,
    searchset,
    validate_bundle,
)
from streams.gateway.publisher import Publisher, PublishError, dead_letter
from streams.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)
FHIR_JSON = "application/fhir+json"
SOURCE = "fhir-r4"
MAX_BODY = 16 * 1024 * 1024


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=FHIR_JSON)


class FhirApp:
    def __init__(self, settings: GatewaySettings, hospital: Hospital, publisher: Publisher) -> None:
        self.settings = settings
        self.hospital = hospital
        self.publisher = publisher
        self.projection = DecisionsProjection()
        self._stateless = False  # the worker's view said it holds no state for this hospital
        self._consumer_task: asyncio.Task | None = None
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes([
            web.get("/fhir/metadata", self.metadata),
            web.post("/fhir", self.post_bundle), web.post("/fhir/", self.post_bundle),
            web.post("/fhir/Bundle", self.post_bundle),
            web.get("/fhir/Location", self.locations),
            web.get("/fhir/Encounter", self.encounters),
            web.get("/fhir/CommunicationRequest", self.communication_requests),
        ])
        self.app.on_startup.append(self._start_consumer)
        self.app.on_cleanup.append(self._stop_consumer)

    # ----------------------------------------------------------------- in

    async def post_bundle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = datetime.now(UTC)
        try:
            data, bundle = validate_bundle(body)
            try:
                events = bundle_events(data, self.hospital, now)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a shape the mapping did not expect
                log.exception("unexpected error mapping a FHIR Bundle")
                raise FhirRefused("exception", "", f"cannot map this Bundle ({type(exc).__name__}); it is kept", 422) \
                    from None
        except FhirRefused as refused:
            try:
                await self.publisher.dead_letter(dead_letter(SOURCE, body, f"fhir_{refused.code}",
                                                             refused.diagnostics, refused.expression or None, now))
            except PublishError:
                return _json(operation_outcome([FhirRefused("transient", "", "the Bundle was refused ("
                                                            + refused.diagnostics + ") and could not be kept: retry")]),
                             503)
            return _json(operation_outcome([refused]), refused.status)
        try:
            await self.publisher.publish(events)
        except PublishError:
            return _json(operation_outcome([FhirRefused("transient", "", "the broker did not acknowledge the events: "
                                                                         "nothing was stored, retry")]), 503)
        summary = f"{len(events)} event(s) published: " + ", ".join(f"{o.topic} {o.event.event_id}" for o in events)
        outcome = operation_outcome([FhirRefused("informational", "", summary)], "information")
        if bundle.type in ("transaction", "batch"):  # a batch is handled all-or-nothing too (docs/fhir.md)
            return _json({"resourceType": "Bundle", "type": f"{bundle.type}-response",
                          "entry": [{"response": {"status": "200 OK", "outcome": outcome}}
                                    for _ in data.get("entry") or []]})
        return _json(outcome)

    # ----------------------------------------------------------------- out

    async def metadata(self, request: web.Request) -> web.Response:
        return _json({
            "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
            "date": datetime.now(UTC).date().isoformat(), "format": ["json"],
            "software": {"name": "WardFlow gateway"},
            "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}],
                      "resource": [{"type": "Location", "interaction": [{"code": "search-type"}],
                                    "searchParam": [{"name": n, "type": t} for n, t in (
                                        ("_id", "token"), ("partof", "reference"), ("operational-status", "token"),
                                        ("type", "token"))]},
                                   *({"type": t, "interaction": [{"code": "search-type"}]}
                                     for t in ("Encounter", "CommunicationRequest"))]}]})

    async def _beds(self) -> dict[str, dict[str, Any]] | web.Response:
        url = f"{self.settings.fhir_worker_url.rstrip('/')}/hospitals/{self.hospital.hospital_id}/beds/"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, session.get(url) as resp:
                resp.raise_for_status()
                view = await resp.json()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return _json(operation_outcome([FhirRefused("transient", "", f"the worker's beds view ({url}) did not "
                                                                         f"answer: {exc}")]), 503)
        self._stateless = view.get("as_of") is None
        return fhir_beds(view)

    async def locations(self, request: web.Request) -> web.Response:
        """Search parameters: `_id`, `partof` (Location/<unit>), `operational-status` (a v2-0116 code), `type` (wa, bd)."""
        beds = await self._beds()
        if isinstance(beds, web.Response):
            return beds
        found = location_resources(self.hospital, beds)
        q = request.query
        if "_id" in q:
            wanted = set(q["_id"].split(","))
            found = [r for r in found if r["id"] in wanted]
        if "partof" in q:
            unit = q["partof"].removeprefix("Location/")
            found = [r for r in found if r.get("partOf", {}).get("reference") == f"Location/{unit}"]
        if "operational-status" in q:
            codes = {c.split("|")[-1] for c in q["operational-status"].split(",")}
            found = [r for r in found if r.get("operationalStatus", {}).get("code") in codes]
        if "type" in q:
            kinds = {c.split("|")[-1] for c in q["type"].split(",")}
            found = [r for r in found if r["physicalType"]["coding"][0]["code"] in kinds]
        return _json(searchset(found, self._base(request), self._no_state_warning()))

    async def encounters(self, request: web.Request) -> web.Response:
        beds = await self._beds()
        if isinstance(beds, web.Response):
            return beds
        return _json(searchset(self.projection.encounter_resources(beds), self._base(request), self._no_state_warning()))

    def _no_state_warning(self) -> str | None:
        if not self._stateless:
            return None
        return (f"the worker at {self.settings.fhir_worker_url} holds no state for hospital "
                f"{self.hospital.hospital_id}: either no event has arrived yet, or another worker owns its partition "
                "(point --fhir-worker-url at that worker); every bed shows as unoccupied")

    async def communication_requests(self, request: web.Request) -> web.Response:
        return _json(searchset(self.projection.communication_requests(), self._base(request)))

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}/fhir"

    # ----------------------------------------------------------------- the decisions topic

    async def _start_consumer(self, _app: web.Application) -> None:
        self._consumer_task = asyncio.create_task(self._consume())

    async def _stop_consumer(self, _app: web.Application) -> None:
        if self._consumer_task is not None:
            self._consumer_task.cancel()
            await asyncio.gather(self._consumer_task, return_exceptions=True)

    async def _consume(self) -> None:
        topic = self.settings.topic("decisions")
        while True:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=self.settings.bootstrap(), group_id=None,
                                        auto_offset_reset="earliest", enable_auto_commit=False,
                                        **self.settings.producer_config())
            try:
                await consumer.start()
                async for record in consumer:
                    try:
                        decision = orjson.loads(record.value)
                    except orjson.JSONDecodeError:
                        continue
                    if decision.get("hospital_id") == self.hospital.hospital_id:
                        self.projection.apply(decision)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep serving; retry the topic
                log.warning("decisions consumer for FHIR reads failed (%s); retrying in 5 s", exc)
                await asyncio.sleep(5)
            finally:
                await consumer.stop()


async def start_fhir(settings: GatewaySettings, hospital: Hospital, publisher: Publisher) -> tuple[web.AppRunner, int]:
    fhir = FhirApp(settings, hospital, publisher)
    runner = web.AppRunner(fhir.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.fhir_host, settings.fhir_port)
    await site.start()
    port = runner.addresses[0][1]
    log.info("FHIR R4 endpoint on http://%s:%d/fhir", settings.fhir_host, port)
    return runner, port


def fhir_beds(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The worker's beds view (`streams.state.views.beds_snapshot`, shared with the bed board) by bed id, with the
    encounter named only where the bed is occupied or held for it."""
    beds: dict[str, dict[str, Any]] = {}
    for b in view.get("beds", []):
        entry: dict[str, Any] = {"unit": b["unit"], "status": b["status"], "since": b.get("since")}
        if b.get("encounter_id") and b["status"] in ("occupied", "held"):
            entry["encounter_id"] = b["encounter_id"]
            if b.get("patient_id"):
                entry["patient_id"] = b["patient_id"]
        beds[b["bed_id"]] = entry
    return beds
