"""Fixtures for the Socket.IO consumer tests: raw Engine.IO/Socket.IO clients on the real application."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from testing.raw_socketio import SocketIOTestClient, client_factory, open_connected


@pytest.fixture
async def new_client() -> AsyncIterator[Callable[..., SocketIOTestClient]]:
    """Make clients; disconnect them all afterwards, which re-raises any error the consumer hit."""
    async with client_factory() as make:
        yield make


@pytest.fixture
def connected(new_client) -> Callable[..., Awaitable[SocketIOTestClient]]:
    """Open a client and CONNECT it to ``/`` with a valid token."""
    return functools.partial(open_connected, new_client)
