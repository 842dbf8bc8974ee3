"""Forged, stale and misplaced desktop tokens, tried on every entry point that accepts one.

The three entry points: an HTTP view guarded by ``DesktopJWTAuthentication``
(a DRF view defined here and called through ``AsyncRequestFactory``, so no
production URL is added), the Socket.IO CONNECT at ``/socket.io/`` and the ``authenticate``
frame at ``/ws/``, both on the real ``aa_site.asgi.application``. Each attack
must get that entry point's refusal as the contract defines it (401
``{"message"}``; the ``unauthenticated`` event plus a CONNECT_ERROR; an
``unauthenticated`` error frame and close 4401), never a crash or a silent
success. Production mode throughout, so a token signed with the public
development secret is an attack too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from channels.testing import WebsocketCommunicator
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import HttpResponse, JsonResponse
from django.test import AsyncRequestFactory
from rest_framework.permissions import IsAuthenticated

from aa_site.asgi import application
from connector import jwt_secret, tokens
from connector.desktops import plain_ws
from connector.http.api.authentication import URL_TOKEN_MESSAGE, DesktopJWTAuthentication
from connector.http.api.views import AsyncAPIView

PROJECT = "test-project"
CURRENT_SECRET = "current-signing-secret-0123456789-abcdefghijklmnop"
OLD_SECRET = "old-signing-secret-0123456789-abcdefghijklmnopqrs"
# Generous waits for frames that must come; never an assertion on speed.
WAIT = 5.0

# The HS512 attack signs with the 50-byte service secret, shorter than PyJWT recommends for SHA-512;
# irrelevant to a token that must be refused.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture(autouse=True)
def production(production_settings: Any, tmp_path: Path) -> Any:
    """Production mode, one known current secret, no previous secret (no file of the host's can leak in)."""
    production_settings.GCP_PROJECT_ID = PROJECT
    production_settings.JWT_SECRET_KEY = CURRENT_SECRET
    production_settings.JWT_SECRET_NAME = ""
    production_settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent-current")
    production_settings.JWT_PREVIOUS_SECRET_KEY = ""
    production_settings.JWT_PREVIOUS_SECRET_NAME = ""
    production_settings.JWT_PREVIOUS_SECRET_KEY_FILE = str(tmp_path / "absent-previous")
    return production_settings


# --- the three entry points ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the client saw: accepted (and as whom, where the protocol says), or refused with the server's reason."""

    accepted: bool
    detail: str

    def is_accepted_as(self, user: str) -> bool:
        """Accepted, for ``user`` (Socket.IO's CONNECT reply names no user, so there only acceptance counts)."""
        return self.accepted and self.detail in (user, SOCKETIO_CONNECTED)


SOCKETIO_CONNECTED = "connected (Socket.IO names no user)"


class ProtectedView(AsyncAPIView):
    """A stand-in for any protected endpoint, with their policies: says who the token speaks for."""

    http_method_names = ["get"]
    authentication_classes = [DesktopJWTAuthentication]
    permission_classes = [IsAuthenticated]

    async def get(self, request: Any) -> HttpResponse:
        return JsonResponse({"user": request.user.user})


protected_view = ProtectedView.as_view()


async def via_http(token: str | None, *, query: str = "") -> Outcome:
    """GET the guarded view with ``Authorization: <token>`` (none when None) and ``query`` in the URL."""
    headers = {} if token is None else {"Authorization": token}
    response = await protected_view(AsyncRequestFactory().get(f"/protected{query}", headers=headers))
    body = json.loads(response.content)
    if response.status_code == 200:
        return Outcome(True, body["user"])
    assert response.status_code == 401, (response.status_code, body)
    assert response["WWW-Authenticate"] == "Bearer"
    assert set(body) == {"message"} and body["message"], body
    return Outcome(False, body["message"])


async def via_socketio(token: str | None, *, query: str = "") -> Outcome:
    """Engine.IO handshake, then a Socket.IO CONNECT with ``auth.token`` (no auth object when None)."""
    communicator = WebsocketCommunicator(application, f"/socket.io/?EIO=4&transport=websocket{query}")
    try:
        connected, _ = await communicator.connect()
        assert connected
        assert (await communicator.receive_from(WAIT)).startswith("0{")  # Engine.IO OPEN
        await communicator.send_to(text_data="40" + json.dumps({} if token is None else {"token": token}))
        first = await communicator.receive_from(WAIT)
        if first.startswith("40{"):
            return Outcome(True, SOCKETIO_CONNECTED)
        assert first == '42["unauthenticated"]', first
        second = await communicator.receive_from(WAIT)
        assert second.startswith("44{"), second  # CONNECT_ERROR
        return Outcome(False, json.loads(second[2:])["message"])
    finally:
        await communicator.disconnect(timeout=WAIT)


async def via_plain_ws(token: str | None, *, query: str = "") -> Outcome:
    """Open ``/ws/`` and send the ``authenticate`` frame (without a token when None)."""
    communicator = WebsocketCommunicator(application, f"/ws/{query}")
    try:
        connected, _ = await communicator.connect()
        assert connected
        frame: dict[str, Any] = {"type": "authenticate", "id": 1}
        if token is not None:
            frame["token"] = token
        await communicator.send_json_to(frame)
        reply = await communicator.receive_json_from(WAIT)
        if reply["type"] == "authenticated":
            return Outcome(True, reply["user"])
        assert (reply["type"], reply["code"]) == ("error", "unauthenticated"), reply
        closing = await communicator.receive_output(WAIT)
        assert closing == {"type": "websocket.close", "code": plain_ws.CLOSE_UNAUTHENTICATED}, closing
        return Outcome(False, reply["message"])
    finally:
        await communicator.disconnect(timeout=WAIT)


EntryPoint = Callable[..., Awaitable[Outcome]]
ENTRY_POINTS: dict[str, EntryPoint] = {"http": via_http, "socketio": via_socketio, "plain_ws": via_plain_ws}


@pytest.fixture(params=list(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Each entry point in turn."""
    return ENTRY_POINTS[request.param]


# --- forged tokens ---------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete, currently valid claim set; ``overrides`` replace claims."""
    now = int(time.time())
    return {
        "token_type": tokens.AgentAssistToken.token_type,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        tokens.PROJECT_CLAIM: PROJECT,
        tokens.USER_CLAIM: "mallory",
        **overrides,
    }


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as JWS segments are written."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """An HS256 JWS made without PyJWT (which refuses an empty key)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def unsigned(alg: str) -> str:
    """A token whose header says ``alg`` and which carries no signature at all."""
    return f"{b64url(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims()).encode())}."


def tampered() -> str:
    """A genuine token whose user claim is changed, its signature kept."""
    header, payload, signature = tokens.issue_token(user="alice").split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{b64url(json.dumps({**decoded, tokens.USER_CLAIM: 'admin'}).encode())}.{signature}"


def relabelled_none() -> str:
    """A genuine token whose header is rewritten to ``alg: none``, its signature kept."""
    _, payload, signature = tokens.issue_token(user="alice").split(".")
    return f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.{signature}"


def rs256() -> str:
    """Signed with the attacker's own RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims(), key, algorithm="RS256")


def hs512_with_the_right_secret() -> str:
    """The service's own secret, under an algorithm the service does not use."""
    return jwt.encode(claims(), CURRENT_SECRET, algorithm="HS512")


def expired() -> str:
    """Correctly signed, expired two minutes ago."""
    past = int(time.time()) - 120
    return jwt.encode(claims(exp=past, iat=past - 600), CURRENT_SECRET, algorithm="HS256")


# name -> (token builder, what the refusal must say)
ATTACKS: dict[str, tuple[Callable[[], str], str]] = {
    "empty_key": (lambda: hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), b""), "Token is invalid"),
    "alg_none": (lambda: unsigned("none"), "Token is invalid"),
    "alg_NONE_uppercase": (lambda: unsigned("NONE"), "Token is invalid"),
    "alg_none_relabelled_genuine_token": (relabelled_none, "Token is invalid"),
    "hs512_with_the_right_secret": (hs512_with_the_right_secret, "Token is invalid"),
    "rs256_attacker_key": (rs256, "Token is invalid"),
    "development_secret_in_production": (
        lambda: jwt.encode(claims(), jwt_secret.DEVELOPMENT_SECRET, algorithm="HS256"),
        "Token is invalid",
    ),
    "old_secret_no_longer_configured": (
        lambda: jwt.encode(claims(), OLD_SECRET, algorithm="HS256"),
        "Token is invalid",
    ),
    "expired": (expired, "Token is expired"),
    "another_project": (
        lambda: jwt.encode(claims(**{tokens.PROJECT_CLAIM: "other-project"}), CURRENT_SECRET, algorithm="HS256"),
        "Token is for another project",
    ),
    "another_token_type": (
        lambda: jwt.encode(claims(token_type="access"), CURRENT_SECRET, algorithm="HS256"),
        "Token has wrong type",
    ),
    "tampered_payload": (tampered, "Token is invalid"),
    "truncated_signature": (lambda: tokens.issue_token(user="alice")[:-3], "Token is invalid"),
    "garbage": (lambda: "garbage", "Token is invalid"),
    "three_garbage_segments": (lambda: "a.b.c", "Token is invalid"),
    "basic_credentials": (lambda: "Basic dXNlcjpwYXNz", "Token is invalid"),
}


async def test_a_valid_token_is_accepted_bare_and_as_bearer(entry_point: EntryPoint) -> None:
    """The control: each entry point accepts a genuine token, so every refusal below is due to the attack."""
    token = tokens.issue_token(user="alice")
    assert (await entry_point(token)).is_accepted_as("alice")
    assert (await entry_point(f"Bearer {token}")).is_accepted_as("alice")


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_refused(entry_point: EntryPoint, attack: str) -> None:
    """Each forged or stale token gets the entry point's refusal, with the same reason everywhere."""
    build, reason = ATTACKS[attack]
    outcome = await entry_point(build())
    assert outcome == Outcome(False, reason)


# --- claims of the wrong type or out of range, signed with the real secret ---------------------

NOW = int(time.time())
# name -> (claim, value). Each token is otherwise valid and correctly signed, so only this claim is wrong.
BAD_CLAIMS: dict[str, tuple[str, Any]] = {
    **{
        f"{claim}_{name}": (claim, value)
        for claim in ("exp", "iat", "nbf")
        for name, value in {
            "as_string": str(NOW),
            "not_a_number": "soon",
            "10e20": 10**20,
            "negative": -1,
            "infinity": float("inf"),
            "true": True,
            "null": None,
            "list": [NOW],
            "object": {"seconds": NOW},
        }.items()
    },
    **{
        f"{claim}_{name}": (claim, value)
        for claim in (tokens.PROJECT_CLAIM, tokens.USER_CLAIM, "token_type", "jti")
        for name, value in {
            "number": 1,
            "true": True,
            "null": None,
            "list": ["x"],
            "object": {"x": 1},
            "lone_surrogate": "\ud800",
            "over_long": "x" * 1000,  # a 100 KB one would exceed /ws's frame limit before any token check
        }.items()
    },
    f"{tokens.USER_CLAIM}_one_over_the_limit": (tokens.USER_CLAIM, "u" * (tokens.MAX_USER_LENGTH + 1)),
}


@pytest.mark.parametrize("case", list(BAD_CLAIMS))
async def test_claim_of_the_wrong_type_or_range_is_refused(entry_point: EntryPoint, case: str) -> None:
    """A genuine signature over a claim that is not what it should be: the entry point's 401-style refusal
    naming the claim, never a 500, a 1011 close or an acceptance."""
    claim, value = BAD_CLAIMS[case]
    token = jwt.encode(claims(**{claim: value}), CURRENT_SECRET, algorithm="HS256")
    assert await entry_point(token) == Outcome(False, f"Token has an invalid {claim} claim")


@pytest.mark.parametrize(
    "overrides",
    [
        # Seconds from when the test runs (not from import: a long suite reaches it minutes later).
        pytest.param({"exp": 600.5}, id="fractional_exp"),
        pytest.param({"nbf": -10}, id="nbf_in_the_past"),
        pytest.param({tokens.USER_CLAIM: "u" * tokens.MAX_USER_LENGTH}, id="user_at_the_limit"),
        pytest.param({tokens.USER_CLAIM: ""}, id="empty_user"),
    ],
)
async def test_claims_at_the_edge_of_their_range_are_accepted(entry_point: EntryPoint, overrides: dict) -> None:
    """The control for the refusals above: NumericDates may be fractional (RFC 7519), a user may be empty or
    as long as the limit."""
    now = int(time.time())
    overrides = {name: now + value if name in ("exp", "nbf") else value for name, value in overrides.items()}
    token = jwt.encode(claims(**overrides), CURRENT_SECRET, algorithm="HS256")
    assert (await entry_point(token)).is_accepted_as(overrides.get(tokens.USER_CLAIM, "mallory"))


# --- tokens in the URL ------------------------------------------------------------------------


@pytest.mark.parametrize("parameter", ["token", "access_token", "Token", "jwt", "id_token"])
async def test_http_refuses_a_valid_token_in_the_url(parameter: str) -> None:
    """A valid token in the query string is refused outright (401), with or without a valid header."""
    token = tokens.issue_token(user="alice")
    alone = await via_http(None, query=f"?{parameter}={token}")
    with_header = await via_http(token, query=f"?{parameter}={token}")
    assert alone == with_header == Outcome(False, URL_TOKEN_MESSAGE)


async def test_http_ignores_unrelated_query_parameters() -> None:
    """Only token-like parameters are refused: ordinary ones pass with a valid header."""
    assert (await via_http(tokens.issue_token(user="alice"), query="?conversationIntegrationKey=x")).accepted


@pytest.mark.parametrize("entry", ["socketio", "plain_ws"])
async def test_websockets_do_not_read_a_token_from_the_url(entry: str) -> None:
    """A valid token in the WebSocket URL authenticates nothing: without one in the protocol, refused."""
    token = tokens.issue_token(user="alice")
    outcome = await ENTRY_POINTS[entry](None, query=f"{'&' if entry == 'socketio' else '?'}token={token}")
    assert outcome == Outcome(False, tokens.MISSING_TOKEN_MESSAGE)


# --- rotation -----------------------------------------------------------------------------------


async def test_token_signed_with_the_previous_secret_is_accepted_while_configured(
    entry_point: EntryPoint, production: Any
) -> None:
    """During a rotation, a token the old secret signed still opens every entry point."""
    production.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    old_token = jwt.encode(claims(), OLD_SECRET, algorithm="HS256")
    assert (await entry_point(old_token)).is_accepted_as("mallory")


async def test_token_signed_with_a_removed_previous_secret_is_refused(
    entry_point: EntryPoint, production: Any
) -> None:
    """Once the previous secret is removed, the same token is refused everywhere."""
    production.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    old_token = jwt.encode(claims(), OLD_SECRET, algorithm="HS256")
    assert (await entry_point(old_token)).accepted
    production.JWT_PREVIOUS_SECRET_KEY = ""
    assert await entry_point(old_token) == Outcome(False, "Token is invalid")


async def test_the_previous_secret_does_not_lift_the_other_checks(entry_point: EntryPoint, production: Any) -> None:
    """An old-secret token is still refused when expired or for another project."""
    production.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    past = int(time.time()) - 120
    stale = jwt.encode(claims(exp=past, iat=past - 600), OLD_SECRET, algorithm="HS256")
    foreign = jwt.encode(claims(**{tokens.PROJECT_CLAIM: "other-project"}), OLD_SECRET, algorithm="HS256")
    assert await entry_point(stale) == Outcome(False, "Token is expired")
    assert await entry_point(foreign) == Outcome(False, "Token is for another project")


async def test_tokens_issued_during_a_rotation_open_every_entry_point_after_it(
    entry_point: EntryPoint, production: Any
) -> None:
    """New tokens are signed with the current secret, so they survive the previous secret's removal."""
    production.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    token = tokens.issue_token(user="alice")
    production.JWT_PREVIOUS_SECRET_KEY = ""
    assert (await entry_point(token)).is_accepted_as("alice")
