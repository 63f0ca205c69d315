"""Running `wardflow board` as a child process: for the demo and the tests (the same command a hospital runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streams.devtools.runner import settings_env, stop_process_group


@dataclass
class BoardProcess:
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> BoardProcess:
        """Start it and wait until it has read the decisions topic to its end (`/healthz` 200)."""
        env = {**os.environ, **self.env, **settings_env(board_port=self.port, board_host="127.0.0.1")}
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "board"], env=env,
                                        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"board exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"board not caught up after {timeout_s:.0f}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        stop_process_group(proc, timeout_s)
