"""One pooled ``httpx.AsyncClient`` per event loop, and the single upstream call the proxy makes.

The client is created on first use in a loop (never at import: an
``AsyncClient`` belongs to the loop it first ran on) and closed just before
that loop closes. Bodies are read raw (``aiter_raw``): a gzip answer reaches
the desktop as Dialogflow sent it, with its ``Content-Encoding``, never
decoded here and never relabelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from django.conf import settings

from common import http_clients

# Connections kept per process towards Dialogflow; calls beyond this wait for a
# free connection (within DIALOGFLOW_TIMEOUT) rather than opening more.
MAX_CONNECTIONS = 100


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
    """The running loop's pooled client for Dialogflow, created on first use."""
    return http_clients.pooled_client(
        "dialogflow",
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
    )


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
