"""The state agent's own position on `ordered`: apply in order, skip re-deliveries, seek back over gaps."""

from streams.pipeline.positions import OrderedPositions


def test_nothing_applied_yet_applies_whatever_comes_first():
    p = OrderedPositions({})
    assert p.check(0, 17, now=0).action == "apply"


def test_the_next_offset_applies_and_earlier_ones_are_skipped():
    table = {}
    p = OrderedPositions(table)
    p.applied(0, 10)
    assert table == {"0": 10}
    assert p.check(0, 11, now=0).action == "apply"
    assert p.check(0, 10, now=0).action == "skip"
    assert p.check(0, 3, now=0).action == "skip"


def test_a_gap_seeks_back_once_then_waits_for_the_expected_offset():
    p = OrderedPositions({"0": 1532}, reseek_after_s=2.0)
    v = p.check(0, 4380, now=100.0)
    assert (v.action, v.expected) == ("seek", 1533)
    # what was already buffered past the gap is dropped while the seek takes effect
    assert p.check(0, 4381, now=100.5).action == "skip"
    assert p.check(0, 4382, now=101.9).action == "skip"
    assert p.check(0, 1533, now=102.0).action == "apply"
    p.applied(0, 1533)
    assert p.check(0, 1534, now=102.0).action == "apply"


def test_a_seek_that_did_not_take_is_repeated_and_a_gap_gone_from_the_log_is_accepted_in_the_end():
    p = OrderedPositions({"0": 9}, reseek_after_s=1.0, max_seeks=3)
    assert p.check(0, 50, now=0.0).action == "seek"
    assert p.check(0, 50, now=0.5).action == "skip"
    assert p.check(0, 50, now=1.5).action == "seek"
    assert p.check(0, 50, now=3.0).action == "seek"
    v = p.check(0, 50, now=4.5)
    assert (v.action, v.expected) == ("accept_gap", 10)


def test_partitions_are_independent_and_forget_drops_only_the_seek_state():
    table = {"0": 5, "1": 7}
    p = OrderedPositions(table)
    assert p.check(0, 9, now=0).action == "seek"
    assert p.check(1, 8, now=0).action == "apply"
    p.forget()
    assert table == {"0": 5, "1": 7}
    assert p.check(0, 9, now=0.1).action == "seek"  # a fresh seek after a rebalance, not a wait


def test_a_batch_moves_the_position_in_memory_and_writes_it_once_it_is_durable():
    table: dict = {"0": 9}
    p = OrderedPositions(table)
    assert p.check(0, 10, now=0).action == "apply"
    p.stage(0, 10)
    assert p.check(0, 11, now=0).action == "apply" and p.check(0, 10, now=0).action == "skip"
    p.stage(0, 11)
    assert table == {"0": 9}  # nothing written before the checkpoint is durable
    p.write(0, 10)  # the first batch is durable while the second is in flight: still checks from 11
    assert table == {"0": 10} and p.check(0, 12, now=0).action == "apply" and p.check(0, 11, now=0).action == "skip"
    p.write(0, 11)
    assert table == {"0": 11} and p.check(0, 12, now=0).action == "apply"


def test_a_batch_that_failed_leaves_the_position_where_it_was():
    table: dict = {"0": 9}
    p = OrderedPositions(table)
    p.stage(0, 10)
    p.drop_staged()
    assert p.check(0, 10, now=0).action == "apply" and table == {"0": 9}
