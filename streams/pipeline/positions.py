"""Where the state agent really is on `ordered`: the last offset applied per partition, kept in a table.

Faust's committed offset is not enough on its own. Under kill -9 cycles a restarted worker
was seen to be handed `ordered[0]` from offset 4380 right after seeking to its committed
1533: Faust counts the offsets it never delivered as a gap, treats the gap as acknowledged
and commits past it, so every event in between (admissions among them) was skipped for good.

The applied position is written to a table after each checkpoint (never before the batch it
describes is durable), so it recovers with the state it describes. `stage()` moves the
position on in memory as a batch is applied, and `write()` writes a batch's once it is durable.
An event past the next expected offset means something was skipped: the agent seeks back and
drops what arrives until the expected offset does. An event at or before the position was
applied already and is dropped. Pure bookkeeping, no Faust here, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Verdict:
    action: Literal["apply", "skip", "seek", "accept_gap"]
    expected: int | None = None  # the next offset the position says must come


class OrderedPositions:
    """Per partition of `ordered`: the last applied offset (in `table`) and whether a seek is under way."""

    def __init__(self, table: MutableMapping[str, Any], *, reseek_after_s: float = 2.0, max_seeks: int = 5) -> None:
        self.table = table
        self.reseek_after_s = reseek_after_s
        self.max_seeks = max_seeks  # the expected offset never came after this many seeks: it is gone from the log
        self._seeking: dict[int, tuple[int, float, int]] = {}  # partition -> (expected, sought at, seeks)
        self._staged: dict[int, int] = {}  # partition -> last offset of the batch being checkpointed

    def last(self, partition: int) -> int | None:
        if partition in self._staged:
            return self._staged[partition]
        value = self.table.get(str(partition))
        return None if value is None else int(value)

    def check(self, partition: int, offset: int, now: float) -> Verdict:
        last = self.last(partition)
        if last is None:
            return Verdict("apply")  # nothing applied on this partition yet
        expected = last + 1
        if offset == expected:
            self._seeking.pop(partition, None)
            return Verdict("apply", expected)
        if offset < expected:
            return Verdict("skip", expected)  # applied already (a re-delivery)
        seeking = self._seeking.get(partition)
        if seeking and seeking[0] == expected:
            _, sought_at, seeks = seeking
            if seeks >= self.max_seeks:
                self._seeking.pop(partition, None)
                return Verdict("accept_gap", expected)  # deleted by retention: nothing left to read there
            if now - sought_at < self.reseek_after_s:
                return Verdict("skip", expected)  # still on its way after the seek
            self._seeking[partition] = (expected, now, seeks + 1)
            return Verdict("seek", expected)
        self._seeking[partition] = (expected, now, 1)
        return Verdict("seek", expected)

    def applied(self, partition: int, offset: int) -> None:
        self.table[str(partition)] = offset

    def stage(self, partition: int, offset: int) -> None:
        """`offset` is in the batch being checkpointed: later checks count it as applied."""
        self._staged[partition] = offset

    def write(self, partition: int, offset: int) -> None:
        """The batch whose last offset on `partition` is `offset` is durable: write it to the table."""
        self.applied(partition, offset)
        if self._staged.get(partition) == offset:
            del self._staged[partition]

    def drop_staged(self) -> None:
        """The batch was not made durable (its events will come again): forget its positions."""
        self._staged.clear()

    def forget(self) -> None:
        """Partitions moved: no seek is under way any more (the table keeps the positions)."""
        self._seeking.clear()
