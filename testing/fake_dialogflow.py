"""A fake Dialogflow REST API and Google OAuth token endpoint: a real HTTP server on 127.0.0.1.

One port serves both. ``/token`` plays Google's token endpoint for a
service-account key made for the test (``write_key_file``): it checks the
signed JWT assertion with the key's public half, records its claims, and
issues ``ya29.fake-<n>`` access tokens. Every other path plays Dialogflow: it
refuses calls without a token it issued (401, as Google does) and otherwise
answers with a JSON echo of what it received, or with ``canned`` when a test
sets one. Everything received is recorded, so tests check what the proxy
really sent.

It runs on a thread of its own (``testing/fake_server.py``), so in-process
tests, server processes and benchmarks can all call it, and a deliberately
slow answer never blocks the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testing.fake_server import serve_app, trickle

TOKEN_PATH = "/token"
CLIENT_EMAIL = "aa-backend-test@test-project.iam.gserviceaccount.com"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"  # exactly what Google sends
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth signs every service-account assertion for Google's token endpoint, wherever token_uri points.
ASSERTION_AUDIENCE = "https://oauth2.googleapis.com/token"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass(frozen=True)
class Received:
    """One Dialogflow call as the fake saw it."""

    method: str
    path: str
    raw_query: str  # as sent, still percent-encoded
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass(frozen=True)
class Canned:
    """A fixed answer to every Dialogflow call (after the token check)."""

    status: int
    body: bytes
    content_type: str | None = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def google_error(status: int, message: str = "fake error") -> Canned:
    """An error answer in the shape Google APIs use."""
    body = {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}
    return Canned(status=status, body=json.dumps(body, indent=2).encode())


@dataclass
class FakeDialogflow:
    """State of the running fake; tests set the attributes, the server thread reads them."""

    port: int = 0
    private_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    # Dialogflow side
    delay_seconds: float = 0.0  # before each answer
    hold_until_in_flight: int = 0  # hold every answer until this many calls are in flight (at most 30 s)
    canned: Canned | None = None
    trickle_seconds: float = 0.0  # send headers at once, then the body a byte at a time over this long
    gzip_answers: bool = False  # gzip the answer when the caller accepts gzip
    received: list[Received] = field(default_factory=list)
    sent_bodies: list[bytes] = field(default_factory=list)  # exactly the bytes put on the wire
    in_flight: int = 0
    max_in_flight: int = 0
    # Token endpoint side
    token_expires_in: int = 3600
    token_status: int = 200
    token_gate: threading.Event | None = None  # when set, /token waits for it before answering
    token_requests: int = 0  # started
    token_answers: int = 0  # answered
    token_claims: list[dict[str, Any]] = field(default_factory=list)
    issued_tokens: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL for ``DIALOGFLOW_API_ROOT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_uri(self) -> str:
        """The token endpoint written into key files."""
        return f"{self.url}{TOKEN_PATH}"

    def reset(self) -> None:
        """Echo again, answer at once, issue hour-long tokens, forget everything received."""
        self.delay_seconds = 0.0
        self.hold_until_in_flight = 0
        self.canned = None
        self.trickle_seconds = 0.0
        self.gzip_answers = False
        self.received.clear()
        self.sent_bodies.clear()
        self.in_flight = self.max_in_flight = 0
        self.token_expires_in = 3600
        self.token_status = 200
        self.token_gate = None
        self.token_requests = self.token_answers = 0
        self.token_claims.clear()
        self.issued_tokens.clear()

    def write_key_file(self, path: Path, *, project: str = "test-project") -> Path:
        """Write a service-account key file whose token_uri is this fake; return ``path``."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        key = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": "fake-key-1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": self.token_uri,
        }
        path.write_text(json.dumps(key))
        return path

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = parse_qs((await request.read()).decode("ascii"))
        if self.token_gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.token_gate.wait, 30)
        self.token_answers += 1
        try:
            if form.get("grant_type") != [JWT_BEARER_GRANT]:
                raise jwt.InvalidTokenError("not a JWT bearer grant")
            claims = jwt.decode(form["assertion"][0], self.private_key.public_key(), algorithms=["RS256"],
                                audience=ASSERTION_AUDIENCE)
        except (KeyError, jwt.InvalidTokenError) as error:
            return web.json_response({"error": "invalid_grant", "error_description": str(error)}, status=400)
        self.token_claims.append(claims)
        if self.token_status != 200:
            return web.json_response({"error": "invalid_grant", "error_description": "refused by the test"},
                                     status=self.token_status)
        token = f"ya29.fake-{len(self.issued_tokens) + 1}"
        self.issued_tokens.append(token)
        return web.json_response({"access_token": token, "expires_in": self.token_expires_in, "token_type": "Bearer"})

    async def _dialogflow(self, request: web.Request) -> web.Response:
        received = Received(
            method=request.method,
            path=request.path,
            raw_query=request.rel_url.raw_query_string,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.read(),
        )
        self.received.append(received)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            for _ in range(3000):
                if self.in_flight >= self.hold_until_in_flight or self.max_in_flight >= self.hold_until_in_flight:
                    break
                await asyncio.sleep(0.01)
            answer = self._answer(received)
        finally:
            self.in_flight -= 1
        body = answer.body
        headers = dict(answer.headers)
        if answer.content_type is not None:
            headers["Content-Type"] = answer.content_type
        if self.gzip_answers and "gzip" in received.headers.get("accept-encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self.sent_bodies.append(body)
        if self.trickle_seconds:
            return await trickle(request, body, seconds=self.trickle_seconds, status=answer.status, headers=headers)
        return web.Response(status=answer.status, body=body, headers=headers)

    def _answer(self, received: Received) -> Canned:
        scheme, _, token = received.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.issued_tokens:
            return google_error(401, "Request had invalid authentication credentials.")
        if self.canned is not None:
            return self.canned
        echo = {
            "method": received.method,
            "path": received.path,
            "query": received.raw_query,
            "bodySha256": hashlib.sha256(received.body).hexdigest(),
        }
        return Canned(status=200, body=json.dumps(echo).encode())


@contextlib.contextmanager
def serve() -> Iterator[FakeDialogflow]:
    """Run a ``FakeDialogflow`` on a free loopback port until the block ends."""
    fake = FakeDialogflow()
    # Large bodies are part of the tests: lift aiohttp's 1 MiB request limit.
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("POST", TOKEN_PATH, fake._token)
    app.router.add_route("*", "/{tail:.*}", fake._dialogflow)
    with serve_app(app, name="fake-dialogflow") as running:
        fake.port = running.port
        try:
            yield fake
        finally:
            if fake.token_gate is not None:
                fake.token_gate.set()
