"""Pooled ``httpx.AsyncClient``s, one per purpose and event loop, created on first use.

An ``AsyncClient`` belongs to the loop it first ran on, so clients are kept
per loop (``common.loop_local``), never created at import, and closed just
before their loop closes. Each caller names its purpose (identity providers,
Google certificates, Dialogflow) because each wants its own pool limits and
defaults.
"""

from __future__ import annotations

from typing import Any

import httpx

from common.loop_local import LoopLocal


async def _close_all(clients: dict[str, httpx.AsyncClient]) -> None:
    for client in clients.values():
        if not client.is_closed:
            await client.aclose()


_clients: LoopLocal[dict[str, httpx.AsyncClient]] = LoopLocal(dict, close=_close_all)


def pooled_client(purpose: str, **options: Any) -> httpx.AsyncClient:
    """The running loop's client for ``purpose``, made with ``options`` the first time.

    Redirects are never followed (``follow_redirects=False`` unless given):
    every caller sends credentials that must not travel to another host.
    """
    clients = _clients.get()
    client = clients.get(purpose)
    if client is None or client.is_closed:
        options.setdefault("follow_redirects", False)
        options.setdefault("headers", {"User-Agent": "aa-backend"})
        client = clients[purpose] = httpx.AsyncClient(**options)
    return client
