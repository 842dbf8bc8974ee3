"""What the local fakes (``tests/fake_*.py``) share: an aiohttp app served from a thread of its own.

Each fake runs its aiohttp application on an event loop in its own thread, so
async tests, sync tests, server processes and benchmarks can all call it, and a
deliberately slow answer never blocks the caller's loop. Every fake binds to
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Running:
    """Where a served app listens, and the loop its handlers run on."""

    port: int
    loop: asyncio.AbstractEventLoop


@contextlib.contextmanager
def serve_app(app: web.Application, *, name: str) -> Iterator[Running]:
    """Serve ``app`` on a free loopback port, from a thread called ``name``, until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
    thread.start()
    # No access log: it would print query strings (an access token, say) into the captured logs.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner.addresses[0][1]

    async def stop() -> None:
        await runner.cleanup()
        # Handlers still sleeping (slow answers) outlive their closed connections.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield Running(port=port, loop=loop)
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()



@contextlib.contextmanager
def serve_handler(handler, *, name: str) -> Iterator[Running]:
    """Serve one aiohttp ``handler`` for every method and path (a fake that routes by itself)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    with serve_app(app, name=name) as running:
        yield running

async def trickle(
    request: web.Request, body: bytes, *, seconds: float, status: int = 200, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Send the status and headers at once, then a space every 0.1 s for ``seconds``, then ``body``.

    Leading spaces keep a JSON body valid however long it trickles: only a
    deadline on the whole answer (not on each read) stops it.
    """
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    for _ in range(int(seconds / 0.1)):
        await response.write(b" ")
        await asyncio.sleep(0.1)
    await response.write(body)
    await response.write_eof()
    return response
