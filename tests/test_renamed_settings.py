"""Settings with two names: ``GENESYS_CLOUD_REGION`` (the sample's ``GENESYS_CLOUD_ENVIRONMENT``) and
``JWT_SECRET_KEY_PATH`` (earlier ``JWT_SECRET_KEY_FILE``).

Each is read from a real environment by a fresh interpreter (``testing.settings_probe``) and used by a real
server process: the connector signs with the secret file at the path either name gives, and the Genesys Cloud
provider calls ``https://api.<region>`` for the region either name gives, reaching the fake provider through an
HTTPS proxy that plays that host (``testing.intercepting_proxy``), so nothing leaves the machine.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from testing import fake_providers, intercepting_proxy, processes, settings_probe
from testing.fake_providers import ACCESS_TOKEN, USER_EMAIL, USERS_ME_PATH, FakeProvider
from testing.intercepting_proxy import InterceptingProxy
from testing.tls_files import TlsFiles, make_tls_files

GENESYS_NAMES = ("GENESYS_CLOUD_REGION", "GENESYS_CLOUD_ENVIRONMENT")
JWT_PATH_NAMES = ("JWT_SECRET_KEY_PATH", "JWT_SECRET_KEY_FILE")
READ = ("GENESYS_CLOUD_REGION", "GENESYS_CLOUD_API_URL", "JWT_SECRET_KEY_PATH", "ENVIRONMENT_NOTICES")
# Random (secrets.token_urlsafe), so they pass the start-up checks' rules.
FILE_SECRET = "file-secret-Qm3x8Yt0W1cXo9LkP2vB7nZ4rA6sD5fG8hJ1kL0q"
OTHER_FILE_SECRET = "other-file-Zr5T2wq9Lx0Nb4Mv7Kc1Jh8Gf3Ds6Ap9Ou2Iy5Et"
FIVE9_TRUST_TOKEN = "five9-trust-token-renamed-settings-0123456789"
REGION = "usw2.pure.cloud"


def read(**variables: str) -> dict:
    """The settings ``READ`` names, as a fresh interpreter reads them from ``variables`` (neither name of either
    setting inherited), and the variables it reports as bad."""
    values, problems = ast.literal_eval(settings_probe.read(READ, unset=GENESYS_NAMES + JWT_PATH_NAMES, **variables))
    return {**dict(zip(READ, values)), "problems": problems}


# --- Read from the environment ---------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["mypurecloud.com", REGION])
@pytest.mark.parametrize("name", GENESYS_NAMES)
def test_a_genesys_region_is_read_under_either_name(name, region):
    """A region domain under the new or the sample's name gives the same region and API URL, and no notice."""
    read_back = read(**{name: region})
    assert (read_back["GENESYS_CLOUD_REGION"], read_back["GENESYS_CLOUD_API_URL"]) == (region, f"https://api.{region}")
    assert (read_back["ENVIRONMENT_NOTICES"], read_back["problems"]) == ([], [])


@pytest.mark.parametrize("name", JWT_PATH_NAMES)
def test_the_secret_path_is_read_under_either_name(name):
    read_back = read(**{name: "/var/run/secrets/aa/signing-key"})
    assert read_back["JWT_SECRET_KEY_PATH"] == "/var/run/secrets/aa/signing-key"
    assert (read_back["ENVIRONMENT_NOTICES"], read_back["problems"]) == ([], [])


def test_without_either_name_the_samples_defaults_hold():
    read_back = read()
    assert (read_back["GENESYS_CLOUD_REGION"], read_back["JWT_SECRET_KEY_PATH"]) == (
        "mypurecloud.com", "/secret/jwt_secret_key")
    assert read_back["GENESYS_CLOUD_API_URL"] == "https://api.mypurecloud.com"


def test_both_names_with_different_values_the_newer_wins_with_a_notice_for_each_setting():
    """The new name wins; one notice per setting names both variables and both values."""
    read_back = read(GENESYS_CLOUD_REGION=REGION, GENESYS_CLOUD_ENVIRONMENT="mypurecloud.de",
                     JWT_SECRET_KEY_PATH="/secret/new", JWT_SECRET_KEY_FILE="/secret/old")
    assert (read_back["GENESYS_CLOUD_REGION"], read_back["GENESYS_CLOUD_API_URL"]) == (REGION, f"https://api.{REGION}")
    assert read_back["JWT_SECRET_KEY_PATH"] == "/secret/new"
    genesys, path = read_back["ENVIRONMENT_NOTICES"]
    for notice, words in ((genesys, ("GENESYS_CLOUD_REGION", "GENESYS_CLOUD_ENVIRONMENT", REGION, "mypurecloud.de")),
                          (path, ("JWT_SECRET_KEY_PATH", "JWT_SECRET_KEY_FILE", "/secret/new", "/secret/old"))):
        assert all(word in notice for word in words), notice
        assert notice.index("using") < notice.index(words[2]) < notice.index("ignoring") < notice.index(words[3])
    assert read_back["problems"] == []


def test_both_names_with_one_value_say_nothing():
    read_back = read(GENESYS_CLOUD_REGION=REGION, GENESYS_CLOUD_ENVIRONMENT=REGION,
                     JWT_SECRET_KEY_PATH="/secret/k", JWT_SECRET_KEY_FILE="/secret/k")
    assert (read_back["GENESYS_CLOUD_REGION"], read_back["JWT_SECRET_KEY_PATH"]) == (REGION, "/secret/k")
    assert read_back["ENVIRONMENT_NOTICES"] == []


def test_an_empty_name_leaves_the_other_in_force():
    """A deploy script that passes an unset shell variable under the new name does not hide the old one."""
    read_back = read(GENESYS_CLOUD_REGION="", GENESYS_CLOUD_ENVIRONMENT="mypurecloud.de",
                     JWT_SECRET_KEY_PATH=" ", JWT_SECRET_KEY_FILE="/secret/old")
    assert (read_back["GENESYS_CLOUD_REGION"], read_back["JWT_SECRET_KEY_PATH"]) == ("mypurecloud.de", "/secret/old")
    assert read_back["ENVIRONMENT_NOTICES"] == []


# --- The signing secret's file, in a real connector -------------------------------------------------------------


def register_with_five9(server: processes.Server) -> str:
    response = httpx.post(f"{server.http_url}/register", headers={"Authorization": f"Bearer {FIVE9_TRUST_TOKEN}"},
                          json={"gcp_agent_assist_user": "agent"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["token"]


def signed_with(token: str, secret: str) -> bool:
    try:
        jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.InvalidSignatureError:
        return False
    return True


def write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("name", JWT_PATH_NAMES)
def test_a_connector_signs_with_the_secret_file_at_the_path_either_name_gives(redis_server, tmp_path, name):
    """No JWT_SECRET_KEY: the file at a custom path is the signing secret, and start-up says where it came from."""
    path = write_secret(tmp_path / "mounted" / "signing-key", FILE_SECRET)
    with processes.service_server(role="connector", redis=redis_server, JWT_SECRET_KEY="", AUTH_OPTION="Five9",
                                 FIVE9_TRUST_TOKEN=FIVE9_TRUST_TOKEN, **{name: str(path)}) as server:
        token = register_with_five9(server)
        log = server.log()
    assert signed_with(token, FILE_SECRET) and not signed_with(token, processes.TEST_JWT_SECRET)
    assert f"JWT signing secret from JWT_SECRET_KEY_PATH {path}" in log
    assert "aa_site.W002" not in log


def test_with_both_secret_path_names_the_newer_wins_and_start_up_warns(redis_server, tmp_path):
    new = write_secret(tmp_path / "new" / "signing-key", FILE_SECRET)
    old = write_secret(tmp_path / "old" / "signing-key", OTHER_FILE_SECRET)
    with processes.service_server(role="connector", redis=redis_server, JWT_SECRET_KEY="", AUTH_OPTION="Five9",
                                 FIVE9_TRUST_TOKEN=FIVE9_TRUST_TOKEN, JWT_SECRET_KEY_PATH=str(new),
                                 JWT_SECRET_KEY_FILE=str(old)) as server:
        token = register_with_five9(server)
        log = server.log()
    assert signed_with(token, FILE_SECRET) and not signed_with(token, OTHER_FILE_SECRET)
    (warning,) = [line for line in log.splitlines() if "aa_site.W002" in line]
    assert "JWT_SECRET_KEY_PATH" in warning and "JWT_SECRET_KEY_FILE" in warning and str(old) in warning
    assert FILE_SECRET not in log and OTHER_FILE_SECRET not in log


# --- The Genesys Cloud provider, in a real connector --------------------------------------------------------


@pytest.fixture(scope="module")
def genesys_tls(tmp_path_factory) -> TlsFiles:
    """A CA, and a certificate for the API hosts of two Genesys Cloud regions."""
    return make_tls_files(tmp_path_factory.mktemp("genesys-tls"), label="genesys",
                          dns_names=(f"api.{REGION}", "api.mypurecloud.com"))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    """The fake Genesys Cloud (with the other providers), for the module; the proxy fixture resets it."""
    with fake_providers.serve() as running:
        yield running


@pytest.fixture
def proxy(fake: FakeProvider, genesys_tls: TlsFiles) -> Iterator[InterceptingProxy]:
    """A fresh proxy in front of the fake, which forgets earlier tests' requests."""
    fake.reset()
    with intercepting_proxy.serve(fake.port, genesys_tls) as running:
        yield running


def genesys_connector(redis_server, proxy: InterceptingProxy, tls: TlsFiles, **names: str):
    """A connector with AUTH_OPTION=GenesysCloud whose HTTPS goes through ``proxy``, trusting only its CA."""
    return processes.service_server(role="connector", redis=redis_server, AUTH_OPTION="GenesysCloud",
                                   HTTPS_PROXY=proxy.url, SSL_CERT_FILE=str(tls.ca_certificate), **names)


def register_with_genesys(server: processes.Server) -> httpx.Response:
    return httpx.post(f"{server.http_url}/register", headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}, timeout=30)


@pytest.mark.parametrize("name", GENESYS_NAMES)
def test_the_genesys_provider_asks_the_region_either_name_gives(redis_server, fake, proxy, genesys_tls, name):
    """/register asks https://api.usw2.pure.cloud/api/v2/users/me with the desktop's token, and issues a token
    for the user Genesys Cloud names."""
    with genesys_connector(redis_server, proxy, genesys_tls, **{name: REGION}) as server:
        response = register_with_genesys(server)
        log = server.log()
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["token"], processes.TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["gcp_agent_assist_user"] == USER_EMAIL
    assert proxy.connected == [f"api.{REGION}:443"]
    (request,) = fake.received
    assert (request.method, request.path, request.headers["host"]) == ("GET", USERS_ME_PATH, f"api.{REGION}")
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert "aa_site.W002" not in log


def test_with_both_genesys_names_the_provider_asks_genesys_cloud_region(redis_server, fake, proxy, genesys_tls):
    """GENESYS_CLOUD_REGION wins over a different GENESYS_CLOUD_ENVIRONMENT, and start-up warns naming both."""
    with genesys_connector(redis_server, proxy, genesys_tls, GENESYS_CLOUD_REGION=REGION,
                           GENESYS_CLOUD_ENVIRONMENT="mypurecloud.com") as server:
        response = register_with_genesys(server)
        log = server.log()
    assert response.status_code == 200, response.text
    assert proxy.connected == [f"api.{REGION}:443"]
    (warning,) = [line for line in log.splitlines() if "aa_site.W002" in line]
    assert "GENESYS_CLOUD_REGION" in warning and "GENESYS_CLOUD_ENVIRONMENT" in warning
    assert "mypurecloud.com" in warning


@pytest.mark.parametrize(("name", "value"), [("GENESYS_CLOUD_REGION", "us_east_1"),
                                             ("GENESYS_CLOUD_ENVIRONMENT", "us-east-1"),
                                             ("GENESYS_CLOUD_REGION", "api.mypurecloud.com")])
def test_a_genesys_region_that_is_no_region_domain_stops_start_up(redis_server, name, value):
    """The SDKs' region names, or a host of the region, would make every /register fail: start-up names the
    setting and the form it takes instead."""
    result = processes.service_exit(role="connector", redis=redis_server, AUTH_OPTION="GenesysCloud", **{name: value})
    assert result.returncode == 2, result.stderr
    assert "GENESYS_CLOUD_REGION" in result.stderr and "mypurecloud.com" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
