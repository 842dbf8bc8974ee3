"""One pooled ``httpx.AsyncClient`` per event loop, and the single upstream call the proxy makes.

The client is created on first use in a loop (never at import: an
``AsyncClient`` belongs to the loop it first ran on) and closed just before
that loop closes. Bodies are read raw (``aiter_raw``): a gzip answer reaches
the desktop as Dialogflow sent it, with its ``Content-Encoding``, never
decoded here and never relabelled.
"""

from __future__ import annotations

import asyncio
import types
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from django.conf import settings

# Connections kept per process towards Dialogflow; calls beyond this wait for a
# free connection (within DIALOGFLOW_TIMEOUT) rather than opening more.
MAX_CONNECTIONS = 100

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]" = weakref.WeakKeyDictionary()


class UpstreamTimeout(Exception):
    """Dialogflow did not answer within ``DIALOGFLOW_TIMEOUT``."""


class UpstreamUnreachable(Exception):
    """No answer could be had from Dialogflow (refused, DNS, TLS, connection dropped)."""


@dataclass(frozen=True)
class UpstreamResponse:
    """Dialogflow's answer: status, headers (names lower-cased), and the body exactly as received."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def get_client() -> httpx.AsyncClient:
    """The running loop's pooled client, created on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        # No redirects: Dialogflow never redirects an API call, and following one
        # would send the service's access token wherever it pointed.
        client = httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": "aa-backend"},
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        )
        _clients[loop] = client
        _close_with_loop(loop)
    return client


async def send(method: str, url: str, *, headers: Mapping[str, str], body: bytes) -> UpstreamResponse:
    """Send one call and return Dialogflow's answer, whatever its status.

    Raises ``UpstreamTimeout`` when the whole exchange (connection, request,
    answer) takes longer than ``DIALOGFLOW_TIMEOUT``, and ``UpstreamUnreachable``
    for any other transport failure.
    """
    deadline = settings.DIALOGFLOW_TIMEOUT
    timeout = httpx.Timeout(deadline, connect=settings.DIALOGFLOW_CONNECT_TIMEOUT)
    client = get_client()
    try:
        # httpx's timeouts bound each step; the overall deadline also stops an answer that trickles in.
        async with asyncio.timeout(deadline):
            request = client.build_request(method, url, headers=headers, content=body, timeout=timeout)
            response = await client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
    except (httpx.TimeoutException, TimeoutError):
        raise UpstreamTimeout(f"no answer within {deadline:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # The exception's text is left out: some name the full URL with its query.
        raise UpstreamUnreachable(type(error).__name__) from None
    return UpstreamResponse(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=raw,
    )


def _close_with_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's client just before the loop itself closes (as channels_redis does for its pools)."""
    if getattr(loop.close, "_closes_dialogflow_client", False):
        return
    original_close = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        client = _clients.pop(self, None)
        try:
            if client is not None and not client.is_closed and not self.is_running() and not self.is_closed():
                self.run_until_complete(client.aclose())
        finally:
            original_close()

    close._closes_dialogflow_client = True  # type: ignore[attr-defined]
    try:
        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
    except AttributeError:
        # Loops implemented in C (uvloop) refuse new attributes; the weak
        # reference then forgets the client when the loop is collected.
        pass
