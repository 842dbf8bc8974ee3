"""Authenticated push in a real interceptor process, and the start-up checks of its settings.

The in-process tests of the same rules are in ``test_push_auth.py``, whose
helpers (``testing.signed_pushes``) this module shares; certificates come from the local fake of
Google's endpoint (``testing/fake_google_certs.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core import checks

from testing import fake_google_certs, processes
from testing.fake_google_certs import SERVICE_ACCOUNT, FakeGoogleCerts, pubsub_claims
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

# --- settings checks ---------------------------------------------------------------------


def check_ids() -> set[str]:
    return {message.id for message in checks.run_checks() if message.is_serious()}


def test_audience_without_service_account_is_an_error(settings: Any):
    """PUSH_AUTH_AUDIENCE alone would look configured while checking nothing."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = ""
    settings.PUSH_AUTH_AUDIENCE = "aa-backend-interceptor"
    assert "aa_site.E020" in check_ids()
    settings.PUSH_AUTH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    assert "aa_site.E020" not in check_ids()


@pytest.mark.parametrize("account", ["pubsub-push", "two words@example.com", "a@b@c"])
def test_service_account_that_is_not_an_email_is_an_error(settings: Any, account: str):
    """A typo here would refuse every push forever; start-up names it instead."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = account
    assert "aa_site.E021" in check_ids()


def test_certificates_url_must_be_http(settings: Any):
    """PUSH_AUTH_CERTS_URL must be an http(s) URL."""
    settings.PUSH_AUTH_SERVICE_ACCOUNT = SERVICE_ACCOUNT
    settings.PUSH_AUTH_CERTS_URL = "www.googleapis.com/oauth2/v1/certs"
    assert "aa_site.E022" in check_ids()


def test_the_interceptor_refuses_to_start_with_audience_but_no_service_account(redis_server):
    """The real process exits 2 naming PUSH_AUTH_AUDIENCE."""
    result = processes.service_exit(role="interceptor", redis=redis_server, PUSH_AUTH_AUDIENCE="aa-backend")
    assert result.returncode == 2, result.stderr
    assert "PUSH_AUTH_AUDIENCE" in result.stderr and "Traceback" not in result.stderr


# --- a real interceptor process ------------------------------------------------------------


@pytest.fixture(scope="module")
def google_for_process() -> Iterator[FakeGoogleCerts]:
    with fake_google_certs.serve(GOOGLE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def authenticated_interceptor(redis_server, google_for_process: FakeGoogleCerts) -> Iterator[processes.Server]:
    """An interceptor process with PUSH_AUTH_SERVICE_ACCOUNT and the fake certificates URL."""
    with processes.service_server(
        role="interceptor",
        redis=redis_server,
        PUSH_AUTH_SERVICE_ACCOUNT=SERVICE_ACCOUNT,
        PUSH_AUTH_CERTS_URL=google_for_process.url,
    ) as server:
        yield server


async def test_an_interceptor_process_delivers_authenticated_pushes_and_refuses_others(
    authenticated_interceptor: processes.Server, google_for_process: FakeGoogleCerts, settings
):
    """End to end over TCP: a valid token is delivered to Redis subscribers; none, a forged or a foreign one is not."""
    server = authenticated_interceptor
    url = f"{server.http_url}/{EVENT}"
    # Direct to the server there is no proxy: the audience is the plain http URL Pub/Sub would be given.
    claims = pubsub_claims(audience=url)
    conversation = new_conversation()
    # The process publishes with the default key prefix.
    settings.EVENT_KEY_PREFIX = "aa:"
    listener = await subscribe(None, conversation)
    async with httpx.AsyncClient(timeout=RESPONSE_TIMEOUT) as client:

        async def push(authorization: str | None, message_id: str) -> httpx.Response:
            headers = {"Content-Type": "application/json"}
            if authorization is not None:
                headers["Authorization"] = authorization
            return await client.post(url, content=message_body(conversation, message_id), headers=headers)

        assert (await push(None, "none")).status_code == 401
        forged = ATTACKER_KEY.sign(claims, kid=GOOGLE_KEY.kid)
        assert (await push(bearer(forged), "forged")).status_code == 401
        foreign = GOOGLE_KEY.sign({**claims, "email": "other@test-project.iam.gserviceaccount.com"})
        assert (await push(bearer(foreign), "foreign")).status_code == 403
        for message_id in ("ok-1", "ok-2"):
            response = await push(bearer(GOOGLE_KEY.sign(claims)), message_id)
            assert response.status_code == 204, response.text
    received = [await listener.receive(EVENT_TIMEOUT) for _ in range(2)]
    assert sorted(message["payload"]["message_id"] for message in received) == ["ok-1", "ok-2"]
    with pytest.raises(asyncio.TimeoutError):
        await listener.receive(0.5)
    assert google_for_process.fetches == 1
    log = server.log()
    assert "Traceback" not in log
    assert forged.split(".")[2] not in log and "Refusing push" in log
