"""Idempotency: remember each applied event_id per hospital, and forget old ones in bulk.

Ids are grouped into one-hour buckets of event time. When a hospital's newest event time
moves on, buckets older than the retention are deleted with their ids; an event older than
the retention cannot be checked any more and is refused as stale rather than applied twice.
Cleanup runs while processing an event (Faust tables can only change there).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from streams.state.records import DedupeBucket, DedupeMeta
from streams.state.tables import SEEN, SEEN_BUCKETS, SEEN_META, StagedTables, key

BUCKET_SECONDS = 3600


def _bucket(at: datetime) -> int:
    return int(at.timestamp() // BUCKET_SECONDS)


def is_duplicate(staged: StagedTables, hospital_id: str, event_id: str) -> bool:
    return staged.get(SEEN, key(hospital_id, event_id)) is not None


def is_stale(staged: StagedTables, hospital_id: str, occurred_at: datetime, retention: timedelta) -> bool:
    meta: DedupeMeta | None = staged.get(SEEN_META, hospital_id)
    if meta is None:
        return False
    return occurred_at < datetime.fromisoformat(meta.high_water) - retention


def remember(staged: StagedTables, hospital_id: str, event_id: str, occurred_at: datetime,
             retention: timedelta) -> int:
    """Record `event_id` as applied; returns how many expired ids were forgotten."""
    bucket = _bucket(occurred_at)
    staged.put(SEEN, key(hospital_id, event_id), bucket)
    bucket_key = key(hospital_id, str(bucket))
    current: DedupeBucket | None = staged.get(SEEN_BUCKETS, bucket_key)
    staged.put(SEEN_BUCKETS, bucket_key, DedupeBucket(event_ids=[*(current.event_ids if current else []), event_id]))

    meta: DedupeMeta | None = staged.get(SEEN_META, hospital_id)
    previous = None if meta is None else datetime.fromisoformat(meta.high_water)
    high_water = occurred_at if previous is None else max(occurred_at, previous)
    oldest = bucket if meta is None else min(meta.oldest_bucket, bucket)
    cutoff = _bucket(high_water - retention)  # buckets strictly before this one have expired
    # Buckets exist only up to the previous high water's (and this event's): the sweep stops there, so a
    # hospital silent for years, or a first event dated in year 1, costs a few steps, not one per hour between.
    last_filled = _bucket(previous) if previous is not None else bucket
    forgotten = 0
    while oldest < cutoff and oldest <= last_filled:
        old_key = key(hospital_id, str(oldest))
        old: DedupeBucket | None = staged.get(SEEN_BUCKETS, old_key)
        if old is not None:
            for old_id in old.event_ids:
                staged.delete(SEEN, key(hospital_id, old_id))
            forgotten += len(old.event_ids)
            staged.delete(SEEN_BUCKETS, old_key)
        oldest += 1
    oldest = max(oldest, min(cutoff, bucket))  # nothing was filled between the last filled bucket and the cutoff
    staged.put(SEEN_META, hospital_id, DedupeMeta(high_water=high_water.isoformat(), oldest_bucket=oldest))
    return forgotten
