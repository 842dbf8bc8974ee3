"""Pytest fixtures for in-process tests of the Dialogflow proxy: the fake Dialogflow (and token endpoint) of
``testing.fake_dialogflow`` as every location's endpoint, with a service-account key file for it as the
service's Application Default Credentials. ``tests/conftest.py`` registers them (``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing import fake_dialogflow
from testing.fake_dialogflow import FakeDialogflow

DESKTOP_ORIGIN = "https://desktop.example.com"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeDialogflow]:
    """One fake Dialogflow (and token endpoint) for the module."""
    with fake_dialogflow.serve() as fake:
        yield fake


@pytest.fixture
def dialogflow(fake_server: FakeDialogflow, settings: Any, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> FakeDialogflow:
    """The fake, reset, as every location's endpoint, with a key file for it as the service's ADC."""
    fake_server.reset()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake_server.write_key_file(tmp_path / "key.json")))
    settings.DIALOGFLOW_API_ROOT = fake_server.url
    settings.DIALOGFLOW_ALLOWED_PROJECTS = []
    settings.CORS_ALLOWED_ORIGINS = [DESKTOP_ORIGIN]
    return fake_server
