"""Running a worker: what happens between the settings and Faust's Worker."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from streams.settings import WardflowSettings
from streams.worker import run


def test_freezing_moves_the_startup_objects_out_of_the_collectors_reach_and_new_cycles_are_still_collected():
    try:
        frozen = run.freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 10_000  # modules, classes, the app: everything alive now

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze: still the collector's
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("freeze", [True, False])
def test_the_worker_freezes_before_it_starts_reading_unless_told_not_to(monkeypatch, freeze):
    calls: list[str] = []

    class Worker:
        def __init__(self, app, **kwargs) -> None:
            calls.append("worker built")

        def execute_from_commandline(self) -> None:
            calls.append("worker runs")

    monkeypatch.setattr(run, "create_app", lambda settings, note_member: SimpleNamespace(
        app=object(), metrics=SimpleNamespace(serve=lambda port: None)))
    monkeypatch.setattr(run, "ensure_topics", lambda settings: _nothing())
    monkeypatch.setattr(run.faust, "Worker", Worker)
    monkeypatch.setattr(run, "freeze_startup_objects", lambda: calls.append("frozen") or 0)
    settings = WardflowSettings(gc_freeze=freeze, broker_replace_previous_member=False, metrics_port=0)
    assert run.run_worker(settings) == 0
    assert calls == (["worker built", "frozen", "worker runs"] if freeze else ["worker built", "worker runs"])


async def _nothing() -> list[str]:
    return []
