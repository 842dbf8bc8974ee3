"""Start-up settings bounding the stores in Redis: the history's bytes per conversation and the
/conversation-name entries of the deployment, their defaults and limits."""

from __future__ import annotations

from testing import settings_probe

SETTINGS = ("EVENT_HISTORY_MAX_BYTES", "CONVERSATION_NAME_MAX_ENTRIES")


def read(**variables: str) -> str:
    return settings_probe.read(SETTINGS, **variables)


def test_defaults_from_an_empty_environment() -> None:
    """16 MiB of events per conversation (above one 10 MB Pub/Sub message); 100,000 integration keys."""
    assert read() == repr(([16 * 2**20, 100_000], []))


def test_values_are_read_and_bad_ones_reported_by_name() -> None:
    assert read(EVENT_HISTORY_MAX_BYTES="1048576", CONVERSATION_NAME_MAX_ENTRIES="0") == repr(
        ([2**20, 100_000], ["CONVERSATION_NAME_MAX_ENTRIES"]))
    assert read(EVENT_HISTORY_MAX_BYTES="1000", CONVERSATION_NAME_MAX_ENTRIES="500") == repr(
        ([16 * 2**20, 500], ["EVENT_HISTORY_MAX_BYTES"]))
