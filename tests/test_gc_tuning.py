"""The collector's tuning after start-up (``aa_site.gc_tuning``): frozen start-up objects, higher thresholds."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from aa_site import gc_tuning

PYTHON_DEFAULTS = (700, 10, 10)


@pytest.fixture
def collector() -> Iterator[None]:
    """Python's default thresholds for the test; the process's own afterwards."""
    saved = gc.get_threshold()
    gc.set_threshold(*PYTHON_DEFAULTS)
    yield
    gc.set_threshold(*saved)


def test_tuning_freezes_what_start_up_made_and_raises_the_thresholds(collector: None, settings: Any) -> None:
    settings.GC_TUNING = True
    survivor = [object()]  # made before the call, referenced after: frozen, as start-up objects are
    gc_tuning.tune_after_start_up()
    assert gc.get_threshold() == gc_tuning.THRESHOLDS
    assert gc.get_freeze_count() > 0
    assert survivor


def test_gc_tuning_false_leaves_pythons_defaults(collector: None, settings: Any) -> None:
    settings.GC_TUNING = False
    gc_tuning.tune_after_start_up()
    assert gc.get_threshold() == PYTHON_DEFAULTS
