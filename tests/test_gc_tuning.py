"""The collector's tuning after start-up (``aa_site.gc_tuning``): frozen start-up objects, higher thresholds."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from aa_site import gc_tuning
from testing import processes

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


# The image's server loading the application as it does at start-up, with every collection it makes counted.
COUNT_COLLECTIONS = (
    "import gc\n"
    "generations = []\n"
    "gc.callbacks.append(lambda phase, info: phase == 'start' and generations.append(info['generation']))\n"
    "from aa_site import serve_uvicorn\n"
    "generations.clear()\n"
    "serve_uvicorn.load_application('aa_site.asgi:application')\n"
    "during = list(generations)\n"
    "print('COLLECTIONS', during, gc.isenabled(), gc.get_threshold())\n"
)


# Tuned: none at all, start-up's objects frozen uncollected. Untuned: none, though the first allocation once the
# collector is back may start a young one (the allocations counted while it was paused are far over its threshold).
@pytest.mark.parametrize(("tuning", "thresholds", "collections"), [
    ("true", gc_tuning.THRESHOLDS, ("[]",)), ("false", PYTHON_DEFAULTS, ("[]", "[0]"))])
def test_the_images_server_starts_without_collections_and_then_collects_as_tuned(
    redis_server, tuning: str, thresholds: tuple[int, int, int], collections: tuple[str, ...]
) -> None:
    """A collection walks the young objects start-up has made since the last, and start-up makes hundreds of
    thousands, most for good: the collector waits until start-up is over, then runs as tuned."""
    environment = processes.server_environment(role="connector", redis=redis_server, GC_TUNING=tuning)
    run = subprocess.run([sys.executable, "-c", COUNT_COLLECTIONS], cwd=processes.REPOSITORY, env=environment,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("COLLECTIONS "))
    assert line in [f"COLLECTIONS {during} True {thresholds}" for during in collections]
