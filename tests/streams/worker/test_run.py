"""Running a worker: the garbage collector is tuned once, from its setting."""

from __future__ import annotations

import gc

import pytest

from streams.cli import build_parser
from streams.settings import SettingsError, settings_from_args
from streams.worker.run import tune_gc


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tuning_freezes_what_is_loaded_and_sets_only_the_young_threshold(restore_gc):
    kept = object(), [1, 2, 3]
    older = gc.get_threshold()[1:]
    tune_gc(12_345)
    assert gc.get_threshold() == (12_345, *older)
    assert gc.get_freeze_count() > 0 and kept


def test_a_threshold_below_pythons_default_is_refused_by_name():
    with pytest.raises(SettingsError, match="--gc-young-threshold"):
        settings_from_args(build_parser().parse_args(["worker", "--gc-young-threshold", "10"]))
