"""A Faust app tuned for WardFlow: a fetch wait that is a setting, and changelog sends one can await.

Fetch wait: Faust fixes the consumer's at 1.5 s.

Kafka answers a fetch as soon as any partition has data, but some Kafka-compatible brokers
(the embedded Tansu among them) hold a fetch over many partitions for most of its wait. A
worker owns dozens of partitions (inputs, the ordered topic, changelogs), so at Faust's
fixed `fetch_max_wait_ms=1500` each hop could add up to ~0.5 s; `broker_fetch_max_wait_ms`
bounds that.

Changelog sends: a table write hands its changelog record to Faust's producer buffer, whose
background task takes it off the queue *before* handing it to the Kafka producer, so "buffer
empty, producer flushed" can still miss the record in between (seen under load: a state write
lost by a kill -9 after its event was committed). `TrackedTable` keeps each send's future on
the app, and `drain_changelog()` awaits every one: the broker has acknowledged them all.

Stream partitions after a rebalance: Faust resumes them, *then* seeks them to the committed
offsets, *then* resumes flow control, which empties every stream's queue. Records fetched in
between are queued, advance the consumer's read offset, and are thrown away; the re-fetch
from the committed offset then drops them as already read, so a whole fetch of events is
silently skipped (seen after kill -9: ordered offsets 186-615 never processed). `TunedConsumer`
holds stream partitions back while the app is rebalancing and the app releases them in
`on_rebalance_end`, after the seek and the flow-control reset.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faust
from faust import streams as faust_streams
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import TP, FutureMessage

from streams.worker.membership import GroupMember, write_member

log = logging.getLogger(__name__)


def tuned_app_class(fetch_max_wait_ms: int, group_instance_id: str | None = None,
                    member_note: Path | None = None) -> type[faust.App]:
    """A `faust.App` subclass whose consumer waits at most `fetch_max_wait_ms` per fetch.

    `group_instance_id` turns on static group membership (KIP-345): a worker restarted under the
    same id takes its partitions back at once instead of waiting for the group to notice that its
    previous incarnation died (a session timeout) and rebalance.

    `member_note`: where the consumer records its group member id at every assignment, so that a
    restarted worker can remove its dead incarnation from the group (`streams.worker.membership`)."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            consumer._group_instance_id = group_instance_id  # read when it starts its group coordinator
            return consumer

        async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
            if member_note is not None:
                coordinator = self._ensure_consumer()._coordinator
                try:
                    write_member(member_note, GroupMember(coordinator.group_id, coordinator.member_id))
                except OSError as exc:  # the worker runs on; only a faster restart is lost
                    log.warning("cannot note the group member id in %s: %s", member_note, exc)
            await super().on_partitions_assigned(assigned, generation_id)

    class TunedConsumer(faust_aiokafka.Consumer):
        _held: set[Any]  # stream partitions Faust resumed mid-rebalance, released once it ends

        # Continuity of stream partitions. Faust's fetch loop keeps handing out a batch fetched before a
        # seek after the seek has happened, and each of those records moves its read offset forward, so
        # the records re-fetched from the seek target are then dropped as "already read" and the range in
        # between is never delivered; Faust even counts it as an acknowledged gap and commits past it (seen
        # after kill -9: `ordered` handed out from 4380 right after seeking to the committed 1533, and a
        # seek back from the agent undone the same way). Here every record of a stream partition must be
        # the next offset: earlier ones were handed out already, later ones are stale and the fetcher is
        # pointed back at the next offset. A gap that stays (records deleted by retention, transaction
        # markers from a producer) is accepted after `_GAP_PATIENCE` seeks over `_GAP_PATIENCE_S`, loudly.
        _next_offset: dict[Any, int]
        _stuck: dict[Any, tuple[int, float, float, int]]  # tp -> (expected, first seen, last seek, seeks)
        _GAP_PATIENCE = 5
        _GAP_PATIENCE_S = 5.0

        def _expect(self, tp: Any, offset: int | None) -> None:
            if not hasattr(self, "_next_offset"):
                self._next_offset, self._stuck = {}, {}
            if offset is None:
                self._next_offset.pop(tp, None)
            else:
                self._next_offset[tp] = offset
            self._stuck.pop(tp, None)

        async def seek_to_committed(self) -> Any:
            """Seek, and expect each stream partition's next record at its committed offset; a partition never
            committed (a new group, or a topic nobody has read yet) starts at the first offset in its log.

            Without an expectation there was no guard: a fresh group's first worker, killed 1.5 s after it
            started, had 84 admissions fetched and dropped in the window above and committed past them
            (Faust commits from the first acknowledged offset when nothing was committed before)."""
            committed = await super().seek_to_committed()
            unset = [tp for tp, offset in committed.items()
                     if not (offset is not None and offset > 0) and not self._is_changelog_tp(tp)]
            first: Mapping[Any, int] = {}
            if unset:
                try:
                    first = await self.earliest_offsets(*unset)
                except Exception as exc:  # noqa: BLE001 - the partitions still run, without the guard, loudly
                    log.warning("cannot list the first offsets of %d never-committed stream partitions (%s): their "
                                "records are not checked for continuity until a seek", len(unset), exc)
            for tp, offset in committed.items():
                self._expect(tp, offset if offset is not None and offset > 0 else first.get(tp))
            return committed

        async def seek(self, partition: Any, offset: int) -> None:
            await super().seek(partition, offset)
            self._expect(partition, offset)

        async def on_partitions_revoked(self, revoked: Any) -> None:
            for tp in revoked:
                self._expect(tp, None)
            await super().on_partitions_revoked(revoked)

        # Records consumed by the fetcher but never handed out. A fetch queued to the consumer thread
        # before a seek can run after it: the fetcher's position moves past the records it returned, and
        # Faust drops them (the request was cancelled, or a partition was paused or flow stopped while
        # they were on their way). Nothing re-reads them until a later record of that partition shows the
        # gap, and a quiet partition may have none for hours (seen: a restarted worker never forwarded
        # the one admission published after the kill, fetcher at 322, next to hand out 321). Between
        # batches, a stream partition whose fetcher position stays ahead of the next offset to hand out
        # for `_LOST_AFTER_S` is pointed back at it.
        _LOST_AFTER_S = 1.0
        _ahead: dict[Any, tuple[int, float]]
        _ahead_checked_at: float = 0.0

        def _fetcher_position(self, tp: Any) -> int | None:
            try:  # aiokafka's own record of where the next fetch starts (read without a thread hop)
                consumer = self._thread._ensure_consumer()
                state = consumer._subscription.subscription.assignment.state_value(
                    faust_aiokafka.TopicPartition(tp.topic, tp.partition))
            except Exception:  # noqa: BLE001 - not assigned (any more), or the consumer is stopping
                return None
            if state is None or not state.has_valid_position or state.paused:
                return None
            return int(state.position)

        def _refetch(self, tp: Any, offset: int) -> None:
            """Point the fetcher back at `offset` (its prefetched records are dropped) and let Faust take it."""
            self._thread.seek(tp, offset)
            self._read_offset[tp] = offset

        def _point_back_lost_records(self) -> None:
            now = time.monotonic()
            if now - self._ahead_checked_at < self._LOST_AFTER_S / 2 or self.app.rebalancing or not self.flow_active:
                return
            self._ahead_checked_at = now
            ahead = getattr(self, "_ahead", {})
            still = {}
            for tp, expected in self._next_offset.items():
                position = self._fetcher_position(tp)
                if position is None or position <= expected:
                    continue
                seen_expected, since = ahead.get(tp, (expected, now))
                if seen_expected != expected:
                    since = now
                if now - since < self._LOST_AFTER_S:
                    still[tp] = (expected, since)
                    continue
                log.warning("%s[%d]: the fetcher is at %d but %d was never handed out (fetched for a request "
                            "that was dropped); refetching from %d", tp.topic, tp.partition, position, expected,
                            expected)
                self._refetch(tp, expected)
            self._ahead = still

        async def getmany(self, timeout: float) -> Any:
            if not hasattr(self, "_next_offset"):
                self._next_offset, self._stuck = {}, {}
            self._point_back_lost_records()
            async for tp, message in super().getmany(timeout):
                if self._is_changelog_tp(tp):
                    yield tp, message
                    continue
                expected = self._next_offset.get(tp)
                if expected is not None and message.offset != expected:
                    if message.offset < expected:
                        continue  # handed out already
                    if not self._past_a_lasting_gap(tp, expected, message.offset):
                        continue
                self._next_offset[tp] = message.offset + 1
                yield tp, message

        def _past_a_lasting_gap(self, tp: Any, expected: int, offset: int) -> bool:
            """A record past the next offset: point the fetcher back (False), or accept a gap that stays (True)."""
            now = time.monotonic()
            target, first_at, sought_at, seeks = self._stuck.get(tp, (None, now, 0.0, 0))
            if target != expected:
                first_at, sought_at, seeks = now, 0.0, 0
                log.warning("%s[%d]: record %d handed out while %d is next (fetched before a seek, or past a gap): "
                            "refetching from %d", tp.topic, tp.partition, offset, expected, expected)
            if seeks >= self._GAP_PATIENCE and now - first_at >= self._GAP_PATIENCE_S:
                log.error("%s[%d]: offsets %d..%d cannot be read (deleted, or transaction markers); "
                          "continuing at %d", tp.topic, tp.partition, expected, offset - 1, offset)
                self._stuck.pop(tp, None)
                return True
            if now - sought_at >= 0.5:  # once per half second: the rest of a stale batch is just dropped
                self._refetch(tp, expected)
                sought_at, seeks = now, seeks + 1
            self._stuck[tp] = (expected, first_at, sought_at, seeks)
            return False

        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        def resume_partitions(self, tps: Any) -> None:
            tps = set(tps)
            if self.app.rebalancing:
                held = {tp for tp in tps if not self._is_changelog_tp(tp)}
                self._held = getattr(self, "_held", set()) | held
                tps -= held
                if held:
                    log.info("holding %d stream partitions until the rebalance ends", len(held))
            super().resume_partitions(tps)

        async def wait_empty(self) -> None:
            """Faust waits here, on a rebalance and at shutdown, until every message it handed out is acked.

            The sequencer holds events back on purpose (event-time order, batching): they are not
            forwarded and so not acked, and waiting for them hung SIGTERM until the kill timeout. They
            are re-read from the committed offset by whoever owns the partition next, so they are
            released from the wait here; the state agent's event in flight is still waited for."""
            held = getattr(self.app, "held_messages", None)
            if held is not None:
                self._unacked_messages.difference_update(held())
            await super().wait_empty()

        def release_held_partitions(self) -> None:
            """Start fetching the stream partitions held back during the rebalance (still assigned ones)."""
            held: set[Any] = getattr(self, "_held", set())
            self._held = set()
            log.info("rebalance ended: releasing %d held stream partitions (%d still assigned)", len(held),
                     len(held & set(self.assignment())))
            if held:
                super().resume_partitions(held & set(self.assignment()))

    class Transport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    class App(faust.App):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, Table=TrackedTable, TableManager=QuickTableManager, **kwargs)
            self.pending_changelog: list[FutureMessage] = []

        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

        def on_rebalance_end(self) -> None:
            super().on_rebalance_end()
            self.consumer.release_held_partitions()  # seeked and flow control reset: safe to fetch

    return App


class TrackedTable(faust.Table):
    """A Faust table whose changelog sends the app can await (see `drain_changelog`)."""

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        fut = super().send_changelog(*args, **kwargs)
        pending = getattr(self.app, "pending_changelog", None)
        if pending is not None:
            pending.append(fut)
        return fut


async def drain_changelog(app: faust.App) -> None:
    """Return once every changelog record written so far is acknowledged by the broker."""
    producer = app.producer
    while True:
        pending, app.pending_changelog = app.pending_changelog, []
        while producer.buffer.size:
            await producer.buffer.flush()
        for fut in pending:
            await fut
        await producer.flush()
        if not app.pending_changelog:
            return


class ShownEndRecovery(Recovery):
    """Faust's table recovery, reading each changelog partition to the furthest end the broker has shown.

    Faust reads each changelog partition up to the end the broker *lists* (ListOffsets), and at each
    rebalance stops the worker (`ConsistencyError`) when it has already read past that end. The
    embedded Tansu 0.6 lists a partition's end as the base offset of its last record batch + 1, short
    of the batch's other records (measured: 3,000 records acknowledged in batches, end listed at 2,259;
    its fetch answers said 3,000). The worker that kept a changelog partition through a rebalance after
    reading such a batch died (tests/streams/worker/test_handover.py, 4 runs in 6), and a recovery that
    stops at the listed end leaves unread whatever of the last batch has not been delivered yet.

    So a listed end is raised to the last offset already read from the partition, and a recovery that
    seems done goes on while the high watermark of this assignment's fetch answers says there is more.
    On Apache Kafka the listing is exact: a raise there means records written after it (a previous owner's
    late sends, read as well) or a log that lost data. Each raise is logged (WARNING) with both figures.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.short_listings = 0  # listed ends found below what the broker had shown (read by the tests)

    def _raise(self, highwaters: Counter[TP], tp: TP, shown: int | None, how: str) -> None:
        listed = highwaters.get(tp)
        if shown is None or shown <= (-1 if listed is None else listed):
            return
        self.short_listings += 1
        log.warning("%s[%d]: the broker lists the last offset as %s but %s %d; reading to %d",
                    tp.topic, tp.partition, listed, how, shown, shown)
        highwaters[tp] = shown

    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Counter[TP], title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        read = self.active_offsets if destination is self.active_highwaters else self.standby_offsets
        for tp in tps:
            self._raise(destination, tp, read.get(tp), "this worker has read up to")

    def _fetched_highwater(self, tp: TP) -> int | None:
        try:
            return self.app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned (any more), not fetched yet, or the consumer is stopping
            return None

    def need_recovery(self) -> bool:
        """Asked after every changelog record while recovering; only a recovery that seems done asks the fetcher."""
        if super().need_recovery():
            return True
        for tp in list(self.active_highwaters):
            highwater = self._fetched_highwater(tp)  # the next offset, where Faust's ends are last offsets
            self._raise(self.active_highwaters, tp, None if highwater is None else highwater - 1,
                        "its fetch answers end at")
        return super().need_recovery()


class QuickTableManager(TableManager):
    """Faust's table manager without its one-second pause before subscribing (measured: the group join
    of a restarted worker starts 0.4 s after the worker instead of 1.4 s). The pause leaves time to
    declare tables late; every WardFlow table is declared in `create_app`, before the app starts.

    Its recovery is `ShownEndRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:  # type: ignore[has-type] # Faust sets it to None in __init__, unannotated
            self._recovery = ShownEndRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


@contextmanager
def acting_on(event: faust.EventT) -> Iterator[None]:
    """Table writes in this block belong to `event`'s partition (Faust takes the changelog partition
    of a write, and the expiry bookkeeping of a windowed key, from the current event).

    A checkpoint writes a batch's state after its events were iterated, when Faust's current event
    is the batch's last, possibly of another partition; each partition's writes run under one of
    its own events. Faust exposes the getter (`faust.streams.current_event`) but not the setter."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
