"""Start-up settings bounding the stores in Redis: the history's bytes per conversation and the
/conversation-name entries of the deployment, their defaults and limits."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import REPOSITORY

SETTINGS = ("EVENT_HISTORY_MAX_BYTES", "CONVERSATION_NAME_MAX_ENTRIES")


def read(**variables: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    environment.update(GCP_PROJECT_ID="p-1", **variables)
    script = ("from aa_site import settings as s; print(repr(([getattr(s, n) for n in " + repr(SETTINGS) + "], "
              "[name for name, _ in s.ENVIRONMENT_PROBLEMS])))")
    return subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, env=environment, capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()


def test_defaults_from_an_empty_environment() -> None:
    """16 MiB of events per conversation (above one 10 MB Pub/Sub message); 100,000 integration keys."""
    assert read() == repr(([16 * 2**20, 100_000], []))


def test_values_are_read_and_bad_ones_reported_by_name() -> None:
    assert read(EVENT_HISTORY_MAX_BYTES="1048576", CONVERSATION_NAME_MAX_ENTRIES="0") == repr(
        ([2**20, 100_000], ["CONVERSATION_NAME_MAX_ENTRIES"]))
    assert read(EVENT_HISTORY_MAX_BYTES="1000", CONVERSATION_NAME_MAX_ENTRIES="500") == repr(
        ([16 * 2**20, 500], ["EVENT_HISTORY_MAX_BYTES"]))
