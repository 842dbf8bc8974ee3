"""A fake identity provider: a real HTTP server on 127.0.0.1 that plays Salesforce, Genesys Cloud and Twilio.

It serves, on one port, the endpoints the providers in ``auth_providers/``
call (userinfo, users/me, the Flex ``/verify`` function, the Twilio Accounts
API), judges credentials the way the real services do (only ``ACCESS_TOKEN``,
and for the Accounts API only ``ACCOUNT_SID``/``AUTH_TOKEN``, are valid), and
records every request so tests can check what the provider actually sent.
``behaviour`` makes it misbehave: garbage, slowness, any status, redirects.

It runs on a thread of its own (``testing/fake_server.py``), so async tests,
sync tests and server processes can all call it, and a deliberately slow
answer never blocks the test's own loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from aiohttp import web

from testing.fake_server import serve_handler, trickle
from testing.processes import free_port

ORGANIZATION_ID = "00D5g000004ABCDEA2"  # 18-character form, as userinfo returns it
OTHER_ORGANIZATION_ID = "00D5g000009WXYZEA1"
ACCESS_TOKEN = "00D5g000004ABCD!AQ8AQH.fake+provider/access=token"  # needs escaping in a query
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
OTHER_ACCOUNT_SID = "ACfedcba9876543210fedcba9876543210"
AUTH_TOKEN = "fake-twilio-auth-token-0123456789abcdef"
USER_EMAIL = "agent@example.com"
SALESFORCE_USER_ID = "0055g00000ABCDEAAA"
GENESYS_USER_ID = "6b2bba64-8b7d-4b62-9a2e-3d1d7c9a0f11"

USERINFO_PATH = "/services/oauth2/userinfo"
USERS_ME_PATH = "/api/v2/users/me"
VERIFY_PATH = "/verify"
ACCOUNT_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}.json"


class Behaviour(enum.Enum):
    """How the fake answers, whatever the credentials."""

    JUDGE = "judge"  # like the real service: 200 for valid credentials, 401/403/404 otherwise
    NOT_JSON = "not-json"  # 200 with an HTML maintenance page
    NOT_AN_OBJECT = "not-an-object"  # 200 with the JSON array []
    DEEPLY_NESTED = "deeply-nested"  # 200 with JSON nested deeper than the decoder's recursion limit
    EMPTY_OBJECT = "empty-object"  # 200 with {}
    SLOW = "slow"  # judge, but only after ``slow_seconds``
    TRICKLE = "trickle"  # 200 at once, then a space every 0.1 s for ``slow_seconds``, then the judged JSON
    STATUS = "status"  # ``status`` with a JSON error body
    REDIRECT = "redirect"  # 302 to another path of this server
    PLAIN_OK = "plain-ok"  # 200 with the text "OK"


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    peer_port: int

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    def basic_auth(self) -> tuple[str, str] | None:
        """The (user, password) of a Basic ``Authorization`` header."""
        scheme, _, encoded = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        return user, password


@dataclass
class FakeProvider:
    """State of the running fake; tests set the attributes, the server thread reads them."""

    port: int = 0
    behaviour: Behaviour = Behaviour.JUDGE
    status: int = 500
    slow_seconds: float = 5.0
    organization_id: str = ORGANIZATION_ID  # what userinfo says the user belongs to
    returned_sid: str | None = None  # what the Accounts API says the sid is (default: the one asked for)
    user_email: str | None = USER_EMAIL  # None: userinfo and users/me answer without an email
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL to put in SALESFORCE_URL, GENESYS_CLOUD_API_URL, TWILIO_FLEX_URL or TWILIO_API_URL."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Back to judging like the real services, with nothing recorded."""
        self.behaviour = Behaviour.JUDGE
        self.status = 500
        self.slow_seconds = 5.0
        self.organization_id = ORGANIZATION_ID
        self.returned_sid = None
        self.user_email = USER_EMAIL
        self.received.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(
            Received(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=await request.read(),
                peer_port=peer[1] if peer else 0,
            )
        )
        received = self.received[-1]
        behaviour = self.behaviour
        if behaviour is Behaviour.NOT_JSON:
            return web.Response(text="<html><body>Down for maintenance</body></html>", content_type="text/html")
        if behaviour is Behaviour.NOT_AN_OBJECT:
            return web.json_response([])
        if behaviour is Behaviour.DEEPLY_NESTED:
            return web.Response(text="[" * 100_000, content_type="application/json")
        if behaviour is Behaviour.EMPTY_OBJECT:
            return web.json_response({})
        if behaviour is Behaviour.PLAIN_OK:
            return web.Response(text="OK", content_type="text/plain")
        if behaviour is Behaviour.STATUS:
            return web.json_response({"error": "fake", "status": self.status}, status=self.status)
        if behaviour is Behaviour.REDIRECT:
            raise web.HTTPFound(location=f"{self.url}/elsewhere")
        if behaviour is Behaviour.SLOW:
            await asyncio.sleep(self.slow_seconds)
        if behaviour is Behaviour.TRICKLE:
            judged = self._judge(received)
            assert isinstance(judged.body, bytes)
            return await trickle(request, judged.body, seconds=self.slow_seconds,
                                 headers={"Content-Type": "application/json"})
        return self._judge(received)

    def _judge(self, received: Received) -> web.Response:
        if received.path == USERINFO_PATH and received.method == "GET":
            return self._userinfo(received)
        if received.path == USERS_ME_PATH and received.method == "GET":
            if received.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
                return web.json_response({"code": "bad.credentials", "status": 401}, status=401)
            return web.json_response({"id": GENESYS_USER_ID, "name": "Agent", **self._email("email")})
        if received.path == VERIFY_PATH and received.method == "POST":
            try:
                token = received.json().get("Token")
            except (ValueError, AttributeError):
                token = None
            if token != ACCESS_TOKEN:
                return web.json_response({"valid": False}, status=403)
            return web.json_response({"valid": True, "identity": USER_EMAIL, "worker_sid": "WK0123"})
        if received.path.startswith("/2010-04-01/Accounts/") and received.method == "GET":
            return self._account(received)
        return web.json_response({"error": "not found"}, status=404)

    def _userinfo(self, received: Received) -> web.Response:
        authorization = received.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization else received.query.get("access_token")
        if not token:
            return web.json_response([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                                     status=401)
        if token != ACCESS_TOKEN:
            return web.Response(text="Bad_OAuth_Token", status=403)
        return web.json_response(
            {
                "sub": f"https://login.salesforce.com/id/{self.organization_id}/{SALESFORCE_USER_ID}",
                "user_id": SALESFORCE_USER_ID,
                "organization_id": self.organization_id,
                **self._email("preferred_username", "email"),
            }
        )

    def _email(self, *keys: str) -> dict[str, str]:
        return {key: self.user_email for key in keys} if self.user_email is not None else {}

    def _account(self, received: Received) -> web.Response:
        if received.basic_auth() != (ACCOUNT_SID, AUTH_TOKEN):
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        if received.path != ACCOUNT_PATH:
            return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)
        return web.json_response(
            {"sid": self.returned_sid or ACCOUNT_SID, "friendly_name": "Contact centre", "status": "active"}
        )


@contextlib.contextmanager
def serve() -> Iterator[FakeProvider]:
    """Run a ``FakeProvider`` on a free loopback port until the block ends."""
    fake = FakeProvider()
    with serve_handler(fake._handle, name="fake-provider") as running:
        fake.port = running.port
        yield fake


def secret_forms(*secrets: str) -> set[str]:
    """Each secret as it could show up in a log: raw, query-escaped both ways, and inside Basic credentials."""
    forms = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe=""), quote_plus(secret)}
    forms.add(base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode())
    return forms


def refused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"
