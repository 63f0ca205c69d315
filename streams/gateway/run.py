"""`wardflow hl7`: the MLLP listener and the FHIR R4 endpoint in one asyncio process, until Ctrl-C / SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from dataclasses import dataclass

from prometheus_client import start_http_server

from allocator.hospital import Hospital
from streams.gateway.mllp import GatewayMetrics, Hl7Service, MllpServer
from streams.gateway.publisher import Publisher
from streams.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Everything one gateway runs; `start()` returns the bound ports (useful with port 0 in tests)."""

    settings: GatewaySettings
    hospital: Hospital
    metrics: GatewayMetrics

    async def start(self) -> dict[str, int]:
        s = self.settings
        self.publisher = Publisher(s, self.hospital.hospital_id, max_request_bytes=2 * s.hl7_max_message_bytes + 65536)
        await self.publisher.start()
        self.service = Hl7Service(self.hospital, self.publisher, cache_size=s.dedupe_cache_size, metrics=self.metrics)
        self.mllp = MllpServer(self.service, s)
        ports = {"hl7": await self.mllp.start()}
        self.fhir_runner = None
        if s.fhir_port:
            from streams.gateway.fhir import start_fhir

            self.fhir_runner, ports["fhir"] = await start_fhir(s, self.hospital, self.publisher)
        return ports

    async def stop(self) -> None:
        await self.mllp.stop()
        if self.fhir_runner is not None:
            await self.fhir_runner.cleanup()
        await self.publisher.stop()


async def serve(settings: GatewaySettings, hospital: Hospital, *, announce: bool = True) -> int:
    metrics = GatewayMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    gateway = Gateway(settings, hospital, metrics)
    ports = await gateway.start()
    if announce:
        print(f"wardflow hl7: MLLP on {settings.hl7_host}:{ports['hl7']}"
              + (f" ({settings.hl7_processes} processes)" if settings.hl7_processes > 1 else "")
              + (f", FHIR R4 on http://{settings.fhir_host}:{ports['fhir']}/fhir" if "fhir" in ports else "")
              + f" for hospital {hospital.hospital_id}; Ctrl-C stops", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
    return 0


def _listener_process(settings: GatewaySettings, hospital: Hospital) -> None:
    """An extra MLLP listener on the same port (SO_REUSEPORT): no FHIR, its own producer and metrics port."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, hospital, announce=False))


def run_gateway(settings: GatewaySettings) -> int:
    logging.getLogger().setLevel(settings.log_level.upper())
    log.info("effective settings: %s", settings.masked())
    hospital = settings.load_hospital()
    extra: list[multiprocessing.process.BaseProcess] = []
    ctx = multiprocessing.get_context("spawn")
    for i in range(1, settings.hl7_processes):
        child = settings.model_copy(update={"fhir_port": 0,
                                            "metrics_port": settings.metrics_port + i if settings.metrics_port else 0})
        listener = ctx.Process(target=_listener_process, args=(child, hospital), name=f"wardflow-hl7-{i}",
                               daemon=True)
        listener.start()
        extra.append(listener)
    try:
        return asyncio.run(serve(settings, hospital))
    finally:
        for proc in extra:
            proc.terminate()
        for proc in extra:
            proc.join(timeout=10)
