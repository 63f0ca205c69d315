"""Starting and stopping a worker as a child process: shared by the demo and the tests.

A worker is ready when Faust has joined the group, recovered its tables from the changelogs
and resumed the streams; Faust says so with the log line `Worker ready`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.exceptions import StreamsError

READY_MARKER = "Worker ready"


def stop_process_group(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> int | None:
    """SIGTERM to a child started in its own session, SIGKILL after `timeout_s`; its exit code (None: never started)."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=timeout_s)


class WorkerStartError(StreamsError):
    """The worker process exited or did not become ready in time."""


def settings_env(**settings: object) -> dict[str, str]:
    """`broker_url='kafka://...'` -> `{'WARDFLOW_BROKER_URL': 'kafka://...'}` (None values skipped)."""
    return {f"WARDFLOW_{k.upper()}": str(v) for k, v in settings.items() if v is not None}


@dataclass
class WorkerProcess:
    """One `wardflow worker` child process (or another Faust worker: `command`) writing its log to `log_path`."""

    env: dict[str, str]
    log_path: Path
    command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "streams.cli", "worker"])
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)
    _log_offset: int = field(default=0, init=False)

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._log_offset = self.log_path.stat().st_size
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        return self

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError), open(self.log_path, "rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode("utf-8", "replace")
        return ""

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """Block until the worker logs that it is ready; returns seconds since start."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY_MARKER in self.log_text():
                return time.monotonic() - self.started_at
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise WorkerStartError(f"worker exited with code {code} before it was ready; "
                                       f"last log lines:\n{self._tail()}")
            time.sleep(0.05)
        raise WorkerStartError(f"worker not ready after {timeout_s:.0f}s; last log lines:\n{self._tail()}")

    def _tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def errors(self) -> list[str]:
        """Tracebacks and ERROR lines in the log, for tests that assert a clean run."""
        return [line for line in self.log_text().splitlines() if re.search(r"\bERROR\b|Traceback", line)]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, no commit; what a crash looks like."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (Faust shuts down cleanly, committing offsets), SIGKILL after `timeout_s`."""
        return stop_process_group(self.process, timeout_s)
