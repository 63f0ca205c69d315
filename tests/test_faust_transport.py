"""The tuned Faust consumer holds stream partitions back until a rebalance has fully ended.

Faust resumes stream partitions before it seeks them to the committed offsets and before it
resets flow control (which empties the stream queues); records fetched in that window were
skipped for good (the crash test caught ~400 events never processed after a restart).
"""

from __future__ import annotations

import pytest
from faust.types import TP

from streams.faust_transport import tuned_app_class

STREAM = TP("t.ordered", 0)
OTHER_STREAM = TP("t.ordered", 1)
CHANGELOG = TP("held-test-beds-changelog", 0)


@pytest.fixture()
def app():
    app = tuned_app_class(50)("held-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    app.Table("beds", default=None)
    app.consumer._paused_partitions.update({STREAM, OTHER_STREAM, CHANGELOG})
    return app


def _paused(app) -> set[TP]:
    return set(app.consumer._paused_partitions)


def test_stream_partitions_wait_for_the_end_of_the_rebalance_changelogs_do_not(app, monkeypatch):
    monkeypatch.setattr(app.consumer, "assignment", lambda: {STREAM, CHANGELOG})  # OTHER_STREAM revoked meanwhile
    app.rebalancing = True
    app.consumer.resume_partitions({STREAM, OTHER_STREAM, CHANGELOG})
    assert _paused(app) == {STREAM, OTHER_STREAM}  # the changelog is read for recovery

    app.on_rebalance_end()
    assert STREAM not in _paused(app)
    assert OTHER_STREAM in _paused(app)  # no longer ours: not resumed
    assert app.consumer._held == set()


def test_outside_a_rebalance_partitions_resume_at_once(app):
    app.rebalancing = False
    app.consumer.resume_partitions({STREAM, CHANGELOG})
    assert _paused(app) == {OTHER_STREAM}
