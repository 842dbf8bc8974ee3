"""What every HTTP-checked identity provider shares: a pooled client and the rules for its answers.

One ``httpx.AsyncClient`` per event loop, created on first use (never at
import: an ``AsyncClient`` belongs to the loop it first ran on, like
channels_redis's connection pools) and closed when that loop closes. Timeouts
come from ``IDENTITY_PROVIDER_CONNECT_TIMEOUT`` / ``IDENTITY_PROVIDER_READ_TIMEOUT``
and are read on every call, so a changed setting applies at once.

How an answer is judged: 200 is for the provider to inspect further; 400, 401
and 403 mean the provider refused the token (``TokenRejected``); anything else,
and every transport failure or timeout, means it could not judge it
(``ProviderUnavailable``). Tokens travel only in headers, query parameters
and bodies, never in ``url``, so the messages built here (which name ``url``)
cannot contain one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container, Mapping
from typing import Any

import httpx
from django.conf import settings

from auth_providers.base import ProviderUnavailable, TokenRejected
from common import bearer, http_clients, untrusted

#: Statuses with which a provider says "this token (or credential) is not valid".
REJECTING_STATUSES = frozenset({400, 401, 403})


def get_client() -> httpx.AsyncClient:
    """Return the running loop's pooled client for identity providers, creating it on first use."""
    return http_clients.pooled_client("identity-providers")


def _timeout() -> httpx.Timeout:
    connect = settings.IDENTITY_PROVIDER_CONNECT_TIMEOUT
    read = settings.IDENTITY_PROVIDER_READ_TIMEOUT
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


async def send(
    provider: str,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json: Any = None,
    auth: tuple[str, str] | None = None,
    rejecting: Container[int] = REJECTING_STATUSES,
) -> httpx.Response:
    """Send one request to a provider and return its 200 response.

    Raises ``TokenRejected`` for a status in ``rejecting`` and
    ``ProviderUnavailable`` for any other status, a transport failure or a
    timeout. ``url`` must not contain the token (pass it in ``headers``,
    ``params``, ``json`` or ``auth``): it appears in the error messages.
    """
    # httpx's read timeout bounds each read, not the whole answer; the overall
    # deadline stops a provider that trickles bytes from holding /register open.
    deadline = settings.IDENTITY_PROVIDER_CONNECT_TIMEOUT + settings.IDENTITY_PROVIDER_READ_TIMEOUT
    try:
        async with asyncio.timeout(deadline):
            response = await get_client().request(
                method, url, headers=headers, params=params, json=json, auth=auth, timeout=_timeout()
            )
    except (httpx.TimeoutException, TimeoutError):
        raise ProviderUnavailable(f"{provider} did not answer in time ({method} {url})") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # The exception's own text is left out: some name the full request URL.
        raise ProviderUnavailable(f"{provider} could not be reached ({method} {url}): {type(error).__name__}") from None
    if response.status_code == 200:
        return response
    if response.status_code in rejecting:
        raise TokenRejected(f"{provider} refused the token with HTTP {response.status_code}")
    raise ProviderUnavailable(f"{provider} answered HTTP {response.status_code} ({method} {url})")


def json_object(provider: str, response: httpx.Response) -> dict[str, Any]:
    """Return the response body as a JSON object, or raise ``ProviderUnavailable``."""
    try:
        return untrusted.json_object(response.content)
    except untrusted.NotJson:
        raise ProviderUnavailable(f"{provider} answered 200 with a body that is not JSON") from None
    except untrusted.NotJsonObject:
        raise ProviderUnavailable(f"{provider} answered 200 with JSON that is not an object") from None


def first_text(data: Mapping[str, Any], *keys: str) -> str:
    """Return the first non-empty string among ``data[key]``, else ``""`` (for ``Identity.user``)."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def bearer_token(authorization: str) -> str:
    """The token in an ``Authorization`` value, or raise ``TokenRejected`` when there is none or it is not ASCII."""
    token = bearer.bearer_token(authorization)
    if not token:
        raise TokenRejected("no token in the Authorization header")
    if not token.isascii():
        # Bearer tokens are ASCII (RFC 6750); httpx would raise on one in a header instead of sending it.
        raise TokenRejected("the token in the Authorization header is not ASCII")
    return token
