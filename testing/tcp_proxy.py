"""A TCP proxy on loopback that a test can point at another backend and whose connections it can cut,
as a load balancer in front of several connector instances would behave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class TcpProxy:
    """Forwards each connection on 127.0.0.1:``port`` to ``backend_port``; ``cut()`` drops them all;
    ``hold()`` keeps new connections waiting (accepted, not yet forwarded) until ``release()``."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self.held = 0  # connections waiting for release()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Abort every proxied connection (both sides see it drop, as after a network blip)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def hold(self) -> None:
        """Accept new connections but forward nothing of them until ``release()``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def stall(self) -> None:
        """Keep the open connections up but forward nothing more on them (as a congested network) until
        ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self.release()
        self.resume()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if not self._open.is_set():
            self.held += 1
            try:
                await self._open.wait()
            finally:
                self.held -= 1
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, backend_writer))
        await asyncio.gather(
            self._pipe(client_reader, backend_writer), self._pipe(backend_reader, client_writer),
            return_exceptions=True,
        )
        self._writers.difference_update((client_writer, backend_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()


@contextlib.asynccontextmanager
async def tcp_proxy(backend_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(backend_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
