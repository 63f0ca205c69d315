"""The tuned Faust consumer holds stream partitions back until a rebalance has fully ended.

Faust resumes stream partitions before it seeks them to the committed offsets and before it
resets flow control (which empties the stream queues); records fetched in that window were
skipped for good (the crash test caught ~400 events never processed after a restart).
"""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from streams.worker.faust_transport import tuned_app_class

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


# --- contiguous stream partitions: a batch fetched before a seek must not move the read offset past it ---

class _Msg:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Thread:
    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def _handed_out(app, monkeypatch, fetched: list[tuple[TP, int]]) -> list[tuple[TP, int]]:
    """Run the consumer's getmany over `fetched` (what the fetcher returned) and list what it handed on."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka

    async def fake_getmany(self, timeout):  # the parent class: yields what the fetcher returned
        for tp, offset in fetched:
            yield tp, _Msg(offset)

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", fake_getmany)

    async def run():
        return [(tp, m.offset) async for tp, m in app.consumer.getmany(0.1)]

    return asyncio.run(run())


def test_records_after_a_seek_start_at_its_target_and_a_stale_batch_is_refetched(app, monkeypatch):
    consumer = app.consumer
    consumer._thread = _Thread()
    consumer._expect(STREAM, 1533)  # sought to the committed offset
    # the fetcher still hands out what it fetched before the seek (4380...), then the records from 1533
    out = _handed_out(app, monkeypatch, [(STREAM, 4380), (STREAM, 4381), (STREAM, 1533), (STREAM, 1534),
                                         (STREAM, 1534), (CHANGELOG, 77), (CHANGELOG, 90)])
    assert out == [(STREAM, 1533), (STREAM, 1534), (CHANGELOG, 77), (CHANGELOG, 90)]  # changelogs untouched
    assert consumer._thread.seeks == [(STREAM, 1533)]  # pointed back once, not once per stale record
    assert consumer._read_offset[STREAM] == 1533


def _sought(app, monkeypatch, committed: dict, earliest) -> None:
    """Run the consumer's seek_to_committed over the parent's `committed` (and `earliest`: offsets, or an error)."""
    import asyncio

    from faust.transport.drivers import aiokafka as faust_aiokafka

    async def fake_seek_to_committed(self):
        return committed

    async def fake_earliest(self, *tps):
        if isinstance(earliest, Exception):
            raise earliest
        assert CHANGELOG not in tps  # changelogs are Faust's recovery's business
        return {tp: earliest[tp] for tp in tps}

    monkeypatch.setattr(faust_aiokafka.Consumer, "seek_to_committed", fake_seek_to_committed)
    monkeypatch.setattr(faust_aiokafka.Consumer, "earliest_offsets", fake_earliest)
    asyncio.run(app.consumer.seek_to_committed())


def test_a_partition_never_committed_is_guarded_from_the_first_offset_of_its_log(app, monkeypatch):
    consumer = app.consumer
    consumer._thread = _Thread()
    _sought(app, monkeypatch, {STREAM: None, OTHER_STREAM: 40, CHANGELOG: None}, {STREAM: 0})
    assert consumer._next_offset == {STREAM: 0, OTHER_STREAM: 40}
    # a new group's first fetch dropped in the rebalance window: records 0-244 handed out, 245-330 lost
    out = _handed_out(app, monkeypatch, [(STREAM, 0), (STREAM, 1), (STREAM, 331), (STREAM, 2)])
    assert out == [(STREAM, 0), (STREAM, 1), (STREAM, 2)]
    assert consumer._thread.seeks == [(STREAM, 2)]  # pointed back at the first record not handed out


def test_without_the_first_offsets_the_partition_runs_unguarded_and_says_so(app, monkeypatch, caplog):
    app.consumer._thread = _Thread()
    _sought(app, monkeypatch, {STREAM: None, OTHER_STREAM: 7}, ConnectionError("broker gone"))
    assert app.consumer._next_offset == {OTHER_STREAM: 7}
    assert "not checked for continuity" in caplog.text


def test_a_gap_that_stays_is_accepted_after_the_patience_runs_out(app, monkeypatch):
    import itertools

    from streams.worker import faust_transport

    clock = itertools.count(0.0, 1.0)  # every look at the clock is one second later
    monkeypatch.setattr(faust_transport.time, "monotonic", lambda: next(clock))
    consumer = app.consumer
    consumer._thread = _Thread()
    consumer._expect(STREAM, 10)
    out = _handed_out(app, monkeypatch, [(STREAM, 50)] * 8 + [(STREAM, 51)])
    assert out == [(STREAM, 50), (STREAM, 51)]  # offsets 10-49 are gone (retention): go on, loudly
    assert len(consumer._thread.seeks) == consumer._GAP_PATIENCE


def test_the_table_manager_subscribes_without_faust_s_one_second_pause(app, monkeypatch):
    import asyncio

    from streams.worker.faust_transport import QuickTableManager

    assert isinstance(app.tables, QuickTableManager)
    calls = []

    async def update_channels():
        calls.append("channels")

    async def start_recovery():
        calls.append("recovery")

    async def no_sleep(seconds):  # Faust's manager sleeps here; ours must not
        raise AssertionError(f"slept {seconds} s before subscribing")

    monkeypatch.setattr(app.tables, "_update_channels", update_channels)
    monkeypatch.setattr(app.tables.recovery, "start", start_recovery)
    monkeypatch.setattr(app.tables, "sleep", no_sleep)
    asyncio.run(app.tables.on_start())
    assert calls == ["channels", "recovery"]


class _State:
    def __init__(self, position: int) -> None:
        self.position, self.has_valid_position, self.paused = position, True, False


class _FetcherThread(_Thread):
    """The consumer thread with aiokafka's record of each partition's fetch position."""

    def __init__(self, positions: dict[TP, int]) -> None:
        super().__init__()
        self.states = {(tp.topic, tp.partition): _State(p) for tp, p in positions.items()}
        outer = self

        class _Assignment:
            def state_value(self, tp):
                return outer.states.get((tp.topic, tp.partition))

        class _Subscription:
            subscription = type("S", (), {"assignment": _Assignment()})()

        self.consumer = type("C", (), {"_subscription": _Subscription()})()

    def _ensure_consumer(self):
        return self.consumer


def test_records_the_fetcher_moved_past_but_never_handed_out_are_fetched_again(app, monkeypatch):
    from streams.worker import faust_transport

    now = [100.0]
    monkeypatch.setattr(faust_transport.time, "monotonic", lambda: now[0])
    consumer = app.consumer
    consumer._thread = _FetcherThread({STREAM: 322, OTHER_STREAM: 40})
    consumer._expect(STREAM, 321)  # sought to the committed offset; record 321 was fetched and dropped
    consumer._expect(OTHER_STREAM, 40)  # handed out up to 39: nothing missing
    assert _handed_out(app, monkeypatch, []) == []
    assert consumer._thread.seeks == []  # a fetch result may still be on its way: wait
    now[0] += 0.6
    _handed_out(app, monkeypatch, [])
    assert consumer._thread.seeks == []
    now[0] += 0.6  # still ahead after more than a second: those records are lost, fetch them again
    _handed_out(app, monkeypatch, [])
    assert consumer._thread.seeks == [(STREAM, 321)]
    assert consumer._read_offset[STREAM] == 321


def test_a_partition_handed_out_in_time_is_not_fetched_again(app, monkeypatch):
    from streams.worker import faust_transport

    now = [100.0]
    monkeypatch.setattr(faust_transport.time, "monotonic", lambda: now[0])
    consumer = app.consumer
    consumer._thread = _FetcherThread({STREAM: 322})
    consumer._expect(STREAM, 321)
    _handed_out(app, monkeypatch, [(STREAM, 321)])  # the record arrives with the next batch
    now[0] += 1.5
    _handed_out(app, monkeypatch, [])
    assert consumer._thread.seeks == []
    app.rebalancing = True  # during a rebalance Faust seeks itself
    consumer._thread.states[(STREAM.topic, STREAM.partition)].position = 330
    now[0] += 1.5
    _handed_out(app, monkeypatch, [])
    now[0] += 1.5
    _handed_out(app, monkeypatch, [])
    assert consumer._thread.seeks == []


def test_acting_on_makes_an_event_faust_s_current_one_for_the_block_only():
    """A checkpoint writes each partition's state under one of its own events: Faust takes the
    changelog partition of every table write from the current event."""
    from faust.streams import current_event

    from streams.worker.faust_transport import acting_on

    class Event:  # weakly referenced, as Faust refers to its current event
        def __init__(self, partition: int) -> None:
            self.partition = partition

    outer, inner = Event(0), Event(3)
    with acting_on(outer):  # type: ignore[arg-type]
        with acting_on(inner):  # type: ignore[arg-type]
            assert current_event() is inner
        assert current_event() is outer
    assert current_event() is None


# --- recovery reads to the furthest end the broker has shown, not to a listing short of it ---

class _Lister:
    """A consumer whose ListOffsets answers are `ends` (next offsets), as Faust's recovery asks them."""

    def __init__(self, ends: dict[TP, int], first: int = 0) -> None:
        self.ends, self.first = ends, first

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, self.first)


def _start_recovery(recovery, lister: _Lister) -> None:
    """The ends, then the offsets to read from, as `Recovery._restart_recovery` builds them."""
    async def build() -> None:
        await recovery._build_highwaters(lister, {CHANGELOG}, recovery.active_highwaters, "active")
        await recovery._build_offsets(lister, {CHANGELOG}, recovery.active_offsets, "active")
    asyncio.run(build())


def _faust_would_refuse(recovery, tp: TP) -> bool:
    """Faust's consistency check at the start of a recovery (`Recovery._restart_recovery`)."""
    offset, highwater = recovery.active_offsets[tp], recovery.active_highwaters[tp]
    return bool(offset and highwater and offset > highwater)


def test_a_listed_end_short_of_what_was_read_is_raised_to_it(app):
    recovery = app.tables.recovery
    recovery.active_offsets[CHANGELOG] = 3  # read in the previous assignment: a batch of offsets 2-3
    lister = _Lister({CHANGELOG: 3})  # Tansu lists the last batch's base offset + 1
    _start_recovery(recovery, lister)
    assert recovery.active_highwaters[CHANGELOG] == 3
    assert not _faust_would_refuse(recovery, CHANGELOG)
    assert not recovery.need_recovery()
    assert recovery.short_listings == 1


def test_a_listing_past_what_was_read_stands(app):
    recovery = app.tables.recovery
    recovery.active_offsets[CHANGELOG] = 3
    lister = _Lister({CHANGELOG: 11})  # ten records, the last at offset 10
    _start_recovery(recovery, lister)
    assert recovery.active_highwaters[CHANGELOG] == 10
    assert recovery.need_recovery()
    assert recovery.short_listings == 0


def test_a_recovery_at_its_listed_end_goes_on_to_the_end_its_fetches_show(app, monkeypatch):
    recovery = app.tables.recovery
    lister = _Lister({CHANGELOG: 11})  # the last batch holds offsets 10-14: listed end 11, fetched 15
    _start_recovery(recovery, lister)
    fetched: dict[TP, int] = {}

    def highwater(tp: TP) -> int:
        if tp not in fetched:
            raise AssertionError("Partition is not assigned")  # aiokafka's answer before a fetch
        return fetched[tp]

    monkeypatch.setattr(app.consumer, "highwater", highwater)
    recovery.active_offsets[CHANGELOG] = 10
    assert not recovery.need_recovery()  # no fetch answer yet: the listing is all there is
    fetched[CHANGELOG] = 15
    assert recovery.need_recovery()
    assert recovery.active_highwaters[CHANGELOG] == 14
    recovery.active_offsets[CHANGELOG] = 14
    assert not recovery.need_recovery()
