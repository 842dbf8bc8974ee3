"""``common.log_sampling.LogSampler``: the first occurrence of a key written, then one summary per interval.

Each test has a logger of its own and a sampler with a short interval; the lines are what a handler on
that logger received. The summaries are written by a timer on the running loop, or, without a loop, by the
next occurrence after the interval.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import pytest

from common import log_sampling
from common.log_sampling import LogSampler

INTERVAL = 0.3
SUMMARY = re.compile(r"^(\d+) more like this in the last \d+ s; the last: (.*)$")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


@pytest.fixture
def logged() -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(f"tests.sampling.{uuid.uuid4().hex}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lines = Lines()
    logger.addHandler(lines)
    return logger, lines


def standing_for(lines: list[tuple[str, str]]) -> int:
    return sum(int(match[1]) if (match := SUMMARY.match(text)) else 1 for _, text in lines)


async def test_the_first_is_written_the_rest_summed_up_when_the_interval_ends(logged) -> None:
    logger, lines = logged
    sampler = LogSampler(logger, interval=INTERVAL)
    for number in range(50):
        sampler.error("outage", "Event store unavailable (messageId=%s)", number)
    assert lines.lines == [("ERROR", "Event store unavailable (messageId=0)")]
    await asyncio.sleep(INTERVAL * 1.5)
    assert lines.lines[1] == ("ERROR", f"49 more like this in the last {INTERVAL:.0f} s; the last: "
                                       "Event store unavailable (messageId=49)")
    await asyncio.sleep(INTERVAL * 1.5)  # a quiet interval: the key is forgotten, nothing more written
    assert len(lines.lines) == 2
    sampler.error("outage", "Event store unavailable (messageId=%s)", "again")
    assert lines.lines[-1] == ("ERROR", "Event store unavailable (messageId=again)")


async def test_a_steady_flood_writes_one_line_per_interval_and_loses_no_count(logged) -> None:
    logger, lines = logged
    sampler = LogSampler(logger, interval=INTERVAL)
    started, sent = time.monotonic(), 0
    while time.monotonic() - started < INTERVAL * 4:
        sampler.warning("refused", "Refusing a stream")
        sent += 1
        await asyncio.sleep(0.005)
    await asyncio.sleep(INTERVAL * 1.5)
    assert 4 <= len(lines.lines) <= 7, lines.lines
    assert standing_for(lines.lines) == sent


async def test_keys_are_sampled_apart(logged) -> None:
    logger, lines = logged
    sampler = LogSampler(logger, interval=INTERVAL)
    for _ in range(3):
        for kind in ("new-message-event", "conversation-lifecycle-event"):
            sampler.error(kind, "Event store unavailable for %s", kind)
    assert [text for _, text in lines.lines] == ["Event store unavailable for new-message-event",
                                                 "Event store unavailable for conversation-lifecycle-event"]
    await asyncio.sleep(INTERVAL * 1.5)
    assert standing_for(lines.lines) == 6 and len(lines.lines) == 4


def test_without_a_loop_the_next_occurrence_writes_the_summary(logged) -> None:
    logger, lines = logged
    sampler = LogSampler(logger, interval=INTERVAL)
    for _ in range(5):
        sampler.warning("k", "Could not serve a long-polling request")
    time.sleep(INTERVAL * 1.2)
    sampler.warning("k", "Could not serve a long-polling request")
    assert [text for _, text in lines.lines][:2] == [
        "Could not serve a long-polling request",
        "4 more like this in the last 0 s; the last: Could not serve a long-polling request",
    ]
    sampler.flush()
    assert standing_for(lines.lines) == 6


@pytest.mark.parametrize(("interval", "written"), [(0, 3), (60, 1)], ids=["zero writes each", "a minute writes one"])
def test_the_setting_is_read_at_each_occurrence(logged, settings: Any, interval: int, written: int) -> None:
    logger, lines = logged
    settings.LOG_SAMPLE_SECONDS = interval
    sampler = LogSampler(logger)
    for _ in range(3):
        sampler.warning("k", "line")
    assert lines.lines == [("WARNING", "line")] * written


def test_keys_beyond_the_bound_share_one(logged, monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller keying by something a client chooses cannot grow the sampler without bound."""
    logger, lines = logged
    monkeypatch.setattr(log_sampling, "MAX_KEYS", 10)
    sampler = LogSampler(logger, interval=60)
    for number in range(100):
        sampler.warning(("origin", number), "Refused origin %s", number)
    assert len(lines.lines) == 11 and len(sampler._windows) == 11
    sampler.flush()
    assert lines.lines[-1] == ("WARNING", "89 more like this in the last 0 s; the last: Refused origin 99")


def test_below_the_logger_s_level_nothing_is_counted(logged) -> None:
    logger, lines = logged
    sampler = LogSampler(logger, interval=60)
    sampler.log(logging.DEBUG, "k", "content")
    assert lines.lines == [] and sampler._windows == {}


def test_refused_websocket_handshakes_are_sampled_in_the_access_log(settings: Any) -> None:
    """A client over its handshake or unauthenticated bound retries at will: its refusals (403, WSREJECT) leave
    one line and then a count, not a line each (the soak's handshake abuser left 244,000 lines in 30 minutes)."""
    from aa_site import access_log

    settings.LOG_SAMPLE_SECONDS = 60
    lines, level, path = Lines(), access_log.logger.level, f"/socket.io/{uuid.uuid4().hex}/"  # a key of its own
    access_log.logger.addHandler(lines)
    access_log.logger.setLevel(logging.INFO)
    try:
        for _ in range(100):
            access_log.log_websocket_step("203.0.113.4:5000", "WSREJECT", path)
        access_log.log_websocket_step("203.0.113.4:5000", "WSCONNECT", path)
    finally:
        access_log.logger.removeHandler(lines)
        access_log.logger.setLevel(level)
    assert lines.lines == [("INFO", f'203.0.113.4:5000 "WSREJECT {path}"'),
                           ("INFO", f'203.0.113.4:5000 "WSCONNECT {path}"')]
