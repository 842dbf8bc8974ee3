"""An HTTPS proxy on 127.0.0.1 that plays any host, so that a server process can call a real https:// URL
(``https://api.usw2.pure.cloud``, say) and reach a local fake instead, without DNS or the internet.

The process is given ``HTTPS_PROXY`` (this proxy) and ``SSL_CERT_FILE`` (the test CA of ``testing.tls_files``),
which httpx honours. The proxy answers each ``CONNECT``, records the ``host:port`` asked for, speaks TLS to the
client with a certificate of that CA naming the hosts the test expects, and relays what it decrypts to a
plain-HTTP fake on loopback. A host the certificate does not name fails the client's TLS check, as it would
against the real service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from testing.tls_files import TlsFiles


@dataclass
class InterceptingProxy:
    """Where the proxy listens and every ``CONNECT`` target it was asked for, in order."""

    port: int = 0
    connected: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _handler(proxy: InterceptingProxy, context: ssl.SSLContext, backend_port: int):
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            proxy.connected.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(context)
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
            await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
        except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that refused our certificate, or went away: it sees the failure itself
        finally:
            writer.close()

    return serve


@contextlib.contextmanager
def serve(backend_port: int, tls: TlsFiles) -> Iterator[InterceptingProxy]:
    """Run the proxy, relaying to the plain-HTTP server on 127.0.0.1:``backend_port``, until the block ends."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.server_certificate, tls.server_key)
    proxy = InterceptingProxy()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="intercepting-proxy", daemon=True)
    thread.start()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(_handler(proxy, context, backend_port), "127.0.0.1", 0)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(stop(server), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
