"""Pooled ``httpx.AsyncClient``s, one per purpose and event loop, created on first use.

An ``AsyncClient`` belongs to the loop it first ran on, so clients are kept
per loop (like channels-redis's connection pools), never created at import,
and closed just before their loop closes. Each caller names its purpose
(identity providers, Google certificates, Dialogflow) because each wants its
own pool limits and defaults.
"""

from __future__ import annotations

import asyncio
import types
import weakref
from typing import Any

import httpx

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def pooled_client(purpose: str, **options: Any) -> httpx.AsyncClient:
    """The running loop's client for ``purpose``, made with ``options`` the first time.

    Redirects are never followed (``follow_redirects=False`` unless given):
    every caller sends credentials that must not travel to another host.
    """
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = {}
        _close_with_loop(loop)
    client = clients.get(purpose)
    if client is None or client.is_closed:
        options.setdefault("follow_redirects", False)
        options.setdefault("headers", {"User-Agent": "aa-backend"})
        client = clients[purpose] = httpx.AsyncClient(**options)
    return client


def _close_with_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's clients just before the loop itself closes (as channels-redis does for its pools)."""
    original_close = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        clients = _clients.pop(self, {})
        try:
            if not self.is_running() and not self.is_closed():
                for client in clients.values():
                    if not client.is_closed:
                        self.run_until_complete(client.aclose())
        finally:
            original_close()

    try:
        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
    except AttributeError:
        # Loops implemented in C (uvloop) refuse new attributes; the weak
        # reference then forgets the clients when the loop is collected.
        pass
