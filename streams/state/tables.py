"""The worker's view of one hospital's live state, over any mapping-like tables.

Keys are `hospital|item` strings, except in the windowed tables (`streams.state.windowed`), whose
keys are `(hospital|item, (window start, window end))` as Faust keeps them.

Writes are staged: handlers read their own writes (and their batch's), but nothing reaches the
Faust tables (and their changelogs) until `commit()`, which the processor calls only after the
batch's decisions and journal record are acknowledged by the broker. A rejected event
therefore changes nothing.
Tests use plain dicts as tables; the worker passes Faust tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from allocator.hospital import Hospital
from allocator.placement import BedSnapshot
from streams.state.records import BedState, DedupeBucket, DedupeMeta, EncounterState, UnitCensus
from streams.state.windowed import WINDOWED_TABLES

BEDS = "beds"
ENCOUNTERS = "encounters"
PATIENTS = "patients"
CENSUS = "census"
WAITING = "waiting"
SEEN = "seen"
SEEN_BUCKETS = "seen_buckets"
SEEN_META = "seen_meta"
OBSERVATIONS = "observations"  # hid|encounter -> {parameter: [value, observed_at]}
PAGING = "paging"  # hid|encounter -> PagingState.to_dict()
PAGES = "pages"  # hid|page_id -> encounter_id (acks name the page)
PAGING_ACTIVE = "paging_active"  # hid -> {encounter: when its next paging action is due}; hid|ward_round -> last round
CLOCK = "clock"  # hid -> latest event time seen (the hospital's own clock)
DECISION_INDEX = "decision_index"  # hid|decision_id -> encounter_id (overrides name the decision)
HOLDS = "holds"  # hid -> encounters with a bed held for confirmation
JOURNAL = "journal"  # hid -> the last event's complete set of writes (one changelog record)
SURGE = "surge"  # hid -> SurgeState.to_dict()
TEXTS = "texts"  # hid|encounter -> the arrival's free text, kept while the stay is open for feedback (PHI)
TABLE_NAMES = (BEDS, ENCOUNTERS, PATIENTS, CENSUS, WAITING, SEEN, SEEN_BUCKETS, SEEN_META,
               OBSERVATIONS, PAGING, PAGES, PAGING_ACTIVE, CLOCK, DECISION_INDEX, HOLDS, JOURNAL, SURGE, TEXTS, *WINDOWED_TABLES)

# Table -> Faust record type of its values (None: plain JSON values).
TABLE_TYPES: dict[str, type | None] = {
    BEDS: BedState, ENCOUNTERS: EncounterState, CENSUS: UnitCensus, SEEN_BUCKETS: DedupeBucket,
    SEEN_META: DedupeMeta, **{name: None for name in (PATIENTS, WAITING, SEEN, OBSERVATIONS, PAGING, PAGES,
                                                       PAGING_ACTIVE, CLOCK, DECISION_INDEX, HOLDS, JOURNAL,
                                                       SURGE, TEXTS, *WINDOWED_TABLES)},
}

_DELETED = object()
AVAILABLE = "available"
# A bed never written is available. One shared value (most beds are never written, and a Faust record costs
# microseconds to build): records are never changed in place, every change writes a new one.
_NEVER_WRITTEN = BedState(status=AVAILABLE, since="")
BED_STATUSES = ("available", "occupied", "held", "dirty", "cleaning", "blocked", "closed")


def key(hospital_id: str, item: str) -> str:
    """Table key: every key starts with the hospital, so one hospital's state stays together."""
    return f"{hospital_id}|{item}"


class StagedTables:
    """Read-your-writes overlay on a set of named tables; `commit()` applies the writes in order.

    Overlays stack: `child()` stages one event's writes over a batch's, and `absorb(child)`
    keeps them in the batch once the event is accepted (a rejected event's child is dropped)."""

    def __init__(self, tables: Mapping[str, MutableMapping[str, Any]], parent: StagedTables | None = None) -> None:
        self._tables = tables
        self._parent = parent
        self._staged: dict[tuple[str, Any], Any] = {}

    def get(self, table: str, k: Any, default: Any = None) -> Any:
        staged = self._staged.get((table, k), None)
        if staged is _DELETED:
            return default
        if staged is not None:
            return staged
        if self._parent is not None:
            return self._parent.get(table, k, default)
        stored = self._tables[table]
        # `in` first: a Faust table's `get` of a missing key goes through KeyError (most beds are never written)
        value = stored[k] if k in stored else None  # noqa: SIM401 - `get` on a Faust table raises and catches KeyError
        return default if value is None else value

    def put(self, table: str, k: Any, value: Any) -> None:
        self._staged[(table, k)] = value

    def delete(self, table: str, k: Any) -> None:
        self._staged[(table, k)] = _DELETED

    def child(self) -> StagedTables:
        """An overlay on this one (one event's writes over its batch's)."""
        return StagedTables(self._tables, parent=self)

    def absorb(self, child: StagedTables) -> None:
        """Take a child's writes as this overlay's own (the latest value of each key wins)."""
        self._staged.update(child._staged)

    def __len__(self) -> int:
        return len(self._staged)

    def writes(self) -> Iterator[tuple[str, Any, Any]]:
        for (table, k), value in self._staged.items():
            yield table, k, (None if value is _DELETED else value)

    def write_journal(self, journal_key: str, event_ids: str | list[str], outputs: dict[str, list[str]], *,
                      carry_previous: bool = True) -> None:
        """Write these events' writes, the previous record's writes and these events' outputs as ONE journal record.

        A checkpoint journals a batch of a hospital's events at once: each key's latest value,
        and every output in order. A crash may keep any subset of the individual changelog
        records, and they are made durable only by the next checkpoint's flush; the journal
        record is durable first, so a restart finishes both the previous and this batch from it
        (`replay_journal`) and re-sends this batch's outputs (decisions, feedback: deterministic,
        so a repeat is a harmless duplicate). `carry_previous=False` when the caller has already
        made the previous record's writes durable.
        """
        ids = [event_ids] if isinstance(event_ids, str) else list(event_ids)
        previous = (self._tables[JOURNAL].get(journal_key) or {}) if carry_previous else {}
        self._tables[JOURNAL][journal_key] = {
            "event_id": ids[-1] if ids else None,
            "event_ids": ids,
            "previous_writes": previous.get("writes", []),
            "writes": [[t, k, _plain(v)] for t, k, v in self.writes() if t != JOURNAL],
            "outputs": outputs,
        }

    def commit(self) -> int:
        """Apply every staged write to its table (synchronously: no await in between)."""
        if self._parent is not None and len(self._parent):
            raise RuntimeError("commit() over uncommitted writes: commit or absorb into the parent first")
        for (table, k), value in self._staged.items():
            if value is _DELETED:
                if self._tables[table].get(k) is not None:
                    del self._tables[table][k]
            else:
                self._tables[table][k] = value
        count = len(self._staged)
        self._staged.clear()
        self._parent = None  # committed: reads go to the tables (and no chain of overlays builds up)
        return count


def _plain(value: Any) -> Any:
    return value.asdict() if hasattr(value, "asdict") else value


def _table_key(k: Any) -> Any:
    """A key as tables hold it: a windowed key `(key, (start, end))` comes back from JSON as lists."""
    if isinstance(k, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in k)
    return k


def replay_journal(tables: Mapping[str, MutableMapping[str, Any]], journal_key: str) -> dict[str, list[str]]:
    """Re-apply the journalled writes (the previous event's, then the last one's); returns its outputs.

    Idempotent: the values are the latest ones of those keys, whatever reached the changelog.
    """
    entry = tables[JOURNAL].get(journal_key)
    if not entry:
        return {}
    staged = StagedTables(tables)
    for table, k, value in [*entry.get("previous_writes", []), *entry["writes"]]:
        record = TABLE_TYPES.get(table)
        k = _table_key(k)
        if value is None:
            staged.delete(table, k)
        else:
            staged.put(table, k, record(**{f: v for f, v in value.items() if f != "__faust"}) if record else value)
    staged.commit()
    return dict(entry.get("outputs") or {})


class HospitalState:
    """Typed accessors for one hospital's beds, encounters, waiting list and census."""

    def __init__(self, staged: StagedTables, hospital: Hospital) -> None:
        self.staged = staged
        self.hospital = hospital
        self.hid = hospital.hospital_id
        self._touched_units: set[str] = set()

    # beds ---------------------------------------------------------------
    def bed(self, bed_id: str) -> BedState:
        state = self.staged.get(BEDS, key(self.hid, bed_id))
        return state if state is not None else _NEVER_WRITTEN

    def set_bed(self, bed_id: str, state: BedState) -> None:
        self.staged.put(BEDS, key(self.hid, bed_id), state)
        bed = self.hospital.bed(bed_id)
        if bed is not None:
            self._touched_units.add(bed.unit)

    def bed_snapshots(self) -> Mapping[str, BedSnapshot]:
        return _BedSnapshots(self)

    # encounters ---------------------------------------------------------
    def encounter(self, encounter_id: str) -> EncounterState | None:
        return self.staged.get(ENCOUNTERS, key(self.hid, encounter_id))

    def set_encounter(self, enc: EncounterState) -> None:
        self.staged.put(ENCOUNTERS, key(self.hid, enc.encounter_id), enc)

    def open_encounter_of(self, patient_id: str) -> str | None:
        return self.staged.get(PATIENTS, key(self.hid, patient_id))

    def set_open_encounter(self, patient_id: str, encounter_id: str | None) -> None:
        if encounter_id is None:
            self.staged.delete(PATIENTS, key(self.hid, patient_id))
        else:
            self.staged.put(PATIENTS, key(self.hid, patient_id), encounter_id)

    # waiting list (FIFO of encounter ids waiting for a bed) --------------
    def waiting(self) -> list[str]:
        return list(self.staged.get(WAITING, self.hid, []))

    def set_waiting(self, encounter_ids: list[str]) -> None:
        self.staged.put(WAITING, self.hid, list(encounter_ids))

    # clinical: observations, paging, the hospital clock -------------------
    def observations(self, encounter_id: str) -> dict | None:
        return self.staged.get(OBSERVATIONS, key(self.hid, encounter_id))

    def set_observations(self, encounter_id: str, obs: dict) -> None:
        self.staged.put(OBSERVATIONS, key(self.hid, encounter_id), obs)

    def paging(self, encounter_id: str) -> dict | None:
        return self.staged.get(PAGING, key(self.hid, encounter_id))

    def set_paging(self, encounter_id: str, value: dict) -> None:
        self.staged.put(PAGING, key(self.hid, encounter_id), value)

    def page_owner(self, page_id: str) -> str | None:
        return self.staged.get(PAGES, key(self.hid, page_id))

    def set_page_owner(self, page_id: str, encounter_id: str) -> None:
        self.staged.put(PAGES, key(self.hid, page_id), encounter_id)

    def paging_active(self) -> dict[str, float | None]:
        """Encounters being watched -> when their next time-driven paging action is due (epoch s), or None."""
        return dict(self.staged.get(PAGING_ACTIVE, self.hid, {}))

    def set_paging_active(self, due: dict[str, float | None]) -> None:
        self.staged.put(PAGING_ACTIVE, self.hid, dict(due))

    def last_ward_round(self) -> str | None:
        """The latest ward round whose overdue observations were reported (ISO time), if any."""
        return self.staged.get(PAGING_ACTIVE, key(self.hid, "ward_round"))

    def set_last_ward_round(self, at: str) -> None:
        self.staged.put(PAGING_ACTIVE, key(self.hid, "ward_round"), at)

    def clock(self) -> str | None:
        return self.staged.get(CLOCK, self.hid)

    def set_clock(self, at: str) -> None:
        self.staged.put(CLOCK, self.hid, at)

    def decision_owner(self, decision_id: str) -> str | None:
        return self.staged.get(DECISION_INDEX, key(self.hid, decision_id))

    def set_decision_owner(self, decision_id: str, encounter_id: str) -> None:
        self.staged.put(DECISION_INDEX, key(self.hid, decision_id), encounter_id)

    def surge(self) -> dict | None:
        return self.staged.get(SURGE, self.hid)

    def set_surge(self, value: dict) -> None:
        self.staged.put(SURGE, self.hid, value)

    def text(self, encounter_id: str) -> str | None:
        return self.staged.get(TEXTS, key(self.hid, encounter_id))

    def set_text(self, encounter_id: str, text: str | None) -> None:
        if text is None:
            self.staged.delete(TEXTS, key(self.hid, encounter_id))
        else:
            self.staged.put(TEXTS, key(self.hid, encounter_id), text)

    def holds(self) -> list[str]:
        return list(self.staged.get(HOLDS, self.hid, []))

    def set_holds(self, encounter_ids: list[str]) -> None:
        self.staged.put(HOLDS, self.hid, list(encounter_ids))

    # census ---------------------------------------------------------------
    def census(self, unit: str) -> UnitCensus:
        stored = self.staged.get(CENSUS, key(self.hid, unit))
        return stored if stored is not None else self.compute_census(unit)

    def compute_census(self, unit: str) -> UnitCensus:
        counts = dict.fromkeys(BED_STATUSES, 0)
        beds = self.hospital.beds_in_unit(unit)
        for bed in beds:
            counts[self.bed(bed.bed_id).status] += 1
        return UnitCensus(unit=unit, total=len(beds), by_status=counts)

    def refresh_census(self) -> list[UnitCensus]:
        """Recompute the census of every unit whose beds changed in this event."""
        updated = []
        for unit in sorted(self._touched_units):
            census = self.compute_census(unit)
            self.staged.put(CENSUS, key(self.hid, unit), census)
            updated.append(census)
        self._touched_units.clear()
        return updated


class _BedSnapshots(Mapping[str, BedSnapshot]):
    """Lazy bed_id -> BedSnapshot view for the allocator (looks a bed up only when asked)."""

    def __init__(self, state: HospitalState) -> None:
        self._state = state

    def __getitem__(self, bed_id: str) -> BedSnapshot:
        if self._state.hospital.bed(bed_id) is None:
            raise KeyError(bed_id)
        bed = self._state.bed(bed_id)
        return BedSnapshot(status=bed.status, occupant_sex=bed.occupant_sex)

    def __iter__(self) -> Iterator[str]:
        return (b.bed_id for b in self._state.hospital.beds)

    def __len__(self) -> int:
        return len(self._state.hospital.beds)
