"""A fake Secret Manager: a real HTTP server on 127.0.0.1 speaking the REST API's calls we make.

``versions/*:access`` (the connector reads its secret), and ``GET`` a secret,
create a secret and ``:addVersion`` (``manage.py create_jwt_secret``).

``connector.jwt_secret`` talks to it through the real
``google-cloud-secret-manager`` client (REST transport) once
``SECRET_MANAGER_API_ENDPOINT`` points here. The client finds its
credentials through Application Default Credentials as in production;
``write_credentials()`` makes the standard ``GOOGLE_APPLICATION_CREDENTIALS``
file for that: authorised-user credentials holding an access token that is
valid for decades, so google-auth never tries to refresh it (no network) and
sends it as ``Authorization: Bearer <ACCESS_TOKEN>``, which the fake checks.

Answers have the shapes of the real API (see the library's
``transports/rest.py``, which parses ``AccessSecretVersionResponse`` from
JSON): ``{"name", "payload": {"data": <base64>}}``, and errors as
``{"error": {"code", "message", "status"}}``. Every request is recorded.
Runs on a thread of its own (``testing/fake_server.py``), so sync tests and
server processes can call it alike.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from testing.fake_server import serve_handler

ACCESS_TOKEN = "ya29.fake-secret-manager-access-token"
PROJECT_NUMBER = "123456789012"
# What the API routes: projects/P/secrets/S/versions/V:access (P an id or a number; V a number or "latest").
ACCESS_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/]+)/versions/(?P<version>[^/:]+):access$"
)
# projects/P/secrets/S (get), projects/P/secrets (create, ?secretId=S), projects/P/secrets/S:addVersion.
SECRET_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+)$")
CREATE_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets$")
ADD_VERSION_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/secrets/(?P<secret>[^/:]+):addVersion$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it."""

    method: str
    path: str
    authorization: str


@dataclass
class FakeSecretManager:
    """State of the running fake; tests set the attributes, the server thread reads them."""

    port: int = 0
    # (project, secret) -> versions, oldest first; "latest" is the last one.
    secrets: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # Answer every access with this HTTP status (and the API's error body) instead of judging.
    forced_status: int | None = None
    # Answer this many requests with 503 first, then judge (a transient outage).
    unavailable_first: int = 0
    received: list[Received] = field(default_factory=list)
    # (project, secret) -> the Secret resource as created (its "replication" as the client sent it).
    created: dict[tuple[str, str], dict] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """What to put in SECRET_MANAGER_API_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> FakeSecretManager:
        """Empty it: no secrets, nothing created or forced, nothing recorded (between tests)."""
        self.secrets.clear()
        self.created.clear()
        self.forced_status = None
        self.unavailable_first = 0
        self.received.clear()
        return self

    def add(self, project: str, secret: str, value: str) -> None:
        """Add ``value`` as the newest version of ``projects/project/secrets/secret``."""
        self.secrets.setdefault((project, secret), []).append(value)

    def accesses(self) -> list[Received]:
        """The ``:access`` requests received."""
        return [request for request in self.received if request.path.endswith(":access")]

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.method, request.path, request.headers.get("Authorization", "")))
        if self.forced_status is not None:
            return _error(self.forced_status, "forced by the test")
        if self.unavailable_first > 0:
            self.unavailable_first -= 1
            return _error(503, "The service is currently unavailable.")
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "Request had invalid authentication credentials.")
        if request.method == "GET" and (match := ACCESS_PATH.match(request.path)):
            return self._access(match["project"], match["secret"], match["version"])
        if request.method == "GET" and (match := SECRET_PATH.match(request.path)):
            return self._get_secret(match["project"], match["secret"])
        if request.method == "POST" and (match := CREATE_PATH.match(request.path)):
            return self._create_secret(match["project"], request.query.get("secretId", ""), await request.json())
        if request.method == "POST" and (match := ADD_VERSION_PATH.match(request.path)):
            return self._add_version(match["project"], match["secret"], await request.json())
        return _error(404, f"Unknown method {request.method} {request.path}.")

    def _exists(self, project: str, secret: str) -> bool:
        return (project, secret) in self.secrets or (project, secret) in self.created

    def _get_secret(self, project: str, secret: str) -> web.Response:
        if not self._exists(project, secret):
            return _error(404, f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] not found.")
        body = self.created.get((project, secret), {"replication": {"automatic": {}}})
        return web.json_response({**body, "name": f"projects/{PROJECT_NUMBER}/secrets/{secret}"})

    def _create_secret(self, project: str, secret: str, body: dict) -> web.Response:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", secret):
            return _error(400, "Invalid secret id.")
        if self._exists(project, secret):
            return _error(409, f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] already exists.")
        if "replication" not in body:
            return _error(400, "Secret.replication is required.")
        self.created[(project, secret)] = body
        self.secrets[(project, secret)] = []
        return web.json_response({**body, "name": f"projects/{PROJECT_NUMBER}/secrets/{secret}"})

    def _add_version(self, project: str, secret: str, body: dict) -> web.Response:
        if not self._exists(project, secret):
            return _error(404, f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] not found.")
        try:
            value = base64.b64decode(body["payload"]["data"], validate=True).decode("utf-8")
        except (KeyError, TypeError, ValueError):
            return _error(400, "SecretPayload.data is required and must be base64.")
        self.add(project, secret, value)
        number = len(self.secrets[(project, secret)])
        return web.json_response({"name": f"projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{number}",
                                  "state": "ENABLED"})

    def _access(self, project: str, secret: str, version: str) -> web.Response:
        versions = self.secrets.get((project, secret))
        if not versions:
            return _error(404, f"Secret [projects/{PROJECT_NUMBER}/secrets/{secret}] not found or has no versions.")
        number = len(versions) if version == "latest" else int(version) if version.isdigit() else 0
        if not 1 <= number <= len(versions):
            missing = f"projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{version}"
            return _error(404, f"Secret Version [{missing}] not found.")
        data = base64.b64encode(versions[number - 1].encode("utf-8")).decode("ascii")
        # The real API names the version by project number and version number, whatever was asked.
        name = f"projects/{PROJECT_NUMBER}/secrets/{secret}/versions/{number}"
        return web.json_response({"name": name, "payload": {"data": data}})


def _error(status: int, message: str) -> web.Response:
    """An error in the shape Google APIs answer over REST."""
    body = {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}
    return web.json_response(body, status=status)


def write_credentials(directory: Path) -> Path:
    """An ADC file (``GOOGLE_APPLICATION_CREDENTIALS``) whose access token the fake accepts, never refreshed."""
    path = directory / "application_default_credentials.json"
    path.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fake-client-id.apps.googleusercontent.com",
                "client_secret": "fake-client-secret",
                "refresh_token": "fake-refresh-token",
                "token": ACCESS_TOKEN,
                "expiry": "2099-01-01T00:00:00Z",
                "quota_project_id": "test-project",
            }
        )
    )
    return path


@contextlib.contextmanager
def serve() -> Iterator[FakeSecretManager]:
    """Run a ``FakeSecretManager`` on a free loopback port until the block ends."""
    fake = FakeSecretManager()
    with serve_handler(fake._handle, name="fake-secret-manager") as running:
        fake.port = running.port
        yield fake
