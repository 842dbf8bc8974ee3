"""Start-up settings of the Dialogflow proxy and /conversation-name: the E040 check and the environment defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.checks import run_checks

from testing.processes import REPOSITORY


def dialogflow_check_ids() -> set[str]:
    """Ids of the messages Django's real run_checks() reports for the proxy's settings."""
    return {message.id for message in run_checks() if message.id == "aa_site.E040"}


@pytest.mark.parametrize("root", ["", "https://dialogflow.googleapis.com", "http://127.0.0.1:8099",
                                  "https://dialogflow-proxy.internal.example:8443"])
def test_plain_http_roots_pass(settings: Any, root: str) -> None:
    """No override, or an http(s) root, starts."""
    settings.DIALOGFLOW_API_ROOT = root
    assert dialogflow_check_ids() == set()


@pytest.mark.parametrize("root", ["dialogflow.googleapis.com", "ftp://example.com", "https://",
                                  "https://user:secret@example.com", "https://example.com/?key=1",
                                  "https://example.com/#x", "https://exa mple.com"])
def test_malformed_roots_stop_start_up(settings: Any, root: str) -> None:
    """A root that is not a plain http(s) URL is error aa_site.E040."""
    settings.DIALOGFLOW_API_ROOT = root
    assert dialogflow_check_ids() == {"aa_site.E040"}


def test_defaults_from_an_empty_environment() -> None:
    """Without the variables: Google's endpoints, GCP_PROJECT_ID alone, 5 s / 60 s, 10 MiB, 24 h names."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("DIALOGFLOW_", "CONVERSATION_NAME_"))}
    environment.update(GCP_PROJECT_ID="p-1")
    script = ("from aa_site import settings as s; print(repr((s.DIALOGFLOW_API_ROOT, s.DIALOGFLOW_ALLOWED_PROJECTS, "
              "s.DIALOGFLOW_CONNECT_TIMEOUT, s.DIALOGFLOW_TIMEOUT, s.DIALOGFLOW_MAX_REQUEST_BYTES, "
              "s.CONVERSATION_NAME_TTL_SECONDS, s.ENVIRONMENT_PROBLEMS)))")
    output = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, env=environment, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert output.strip() == repr(("", [], 5.0, 60.0, 10 * 1024 * 1024, 86400, []))


def test_environment_values_are_read_and_bad_ones_reported() -> None:
    """Listed projects and numbers are read; a negative TTL is reported as a problem by name."""
    environment = dict(os.environ, GCP_PROJECT_ID="p-1", DIALOGFLOW_ALLOWED_PROJECTS="p-1, p-2",
                       DIALOGFLOW_API_ROOT="http://127.0.0.1:9/", DIALOGFLOW_TIMEOUT="2.5",
                       CONVERSATION_NAME_TTL_SECONDS="-1")
    script = ("from aa_site import settings as s; print(repr((s.DIALOGFLOW_API_ROOT, s.DIALOGFLOW_ALLOWED_PROJECTS, "
              "s.DIALOGFLOW_TIMEOUT, [name for name, _ in s.ENVIRONMENT_PROBLEMS])))")
    output = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, env=environment, capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert output.strip() == repr(("http://127.0.0.1:9", ["p-1", "p-2"], 2.5, ["CONVERSATION_NAME_TTL_SECONDS"]))
