"""The garbage collector of a serving process: start-up objects frozen, collections rarer.

A full collection walks every tracked object. After start-up most of them
(modules, settings, Django's URL resolvers, class objects) live for ever, and
with thousands of desktop connections the live set grows further, so a full
collection pauses the event loop long enough to show in the latency tail.
``gc.freeze()`` moves what start-up made into a permanent generation the
collector never walks, and a higher first threshold makes young collections
rarer (each push or frame allocates a few hundred short-lived objects, most
freed by reference counting anyway). Figures: docs/performance.md.

The image's server (``aa_site.serve_uvicorn``) also pauses the collector while
it starts: start-up makes over a hundred thousand objects that live for ever,
and each collection meanwhile walked the young ones (about 80 ms of the
connector's cold start). Nor is there a collection before the freeze: it
walked every object start-up made (60-110 ms) to find about 2,000 that were
garbage, which now stay frozen (a few hundred KB, once per process).
"""

from __future__ import annotations

import gc

from django.conf import settings

#: Young-generation threshold (Python's default is 700) and the two older ones (defaults 10, 10).
THRESHOLDS = (50_000, 20, 20)


def pause_during_start_up() -> None:
    """No collections until ``tune_after_start_up``."""
    gc.disable()


def tune_after_start_up() -> None:
    """Freeze what start-up made, raise the thresholds; then collect as set (a pause is over).
    ``GC_TUNING=false`` leaves Python's defaults."""
    if settings.GC_TUNING:
        gc.freeze()
        gc.set_threshold(*THRESHOLDS)
    gc.enable()
