"""``manage.py create_jwt_secret`` against the local fake Secret Manager, through the real client library."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from connector import jwt_secret
from testing import fake_secret_manager
from testing.commands import assert_clean_failure, manage
from testing.fake_secret_manager import FakeSecretManager

PROJECT = "test-project"
SECRET_ID = "aa-jwt-secret"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeSecretManager]:
    """One fake Secret Manager for the module."""
    with fake_secret_manager.serve() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeSecretManager) -> FakeSecretManager:
    """The fake, emptied."""
    return fake_server.reset()


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ADC holding the fake's access token (without it ADC would look beyond loopback)."""
    path = fake_secret_manager.write_credentials(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


@pytest.fixture
def configured(settings: Any, fake: FakeSecretManager, credentials: Path) -> Any:
    """The client pointed at the fake, in project PROJECT and region europe-west1."""
    settings.GCP_PROJECT_ID = PROJECT
    settings.SERVICE_REGION = "europe-west1"
    settings.JWT_SECRET_NAME = ""
    settings.SECRET_MANAGER_API_ENDPOINT = fake.url
    settings.SECRET_MANAGER_TIMEOUT = 5.0
    return settings


def test_creates_a_missing_secret_with_user_managed_replication_and_adds_a_strong_version(
    configured: Any, fake: FakeSecretManager, capsys: pytest.CaptureFixture[str]
) -> None:
    """The secret is created in SERVICE_REGION, gets one 64-character version, and is never printed."""
    call_command("create_jwt_secret")
    (value,) = fake.secrets[(PROJECT, SECRET_ID)]
    assert len(value) == 64 and len(value) >= jwt_secret.MINIMUM_LENGTH
    assert base64.urlsafe_b64decode(value + "==")  # token_urlsafe: URL-safe base64 of 48 random bytes
    replication = fake.created[(PROJECT, SECRET_ID)]["replication"]
    assert replication == {"userManaged": {"replicas": [{"location": "europe-west1"}]}}
    output = capsys.readouterr()
    assert value not in output.out + output.err
    assert f"secrets/{SECRET_ID}/versions/1" in output.out


def test_an_existing_secret_gets_a_new_version_and_keeps_its_replication(
    configured: Any, fake: FakeSecretManager
) -> None:
    """No create call when the secret exists; each run adds a different version (a rotation's first step)."""
    fake.add(PROJECT, "rotating", "old-version-0123456789-0123456789-0123")
    call_command("create_jwt_secret", "--secret", "rotating")
    call_command("create_jwt_secret", "--secret", f"projects/{PROJECT}/secrets/rotating")
    versions = fake.secrets[(PROJECT, "rotating")]
    assert len(versions) == 3 and len(set(versions)) == 3
    assert (PROJECT, "rotating") not in fake.created
    assert not [r for r in fake.received if r.method == "POST" and r.path.endswith("/secrets")]


def test_the_secret_written_is_the_one_the_connector_then_reads(configured: Any, fake: FakeSecretManager) -> None:
    """End to end: JWT_SECRET_NAME pointing at the new secret loads exactly the stored version."""
    call_command("create_jwt_secret", "--secret", "round-trip")
    configured.DEVELOPMENT_MODE = False
    configured.JWT_SECRET_KEY = ""
    configured.JWT_SECRET_KEY_PATH = "/nonexistent/aa-test-secret"
    configured.JWT_SECRET_NAME = "round-trip"
    assert jwt_secret.verification_secrets()[0] == fake.secrets[(PROJECT, "round-trip")][-1]


def test_dry_run_and_print_call_nothing(configured: Any, fake: FakeSecretManager,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run says what it would do; --print prints only a fresh secret; neither reaches Secret Manager."""
    call_command("create_jwt_secret", "--dry-run")
    said = capsys.readouterr().out
    assert f"projects/{PROJECT}/secrets/{SECRET_ID}" in said and "europe-west1" in said
    call_command("create_jwt_secret", "--print")
    printed = capsys.readouterr().out.strip()
    assert len(printed) == 64
    assert fake.received == []


def test_missing_secret_without_a_region_is_refused_before_creating(configured: Any, fake: FakeSecretManager) -> None:
    """Creating needs a replica location; nothing is created without one."""
    configured.SERVICE_REGION = ""
    with pytest.raises(CommandError, match="--region"):
        call_command("create_jwt_secret")
    assert fake.created == {} and fake.secrets == {}


@pytest.mark.parametrize("status", [403, 503])
def test_api_refusal_is_a_command_error_naming_the_secret(configured: Any, fake: FakeSecretManager,
                                                          status: int) -> None:
    """PERMISSION_DENIED or an outage: a CommandError with the code and the secret's name."""
    fake.forced_status = status
    with pytest.raises(CommandError, match=rf"projects/{PROJECT}/secrets/{SECRET_ID}\): {status}"):
        call_command("create_jwt_secret")


def test_bad_secret_name_is_refused(configured: Any) -> None:
    """A name Secret Manager cannot have is refused before any call."""
    with pytest.raises(CommandError, match="is not a secret id"):
        call_command("create_jwt_secret", "--secret", "no spaces/allowed")


def test_as_a_process_it_fails_cleanly_and_never_prints_the_secret(fake: FakeSecretManager, credentials: Path) -> None:
    """manage.py: exit 1 with the reason and no traceback on refusal; on success no secret in the output."""
    environment = {"GCP_PROJECT_ID": PROJECT, "SERVICE_REGION": "us-central1",
                   "SECRET_MANAGER_API_ENDPOINT": fake.url, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
    fake.forced_status = 403
    assert_clean_failure(manage("create_jwt_secret", env=environment), mentions="403")
    fake.forced_status = None
    result = manage("create_jwt_secret", env=environment)
    assert result.returncode == 0, result.stderr
    (value,) = fake.secrets[(PROJECT, SECRET_ID)]
    assert value not in result.stdout + result.stderr
