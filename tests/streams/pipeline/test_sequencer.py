"""The event-time merge across input topics: order, waiting for lagging topics, bounded waits."""

from __future__ import annotations

import math

import orjson

from streams.pipeline.sequencer import EventTimeMerger, event_time

TOPICS = ("admissions", "vitals", "transfers")


def _lag(table: dict[str, int | None]):
    return lambda topic, partition: table.get(topic, 0)


def _offsets(released):
    return [(p.topic, p.offset) for p in released]


def test_releases_in_event_time_order_when_every_topic_has_a_head():
    m = EventTimeMerger(TOPICS, max_wait_s=1.0)
    m.add("transfers", 0, 0, 20.0, "t0", now=0)
    m.add("admissions", 0, 0, 10.0, "a0", now=0)
    m.add("vitals", 0, 0, 15.0, "v0", now=0)
    assert _offsets(m.release(0, now=0, lag=_lag({}))) == [("admissions", 0), ("vitals", 0), ("transfers", 0)]


def test_waits_for_a_topic_that_still_has_unread_messages():
    m = EventTimeMerger(TOPICS, max_wait_s=1.0)
    m.add("transfers", 0, 0, 20.0, "t0", now=0)
    # admissions has 1 unread message: the transfer may refer to it, so it waits
    assert m.release(0, now=0.1, lag=_lag({"admissions": 1})) == []
    m.add("admissions", 0, 0, 10.0, "a0", now=0.2)
    assert _offsets(m.release(0, now=0.2, lag=_lag({}))) == [("admissions", 0), ("transfers", 0)]


def test_known_unread_messages_are_waited_for_beyond_max_wait_until_the_safety_net():
    m = EventTimeMerger(TOPICS, max_wait_s=0.2, stuck_after_s=30.0)
    m.add("transfers", 0, 0, 20.0, "t0", now=0)
    behind = _lag({"admissions": 3})
    assert m.release(0, now=5.0, lag=behind) == []  # far past max_wait: still waits, data is coming
    assert _offsets(m.release(0, now=30.0, lag=behind)) == [("transfers", 0)]
    assert m.forced_releases == 1


def test_does_not_wait_for_a_topic_with_nothing_left_to_read():
    m = EventTimeMerger(TOPICS, max_wait_s=1.0)
    m.add("vitals", 0, 5, 30.0, "v5", now=0)
    assert _offsets(m.release(0, now=0, lag=_lag({"admissions": 0, "transfers": 0}))) == [("vitals", 5)]


def test_unknown_lag_waits_but_never_longer_than_max_wait():
    m = EventTimeMerger(TOPICS, max_wait_s=0.5)
    m.add("vitals", 0, 0, 30.0, "v0", now=10.0)
    unknown = _lag({"admissions": None})
    assert m.release(0, now=10.49, lag=unknown) == []
    assert _offsets(m.release(0, now=10.5, lag=unknown)) == [("vitals", 0)]  # the edge: exactly max_wait


def test_order_within_a_topic_partition_is_never_changed():
    m = EventTimeMerger(TOPICS, max_wait_s=1.0)
    m.add("vitals", 0, 0, 50.0, "late-first", now=0)
    m.add("vitals", 0, 1, 40.0, "earlier-second", now=0)
    m.add("admissions", 0, 0, 45.0, "a", now=0)
    assert _offsets(m.release(0, now=0, lag=_lag({}))) == [("admissions", 0), ("vitals", 0), ("vitals", 1)]


def test_ties_follow_topic_order_then_offset():
    m = EventTimeMerger(TOPICS, max_wait_s=1.0)
    m.add("transfers", 0, 3, 10.0, "t", now=0)
    m.add("admissions", 0, 7, 10.0, "a", now=0)
    assert _offsets(m.release(0, now=0, lag=_lag({}))) == [("admissions", 7), ("transfers", 3)]


def test_undecodable_messages_go_at_once_and_partitions_are_independent():
    m = EventTimeMerger(TOPICS, max_wait_s=5.0)
    m.add("vitals", 1, 0, None, "garbage", now=0)
    m.add("vitals", 0, 0, 10.0, "p0", now=0)
    assert _offsets(m.release(1, now=0, lag=_lag({"admissions": 9}))) == [("vitals", 0)]
    assert m.pending(0) == 1 and m.pending(1) == 0
    m.forget([0])
    assert m.pending() == 0 and ("vitals", 0) not in m.delivered


def test_event_time_parses_the_contract_timestamp_and_tolerates_garbage():
    assert event_time(orjson.dumps({"occurred_at": "1970-01-01T00:01:00+00:00"})) == 60.0
    assert event_time(b"{not json") is None
    assert event_time(b"[1, 2]") is None
    assert event_time(None) is None
    assert event_time(orjson.dumps({"occurred_at": "yesterday"})) is None
    assert not math.isnan(event_time(orjson.dumps({"occurred_at": "2026-11-24T08:00:00Z"})))
