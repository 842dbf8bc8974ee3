"""Start-up settings of streaming calls: the WebChannel root's check (E041), the bounds' defaults and limits."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from testing import settings_probe

SETTINGS = ("DIALOGFLOW_WEBCHANNEL_ROOT", "STREAM_MAX_PER_CONNECTION", "STREAM_MAX_PER_PROCESS",
            "STREAM_IDLE_TIMEOUT", "STREAM_MAX_DURATION", "STREAM_MAX_QUEUED_BYTES_PER_STREAM",
            "STREAM_MAX_QUEUED_BYTES", "STREAM_MAX_QUEUED_BYTES_PER_PROCESS")


def webchannel_check_ids() -> set[str]:
    return {message.id for message in run_checks() if message.id in ("aa_site.E040", "aa_site.E041")}


@pytest.mark.parametrize("root", ["", "http://127.0.0.1:8099", "https://webchannel-proxy.internal.example"])
def test_plain_http_roots_pass(settings: Any, root: str) -> None:
    settings.DIALOGFLOW_WEBCHANNEL_ROOT = root
    assert webchannel_check_ids() == set()


@pytest.mark.parametrize("root", ["127.0.0.1:8099", "https://user:pw@example.com", "https://example.com/?a=1"])
def test_malformed_roots_stop_start_up(settings: Any, root: str) -> None:
    """A WebChannel root that is not a plain http(s) URL is error aa_site.E041 (and only that)."""
    settings.DIALOGFLOW_WEBCHANNEL_ROOT = root
    assert webchannel_check_ids() == {"aa_site.E041"}


def read(**variables: str) -> str:
    return settings_probe.read(SETTINGS, **variables)


def test_defaults_from_an_empty_environment() -> None:
    """Google's hosts, 10 streams a connection, 500 a process, 300 s idle, 3600 s in all; 2 MiB of waiting
    requests a stream, 4 MiB a connection, 128 MiB a process."""
    assert read() == repr((["", 10, 500, 300.0, 3600.0, 2 * 2**20, 4 * 2**20, 128 * 2**20], []))


def test_values_are_read_and_bad_ones_reported_by_name() -> None:
    assert read(DIALOGFLOW_WEBCHANNEL_ROOT="http://127.0.0.1:9/", STREAM_MAX_PER_CONNECTION="0",
                STREAM_IDLE_TIMEOUT="2.5", STREAM_MAX_DURATION="soon", STREAM_MAX_QUEUED_BYTES="65536",
                STREAM_MAX_QUEUED_BYTES_PER_STREAM="10", STREAM_MAX_QUEUED_BYTES_PER_PROCESS="lots") == repr(
        (["http://127.0.0.1:9", 10, 500, 2.5, 3600.0, 2 * 2**20, 65536, 128 * 2**20],
         ["STREAM_MAX_PER_CONNECTION", "STREAM_MAX_QUEUED_BYTES_PER_STREAM", "STREAM_MAX_QUEUED_BYTES_PER_PROCESS",
          "STREAM_MAX_DURATION"]))
