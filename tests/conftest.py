"""Shared fixtures: one embedded broker per test session, workers with unique topics and groups."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devtools.broker import EmbeddedBroker, free_port
from streams.devtools.runner import WorkerProcess, settings_env

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log_path).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def run_id() -> str:
    """Unique per test: topic prefix and consumer group never collide across tests or runs."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def worker_env(broker: EmbeddedBroker, run_id: str, tmp_path: Path) -> dict[str, str]:
    return settings_env(
        broker_url=broker.url, topic_prefix=f"{run_id}.", app_id=f"wardflow-{run_id}",
        data_dir=tmp_path / "worker-data", hospital_config=FIXTURES / "stream_hospital.yaml",
        metrics_port=free_port(), web_port=0, topic_partitions=2, commit_interval_s=0.5, log_level=os.environ.get("WF_TEST_LOG", "INFO"),
        allow_no_model=True, model_path=tmp_path / "no-model",
    )


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start workers (same settings unless overridden); every one is stopped at teardown."""
    workers: list[WorkerProcess] = []

    def _start(wait: bool = True, **overrides: object) -> WorkerProcess:
        env = {**worker_env, **settings_env(**overrides)}
        w = WorkerProcess(env=env, log_path=tmp_path / "worker.log").start()
        workers.append(w)
        if wait:
            w.wait_ready(timeout_s=90)
        return w

    yield _start
    for w in workers:
        w.stop()
