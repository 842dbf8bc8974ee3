"""``JWT_SECRET_NAME`` / ``JWT_PREVIOUS_SECRET_NAME``: the signing secrets read from Secret Manager.

Everything runs the real ``google-cloud-secret-manager`` client (REST
transport) and real Application Default Credentials against
``testing.fake_secret_manager`` on 127.0.0.1: ``SECRET_MANAGER_API_ENDPOINT``
points the client there and ``GOOGLE_APPLICATION_CREDENTIALS`` names a
credentials file whose access token the fake checks. The last tests start
real server processes the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from django.core.checks import run_checks

from connector import jwt_secret, tokens
from connector.jwt_secret import SecretUnavailable
from testing import clients, fake_secret_manager, processes
from testing.fake_secret_manager import ACCESS_TOKEN, FakeSecretManager

PROJECT = "test-project"
SECRET_ID = "aa-jwt-secret"
SECRET_VALUE = "secret-from-secret-manager-0123456789-abcdefghij"
NEWER_VALUE = "newer-secret-from-secret-manager-0123456789-abcd"
ACCESS_PATH = f"/v1/projects/{PROJECT}/secrets/{SECRET_ID}/versions/latest:access"
FIVE9_TRUST_TOKEN = "five9-trust-token-for-the-secret-manager-test"


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
    """ADC for this test only: the fake's access token. (Without it ADC would look beyond loopback.)"""
    path = fake_secret_manager.write_credentials(tmp_path)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


@pytest.fixture
def configured(production_settings: Any, fake: FakeSecretManager, credentials: Path, tmp_path: Path) -> Any:
    """Production mode with only JWT_SECRET_NAME set, the client pointed at the fake; no files can interfere."""
    production_settings.GCP_PROJECT_ID = PROJECT
    production_settings.JWT_SECRET_KEY = ""
    production_settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent-current")
    production_settings.JWT_PREVIOUS_SECRET_KEY = ""
    production_settings.JWT_PREVIOUS_SECRET_NAME = ""
    production_settings.JWT_PREVIOUS_SECRET_KEY_FILE = str(tmp_path / "absent-previous")
    production_settings.SECRET_MANAGER_API_ENDPOINT = fake.url
    production_settings.SECRET_MANAGER_TIMEOUT = 10.0
    production_settings.JWT_SECRET_NAME = SECRET_ID
    return production_settings


def refusal() -> str:
    """The message loading the secrets fails with."""
    with pytest.raises(SecretUnavailable) as caught:
        jwt_secret.describe_source()
    return str(caught.value)


# --- reading ---------------------------------------------------------------------------


def test_secret_is_read_with_the_service_credentials(configured: Any, fake: FakeSecretManager) -> None:
    """A bare id is read at ``projects/{GCP_PROJECT_ID}/secrets/{id}/versions/latest``, with ADC's bearer token."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    assert jwt_secret.verification_secrets()[0] == SECRET_VALUE
    assert [(r.method, r.path, r.authorization) for r in fake.received] == [
        ("GET", ACCESS_PATH, f"Bearer {ACCESS_TOKEN}")
    ]


def test_source_names_the_secret_version_not_its_value(configured: Any, fake: FakeSecretManager) -> None:
    """``describe_source()`` (what start-up may log) names the setting and the version read."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    source = jwt_secret.describe_source()
    assert source == f"JWT_SECRET_NAME projects/{PROJECT}/secrets/{SECRET_ID}/versions/latest"
    assert SECRET_VALUE not in source


def test_latest_version_is_read(configured: Any, fake: FakeSecretManager) -> None:
    """After a new version is added, a (re)started process signs with it."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    fake.add(PROJECT, SECRET_ID, NEWER_VALUE)
    assert jwt_secret.verification_secrets()[0] == NEWER_VALUE


def test_full_resource_name_with_a_version_is_used_as_given(configured: Any, fake: FakeSecretManager) -> None:
    """``projects/P/secrets/S/versions/N`` reads exactly that version, in that project."""
    fake.add("other-project", "jwt", SECRET_VALUE)
    fake.add("other-project", "jwt", NEWER_VALUE)
    configured.JWT_SECRET_NAME = "projects/other-project/secrets/jwt/versions/1"
    assert jwt_secret.verification_secrets()[0] == SECRET_VALUE
    assert fake.received[0].path == "/v1/projects/other-project/secrets/jwt/versions/1:access"


def test_secret_is_read_once(configured: Any, fake: FakeSecretManager) -> None:
    """Issuing and validating many tokens asks Secret Manager once: the secret is cached, never read per request."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    jwt_secret.describe_source()
    for user in ("a", "b", "c"):
        assert tokens.validate_token(tokens.issue_token(user=user)).user == user
    assert len(fake.accesses()) == 1


def test_tokens_are_signed_with_the_secret_from_secret_manager(configured: Any, fake: FakeSecretManager) -> None:
    """An issued token verifies with the value Secret Manager served, and with nothing else configured."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    token = tokens.issue_token(user="alice")
    assert jwt.decode(token, SECRET_VALUE, algorithms=["HS256"])[tokens.USER_CLAIM] == "alice"


@pytest.mark.parametrize(
    ("value", "reason"),
    [(jwt_secret.DEVELOPMENT_SECRET, "development secret"), ("a" * 48, "too predictable")],
    ids=["development_secret", "a_x48"],
)
def test_a_weak_secret_from_secret_manager_is_refused(
    configured: Any, fake: FakeSecretManager, value: str, reason: str
) -> None:
    """Secret Manager's value passes the same rule as the others: refused naming JWT_SECRET_NAME, never shown."""
    fake.add(PROJECT, SECRET_ID, value)
    message = refusal()
    assert reason in message and "JWT_SECRET_NAME" in message
    assert value not in message


def test_a_transient_outage_is_retried(configured: Any, fake: FakeSecretManager) -> None:
    """Two 503s, then the secret: start-up still succeeds (the client retries within SECRET_MANAGER_TIMEOUT)."""
    configured.SECRET_MANAGER_TIMEOUT = 20.0
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    fake.unavailable_first = 2
    assert jwt_secret.verification_secrets()[0] == SECRET_VALUE
    assert len(fake.accesses()) == 3


def test_mounted_file_wins_without_asking_secret_manager(
    configured: Any, fake: FakeSecretManager, tmp_path: Path
) -> None:
    """The sample's deployment mounts the secret JWT_SECRET_NAME names: the file is used and no API call is made."""
    mounted = tmp_path / "mounted"
    mounted.write_text(NEWER_VALUE)
    configured.JWT_SECRET_KEY_PATH = str(mounted)
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    assert jwt_secret.verification_secrets()[0] == NEWER_VALUE
    assert fake.received == []


# --- refusals ---------------------------------------------------------------------------


def test_missing_secret_stops_start_up_naming_jwt_secret_name(configured: Any, fake: FakeSecretManager) -> None:
    """404: the start-up check (E005) names JWT_SECRET_NAME and the version it could not read."""
    (message,) = [m for m in run_checks() if m.id == "aa_site.E005"]
    assert "JWT_SECRET_NAME" in message.msg
    assert f"projects/{PROJECT}/secrets/{SECRET_ID}/versions/latest" in message.msg
    assert "404" in message.msg


def test_permission_denied_is_refused(configured: Any, fake: FakeSecretManager) -> None:
    """403 (the service account lacks secretAccessor): refused, naming the setting and the status."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    fake.forced_status = 403
    message = refusal()
    assert "JWT_SECRET_NAME" in message and "403" in message


def test_unreachable_secret_manager_is_refused(configured: Any) -> None:
    """Nothing listens at the endpoint: refused within SECRET_MANAGER_TIMEOUT, naming the setting."""
    configured.SECRET_MANAGER_TIMEOUT = 1.0
    configured.SECRET_MANAGER_API_ENDPOINT = f"http://127.0.0.1:{processes.free_port()}"
    message = refusal()
    assert "JWT_SECRET_NAME" in message and "ConnectionError" in message


def test_secret_manager_that_stays_unavailable_is_refused(configured: Any, fake: FakeSecretManager) -> None:
    """503 on every attempt: retried, then refused once SECRET_MANAGER_TIMEOUT has passed."""
    configured.SECRET_MANAGER_TIMEOUT = 1.0
    fake.forced_status = 503
    message = refusal()
    assert "JWT_SECRET_NAME" in message and "ServiceUnavailable" in message


def test_missing_credentials_are_refused(configured: Any, fake: FakeSecretManager, monkeypatch: Any) -> None:
    """No usable ADC: refused before any request, saying credentials are missing."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/aa-backend/adc.json")
    message = refusal()
    assert "JWT_SECRET_NAME" in message and "credentials" in message
    assert fake.received == []


def test_short_secret_from_secret_manager_is_refused(configured: Any, fake: FakeSecretManager) -> None:
    """A weak secret is refused wherever it comes from; the message names the version, not the value."""
    fake.add(PROJECT, SECRET_ID, "short-secret")
    message = refusal()
    assert "shorter" in message and "JWT_SECRET_NAME" in message
    assert "short-secret" not in message.replace(SECRET_ID, "")


# --- the previous secret from Secret Manager ---------------------------------------------------


def test_previous_version_verifies_while_the_latest_signs(configured: Any, fake: FakeSecretManager) -> None:
    """Rotation by versions of one secret: latest signs, JWT_PREVIOUS_SECRET_NAME=.../versions/1 still verifies."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    fake.add(PROJECT, SECRET_ID, NEWER_VALUE)
    configured.JWT_PREVIOUS_SECRET_NAME = f"projects/{PROJECT}/secrets/{SECRET_ID}/versions/1"
    old_token = jwt.encode(
        {"token_type": "agent_assist", "exp": 4102444800, "jti": "j", tokens.PROJECT_CLAIM: PROJECT},
        SECRET_VALUE,
        algorithm="HS256",
    )
    assert tokens.validate_token(old_token).project == PROJECT
    assert jwt.decode(tokens.issue_token(user="alice"), NEWER_VALUE, algorithms=["HS256"])
    assert jwt_secret.describe_previous_source() == f"JWT_PREVIOUS_SECRET_NAME {configured.JWT_PREVIOUS_SECRET_NAME}"


def test_missing_previous_secret_stops_start_up_naming_its_setting(configured: Any, fake: FakeSecretManager) -> None:
    """A configured previous secret that cannot be read is an error too: desktops would be logged out silently."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    configured.JWT_PREVIOUS_SECRET_NAME = "jwt-previous"
    message = refusal()
    assert "JWT_PREVIOUS_SECRET_NAME" in message and "404" in message


# --- real processes --------------------------------------------------------------------------


def connector_settings(fake: FakeSecretManager, credentials: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a production connector that may only get its secret from the fake Secret Manager."""
    return {
        "JWT_SECRET_KEY": "",
        "JWT_SECRET_KEY_PATH": str(tmp_path / "absent-current"),
        "JWT_PREVIOUS_SECRET_KEY_FILE": str(tmp_path / "absent-previous"),
        "JWT_SECRET_NAME": SECRET_ID,
        "SECRET_MANAGER_API_ENDPOINT": fake.url,
        "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
        **extra,
    }


async def test_the_connector_signs_with_the_secret_secret_manager_serves(
    fake: FakeSecretManager, credentials: Path, tmp_path: Path, redis_server: Any
) -> None:
    """A real process reads the secret once at start-up, issues tokens signed with it, and never logs it."""
    fake.add(PROJECT, SECRET_ID, SECRET_VALUE)
    environment = connector_settings(
        fake, credentials, tmp_path, AUTH_OPTION="Five9", FIVE9_TRUST_TOKEN=FIVE9_TRUST_TOKEN, LOG_LEVEL="DEBUG"
    )
    with processes.service_server(role="connector", redis=redis_server, **environment) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=clients.CLIENT_TIMEOUT) as client:
            responses = [
                await client.post("/register", headers={"Authorization": f"Bearer {FIVE9_TRUST_TOKEN}"})
                for _ in range(2)
            ]
        log = server.log()
    for response in responses:
        assert response.status_code == 200, log
        claims = jwt.decode(response.json()["token"], SECRET_VALUE, algorithms=["HS256"])
        assert claims[tokens.PROJECT_CLAIM] == PROJECT
    assert [(r.path, r.authorization) for r in fake.received] == [(ACCESS_PATH, f"Bearer {ACCESS_TOKEN}")]
    assert SECRET_VALUE not in log


def test_the_connector_refuses_to_start_when_the_secret_does_not_exist(
    fake: FakeSecretManager, credentials: Path, tmp_path: Path, redis_server: Any
) -> None:
    """404 at start-up: exit code 2, JWT_SECRET_NAME named on stderr, no traceback."""
    result = processes.service_exit(
        role="connector", redis=redis_server, **connector_settings(fake, credentials, tmp_path)
    )
    assert result.returncode == 2, result.stderr
    assert "cannot start" in result.stderr and "JWT_SECRET_NAME" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert [r.path for r in fake.accesses()] == [ACCESS_PATH]


def test_the_connector_refuses_to_start_when_secret_manager_is_down(
    fake: FakeSecretManager, credentials: Path, tmp_path: Path, redis_server: Any
) -> None:
    """Nothing listening at the endpoint: exit code 2 naming JWT_SECRET_NAME, after SECRET_MANAGER_TIMEOUT."""
    environment = connector_settings(
        fake,
        credentials,
        tmp_path,
        SECRET_MANAGER_API_ENDPOINT=f"http://127.0.0.1:{processes.free_port()}",
        SECRET_MANAGER_TIMEOUT="1",
    )
    result = processes.service_exit(role="connector", redis=redis_server, **environment)
    assert result.returncode == 2, result.stderr
    assert "JWT_SECRET_NAME" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
