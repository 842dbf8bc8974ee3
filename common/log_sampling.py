"""Repeated log lines, sampled: the first of a kind is written, then at most one summary per interval.

A line that a client or an outage can repeat at will (a 503 per push while
Redis is down, a refused stream, a 429) would otherwise be written once per
occurrence: hundreds of identical lines that hide the rest and cost more
than the refusal they report. ``LogSampler.log`` writes the first occurrence
of a key as it is; the further ones in the next ``LOG_SAMPLE_SECONDS`` are
counted, and when that interval ends one line says how many there were,
with the last one's text: ``"431 more like this in the last 60 s; the last:
Event store unavailable ..."``. An interval with none ends the sampling, so
the next occurrence is written in full again. ``LOG_SAMPLE_SECONDS=0``
writes every occurrence.

The summary is written by a timer on the running event loop, so it comes
even when the occurrences stop; without one (a thread, or a loop that has
closed since), by the next occurrence after the interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

#: Keys one sampler tracks at once; occurrences of further keys share one key (still sampled, never unbounded).
MAX_KEYS = 1000
_OVERFLOW = object()


@dataclass
class _Window:
    started: float
    ends: float
    generation: int = 0
    suppressed: int = 0
    # The last suppressed occurrence: (level, msg, args); its text is made only if a summary is written.
    last: tuple[int, Any, tuple[Any, ...]] | None = field(default=None, repr=False)


# What a summary line needs: how many were left out, the last of them, over how many seconds.
_Summary = tuple[int, tuple[int, Any, tuple[Any, ...]], float]


class LogSampler:
    """Writes the first occurrence of each key to ``logger``, then one summary per interval while they repeat."""

    def __init__(self, logger: logging.Logger, *, interval: float | None = None) -> None:
        """``interval``: seconds per summary; None reads ``settings.LOG_SAMPLE_SECONDS`` at each occurrence."""
        self.logger = logger
        self._interval = interval
        self._windows: dict[Hashable, _Window] = {}
        self._lock = threading.Lock()  # sync views log from threads; the timers run on the loop's

    def interval(self) -> float:
        """Seconds between summaries; 0: no sampling."""
        return self._interval if self._interval is not None else settings.LOG_SAMPLE_SECONDS

    def log(self, level: int, key: Hashable, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log ``msg % args`` at ``level`` if it is the first for ``key``; else count it (kwargs as Logger.log's)."""
        if not self.logger.isEnabledFor(level):
            return
        interval = self.interval()
        if interval <= 0:
            self.logger.log(level, msg, *args, **kwargs)
            return
        now = time.monotonic()
        summary = None
        with self._lock:
            if key not in self._windows and len(self._windows) >= MAX_KEYS:
                key = _OVERFLOW
            window = self._windows.get(key)
            if window is not None and now >= window.ends:
                # Its timer never came (no loop, or a closed one): the interval ends here.
                summary = self._close(key, window, now, interval)
                window = self._windows.get(key)
            first = window is None
            if window is None:
                window = self._windows[key] = _Window(started=now, ends=now + interval)
                self._schedule(key, window, interval)
            else:
                window.suppressed += 1
                window.last = (level, msg, args)
        if summary is not None:
            self._write(summary)
        if first:
            self.logger.log(level, msg, *args, **kwargs)

    def warning(self, key: Hashable, msg: str, *args: Any, **kwargs: Any) -> None:
        """``log`` at WARNING."""
        self.log(logging.WARNING, key, msg, *args, **kwargs)

    def error(self, key: Hashable, msg: str, *args: Any, **kwargs: Any) -> None:
        """``log`` at ERROR."""
        self.log(logging.ERROR, key, msg, *args, **kwargs)

    def flush(self) -> None:
        """Write every pending summary now and forget every key (a process about to stop; tests)."""
        now = time.monotonic()
        with self._lock:
            pending = [(window.suppressed, window.last, now - window.started) for window in self._windows.values()
                       if window.last is not None]
            self._windows.clear()
        for summary in pending:
            self._write(summary)

    def _close(self, key: Hashable, window: _Window, now: float, interval: float) -> _Summary | None:
        """End ``window``'s interval (the lock held): its summary if it counted any, and a new interval after it;
        none, and the key forgotten, after a quiet one."""
        summary = (window.suppressed, window.last, now - window.started) if window.last is not None else None
        if summary is None or interval <= 0:
            del self._windows[key]
            return summary
        window.suppressed, window.last = 0, None
        window.started, window.ends = now, now + interval
        window.generation += 1
        self._schedule(key, window, interval)
        return summary

    def _schedule(self, key: Hashable, window: _Window, interval: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # the next occurrence after the interval writes the summary
        loop.call_later(interval, self._timer, key, window, window.generation)

    def _timer(self, key: Hashable, window: _Window, generation: int) -> None:
        with self._lock:
            if self._windows.get(key) is not window or window.generation != generation:
                return  # closed meanwhile, by an occurrence or a flush
            summary = self._close(key, window, time.monotonic(), self.interval())
        if summary is not None:
            self._write(summary)

    def _write(self, summary: _Summary) -> None:
        suppressed, (level, msg, args), seconds = summary
        try:
            text = msg % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        self.logger.log(level, "%s more like this in the last %.0f s; the last: %s", suppressed, seconds, text)
