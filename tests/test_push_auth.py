"""Authenticated push: the OIDC token Pub/Sub attaches, checked against a local fake of Google's certificates.

Tokens are signed with a locally generated RSA key whose certificate the fake
endpoint (``testing/fake_google_certs.py``) publishes in Google's shape. Pushes
go through the real ASGI application and the real Redis channel layer, as in
``test_interceptor_views.py``; ``test_push_auth_process.py`` runs a real interceptor process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from testing import clients, fake_google_certs, processes
from testing.fake_google_certs import SERVICE_ACCOUNT, FakeGoogleCerts, pubsub_claims, signing_key, unsigned_token
from testing.pubsub_fixtures import BAD_FIXTURES, fixture_bytes
from testing.signed_pushes import (
    ATTACKER_KEY,
    EVENT,
    EVENT_TIMEOUT,
    GOOGLE_KEY,
    RESPONSE_TIMEOUT,
    bearer,
    message_body,
    new_conversation,
    subscribe,
)

HOST = "interceptor-abc123-ew.a.run.app"
# What Pub/Sub signs for by default: the push endpoint as configured, https behind Cloud Run.
ENDPOINT_URL = f"https://{HOST}/{EVENT}"


@pytest.fixture
def google() -> Iterator[FakeGoogleCerts]:
    """The fake certificates endpoint, publishing ``GOOGLE_KEY``."""
    with fake_google_certs.serve(GOOGLE_KEY) as fake:
        yield fake


@pytest.fixture
def push_auth_on(settings: Any, google: FakeGoogleCerts) -> FakeGoogleCerts:
    """Push authentication on for ``SERVICE_ACCOUNT``, audience from the request, certificates from the fake."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    settings.PUSH_AUTH_AUDIENCE = ""
    settings.PUSH_AUTH_CERTS_URL = google.url
    return google


def valid_token(**changes: Any) -> str:
    """A token as Pub/Sub signs it for ``ENDPOINT_URL``, with ``changes`` to its claims."""
    return GOOGLE_KEY.sign(pubsub_claims(**{"audience": ENDPOINT_URL, **changes}))


async def post(
    path: str = f"/{EVENT}",
    body: bytes | None = None,
    *,
    authorization: str | None = None,
    host: str = HOST,
    forwarded_proto: str | None = "https",
) -> dict[str, Any]:
    """One push to the real ``application`` as Cloud Run hands it over: plain http, X-Forwarded-Proto https."""
    body = message_body(new_conversation()) if body is None else body
    headers = [
        (b"host", host.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if forwarded_proto is not None:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    communicator = HttpCommunicator(application, "POST", path, body=body, headers=headers)
    return await communicator.get_response(timeout=RESPONSE_TIMEOUT)


def interceptor_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """What the interceptor logged at ``level`` (Django's own ``django.request`` line for any 4xx/5xx aside)."""
    return [r.getMessage() for r in caplog.records if r.name == "interceptor.push" and r.levelno == level]


def header(response: dict[str, Any], name: str) -> str | None:
    """Response header ``name`` (case-insensitive), or ``None``."""
    for key, value in response["headers"]:
        if key.decode("latin-1").lower() == name.lower():
            return value.decode("latin-1")
    return None


def assert_refused(response: dict[str, Any], status: int, caplog: pytest.LogCaptureFixture, *, token: str = "") -> str:
    """``status`` with ``{"message"}``, and one WARNING naming the endpoint and reason but never the token."""
    assert response["status"] == status, response
    message = json.loads(response["body"])["message"]
    assert isinstance(message, str) and message
    lines = interceptor_lines(caplog)
    assert len(lines) == 1, lines
    assert EVENT in lines[0] and message in lines[0] and str(status) in lines[0]
    if token:
        # Every segment long enough to be recognisable (short ones like "a" occur in any sentence).
        for part in [token, *token.split(".")]:
            if len(part) >= 8:
                assert part not in lines[0] and part not in message
    return message


# --- accepted pushes -------------------------------------------------------------------


async def test_valid_token_is_accepted_and_the_event_delivered(push_auth_on: FakeGoogleCerts, redis_events):
    """A token Pub/Sub would send: 204, and the event reaches the conversation's group."""
    conversation = new_conversation()
    channel = await subscribe(redis_events, conversation)
    response = await post(body=message_body(conversation, "valid-1"), authorization=bearer(valid_token()))
    assert response["status"] == 204, response
    received = await channel.receive(EVENT_TIMEOUT)
    assert received["payload"]["message_id"] == "valid-1"


@pytest.mark.parametrize("issuer", ["accounts.google.com", "https://accounts.google.com"])
async def test_both_google_issuer_spellings_are_accepted(push_auth_on: FakeGoogleCerts, issuer: str):
    """Google writes ``iss`` with and without the scheme; both are Google."""
    response = await post(authorization=bearer(valid_token(issuer=issuer)))
    assert response["status"] == 204, response


async def test_bearer_scheme_and_email_are_case_insensitive(push_auth_on: FakeGoogleCerts):
    """``bearer`` in lower case and the account in another case still match."""
    response = await post(authorization=f"bearer {valid_token(email=SERVICE_ACCOUNT.upper())}")
    assert response["status"] == 204, response


async def test_audience_follows_x_forwarded_proto(push_auth_on: FakeGoogleCerts):
    """Behind Cloud Run the container sees http, but Pub/Sub signed for the https URL: the header decides."""
    assert (await post(authorization=bearer(valid_token()), forwarded_proto="https"))["status"] == 204
    http_token = valid_token(audience=f"http://{HOST}/{EVENT}")
    assert (await post(authorization=bearer(http_token), forwarded_proto=None))["status"] == 204


async def test_audience_configured_with_a_query_string_is_accepted(push_auth_on: FakeGoogleCerts):
    """A push endpoint configured as ``URL?x=y`` is that whole string as the default audience."""
    token = valid_token(audience=f"{ENDPOINT_URL}?source=dialogflow")
    response = await post(f"/{EVENT}?source=dialogflow", authorization=bearer(token))
    assert response["status"] == 204, response


async def test_configured_audience_replaces_the_request_url(push_auth_on: FakeGoogleCerts, settings: Any, caplog):
    """With PUSH_AUTH_AUDIENCE the token must carry exactly it, on every endpoint; the URL no longer counts."""
    settings.PUSH_AUTH_AUDIENCE = "aa-backend-interceptor"
    for event in ("new-message-event", "human-agent-assistant-event"):
        response = await post(f"/{event}", authorization=bearer(valid_token(audience="aa-backend-interceptor")))
        assert response["status"] == 204, response
    caplog.set_level(logging.WARNING)
    assert_refused(await post(authorization=bearer(valid_token())), 401, caplog)


async def test_without_the_setting_pushes_are_not_checked(google: FakeGoogleCerts, settings: Any):
    """PUSH_AUTH_SERVICE_ACCOUNT unset: any Authorization header is ignored and no certificate is fetched."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = ""
    settings.PUSH_AUTH_CERTS_URL = google.url
    assert (await post(authorization="Bearer garbage"))["status"] == 204
    assert (await post())["status"] == 204
    assert google.fetches == 0


# --- 401: not a valid Google token for this endpoint ------------------------------------


async def test_missing_authorization_is_401(push_auth_on: FakeGoogleCerts, caplog):
    """No header at all: 401 without fetching certificates."""
    caplog.set_level(logging.WARNING)
    assert_refused(await post(), 401, caplog)
    assert push_auth_on.fetches == 0


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer   "])
async def test_authorization_that_is_not_a_bearer_token_is_401(push_auth_on: FakeGoogleCerts, caplog, value: str):
    """Other schemes and an empty Bearer are refused."""
    caplog.set_level(logging.WARNING)
    assert_refused(await post(authorization=value), 401, caplog)


GARBAGE_TOKENS = [
    "not-a-jwt-0123456789",
    "a.b.c",  # not base64 JSON
    "e30.e30",  # two segments
    "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2lnbmF0dXJl",  # a header, then a payload that is not JSON
    "!!!.???.***",
    "e30.e30.c2ln",  # a header without alg
    valid_token()[:-30] + "x.y",  # four segments
    base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".e30.c2ln",  # deeply nested header
    "eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=") + ".c2ln",  # and payload
]


@pytest.mark.parametrize("garbage", GARBAGE_TOKENS)
async def test_garbage_token_is_401_without_a_certificate_fetch(push_auth_on, caplog, garbage: str):
    """Anything that is not a JWT is refused before any network call, and never quoted in the log."""
    caplog.set_level(logging.WARNING)
    assert_refused(await post(authorization=bearer(garbage)), 401, caplog, token=garbage)
    assert push_auth_on.fetches == 0


async def test_token_signed_by_another_key_under_googles_key_id_is_401(push_auth_on: FakeGoogleCerts, caplog):
    """A forger's own key, claiming Google's ``kid``: the signature does not verify."""
    caplog.set_level(logging.WARNING)
    token = ATTACKER_KEY.sign(pubsub_claims(audience=ENDPOINT_URL), kid=GOOGLE_KEY.kid)
    message = assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)
    assert "signature" in message


async def test_token_with_an_unknown_key_id_is_401_and_fetches_nothing_more(push_auth_on: FakeGoogleCerts, caplog):
    """A ``kid`` Google does not publish: 401, and forged key ids cannot make us fetch again."""
    assert (await post(authorization=bearer(valid_token())))["status"] == 204
    caplog.set_level(logging.WARNING)
    token = ATTACKER_KEY.sign(pubsub_claims(audience=ENDPOINT_URL))
    for _ in range(3):
        caplog.clear()
        message = assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)
        assert "key Google does not publish" in message
    assert push_auth_on.fetches == 1


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_unsigned_and_hmac_forgeries_are_401(push_auth_on: FakeGoogleCerts, caplog, alg: str):
    """``alg: none`` and HS256 keyed with Google's public certificate (algorithm confusion) are refused."""
    caplog.set_level(logging.WARNING)
    header = {"alg": alg, "typ": "JWT", "kid": GOOGLE_KEY.kid}
    key = GOOGLE_KEY.certificate_pem.encode() if alg == "HS256" else None
    token = unsigned_token(header, pubsub_claims(audience=ENDPOINT_URL), hmac_key=key)
    assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)


async def test_expired_token_is_401(push_auth_on: FakeGoogleCerts, caplog):
    """A token whose ``exp`` is an hour gone."""
    caplog.set_level(logging.WARNING)
    token = valid_token(issued_at=time.time() - 7200)
    assert "expired" in assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)


async def test_token_issued_in_the_future_is_401(push_auth_on: FakeGoogleCerts, caplog):
    """``iat`` ten minutes ahead is beyond any clock skew."""
    caplog.set_level(logging.WARNING)
    token = valid_token(issued_at=time.time() + 600)
    assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)


async def test_token_without_exp_is_401(push_auth_on: FakeGoogleCerts, caplog):
    """A token that never expires is not one Google issues."""
    caplog.set_level(logging.WARNING)
    token = valid_token(exp=...)
    assert_refused(await post(authorization=bearer(token)), 401, caplog, token=token)


@pytest.mark.parametrize(
    "audience",
    [
        f"https://{HOST}/human-agent-assistant-event",  # another endpoint of this service
        f"https://other-service.a.run.app/{EVENT}",  # another service
        f"http://{HOST}/{EVENT}",  # http while the request came over https
        "32555940559.apps.googleusercontent.com",  # an ordinary sign-in token
    ],
)
async def test_token_for_another_audience_is_401(push_auth_on: FakeGoogleCerts, caplog, audience: str):
    """A genuine token minted for something else is not accepted here; the reason names both audiences."""
    caplog.set_level(logging.WARNING)
    token = valid_token(audience=audience)
    message = assert_refused(await post(authorization=bearer(token)), 401, caplog)
    assert audience in message and ENDPOINT_URL in message


@pytest.mark.parametrize("issuer", ["https://securetoken.google.com/test-project", "https://evil.example", ...])
async def test_token_from_another_issuer_is_401(push_auth_on: FakeGoogleCerts, caplog, issuer: Any):
    """Signed with a published key but not issued by accounts.google.com (or with no ``iss``)."""
    caplog.set_level(logging.WARNING)
    message = assert_refused(await post(authorization=bearer(valid_token(issuer=issuer))), 401, caplog)
    assert "iss" in message


# --- 403: a Google token, but not for our verified account -------------------------------


@pytest.mark.parametrize("email", ["someone-else@test-project.iam.gserviceaccount.com", "", None, ...])
async def test_token_for_another_account_is_403(push_auth_on: FakeGoogleCerts, caplog, email: Any):
    """Another service account (or none): Google vouched for someone, just not the configured account."""
    caplog.set_level(logging.WARNING)
    assert_refused(await post(authorization=bearer(valid_token(email=email))), 403, caplog)


@pytest.mark.parametrize("verified", [False, "false", None, ...])
async def test_unverified_email_is_403(push_auth_on: FakeGoogleCerts, caplog, verified: Any):
    """``email_verified`` false, or absent."""
    caplog.set_level(logging.WARNING)
    message = assert_refused(await post(authorization=bearer(valid_token(email_verified=verified))), 403, caplog)
    assert "email_verified" in message


# --- ordering with the poison-message rules ----------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD_FIXTURES))
async def test_poison_body_with_a_valid_token_is_still_discarded(push_auth_on: FakeGoogleCerts, name: str):
    """Authenticated poison is acknowledged as before: 200 ``discarded``."""
    response = await post(body=fixture_bytes(name), authorization=bearer(valid_token()))
    assert response["status"] == 200, response
    assert json.loads(response["body"])["status"] == "discarded"


@pytest.mark.parametrize("name", sorted(BAD_FIXTURES))
async def test_poison_body_without_a_token_is_401_not_acknowledged(push_auth_on: FakeGoogleCerts, caplog, name: str):
    """Authentication comes first: an unauthenticated push is never acknowledged, whatever its body."""
    caplog.set_level(logging.WARNING)
    assert_refused(await post(body=fixture_bytes(name)), 401, caplog)


# --- the certificates ------------------------------------------------------------------


async def test_certificates_are_fetched_once_and_cached(push_auth_on: FakeGoogleCerts):
    """Within Google's max-age, many pushes cost one fetch."""
    for _ in range(5):
        assert (await post(authorization=bearer(valid_token())))["status"] == 204
    assert push_auth_on.fetches == 1


async def test_certificates_are_fetched_again_once_max_age_has_passed(push_auth_on: FakeGoogleCerts):
    """With ``max-age=1`` the copy is stale after a second, and the next push fetches anew."""
    push_auth_on.max_age = 1
    assert (await post(authorization=bearer(valid_token())))["status"] == 204
    assert push_auth_on.fetches == 1
    await asyncio.sleep(1.5)
    assert (await post(authorization=bearer(valid_token())))["status"] == 204
    assert push_auth_on.fetches == 2


async def test_age_header_counts_against_max_age(push_auth_on: FakeGoogleCerts):
    """An answer already as old as its max-age (from a cache on the way) is stale at once."""
    push_auth_on.max_age, push_auth_on.age = 3600, 3600
    for expected_fetches in (1, 2):
        assert (await post(authorization=bearer(valid_token())))["status"] == 204
        assert push_auth_on.fetches == expected_fetches


async def test_rotated_key_is_picked_up_after_max_age(push_auth_on: FakeGoogleCerts):
    """Google adds a key and signs with it: once the old copy is stale, tokens under the new key verify."""
    push_auth_on.max_age = 1
    assert (await post(authorization=bearer(valid_token())))["status"] == 204
    new_key = signing_key("google-key-2")
    push_auth_on.publish(GOOGLE_KEY, new_key)
    await asyncio.sleep(1.5)
    token = new_key.sign(pubsub_claims(audience=ENDPOINT_URL))
    assert (await post(authorization=bearer(token)))["status"] == 204


async def test_concurrent_first_pushes_share_one_fetch(push_auth_on: FakeGoogleCerts):
    """Pushes that all arrive before the certificates do wait on the same single fetch."""
    push_auth_on.hold()
    pushes = [asyncio.ensure_future(post(authorization=bearer(valid_token()))) for _ in range(8)]
    await clients.wait_until(lambda: push_auth_on.fetches >= 1, what="the first certificate fetch")
    # Give every other push time to reach the certificates too; an implementation that
    # fetched per push would show more fetches here (the fake holds each one).
    await asyncio.sleep(0.5)
    push_auth_on.release()
    responses = await asyncio.gather(*pushes)
    assert [response["status"] for response in responses] == [204] * 8
    assert push_auth_on.fetches == 1


async def test_unreachable_certificate_endpoint_is_503_with_retry_after(settings: Any, caplog):
    """Nothing listens at the certificates URL: 503 (Pub/Sub retries), not 401, and one ERROR line."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    settings.PUSH_AUTH_CERTS_URL = f"http://127.0.0.1:{processes.free_port()}/oauth2/v1/certs"
    caplog.set_level(logging.WARNING)
    response = await post(authorization=bearer(valid_token()))
    assert response["status"] == 503
    assert json.loads(response["body"])["message"]
    assert (header(response, "Retry-After") or "").isdigit()
    assert interceptor_lines(caplog, logging.WARNING) == []
    assert len(interceptor_lines(caplog, logging.ERROR)) == 1


@pytest.mark.parametrize(
    "status, body",
    [
        (500, None),
        (404, None),
        (200, b"<html>maintenance</html>"),
        (200, b"[]"),
        (200, b"{}"),
        (200, b'{"keys": [{"kid": "k", "kty": "RSA"}]}'),
    ],
)
async def test_unusable_certificate_answer_is_503(push_auth_on: FakeGoogleCerts, status: int, body: bytes | None):
    """An error status, or 200 with something that is not key id -> PEM, cannot judge the token: 503."""
    push_auth_on.status, push_auth_on.body = status, body
    assert (await post(authorization=bearer(valid_token())))["status"] == 503


async def test_failed_fetch_is_not_cached(push_auth_on: FakeGoogleCerts):
    """Once the endpoint recovers, the next push verifies: a failure is retried, not remembered."""
    push_auth_on.status = 503
    assert (await post(authorization=bearer(valid_token())))["status"] == 503
    push_auth_on.status = 200
    assert (await post(authorization=bearer(valid_token())))["status"] == 204
    assert push_auth_on.fetches == 2
