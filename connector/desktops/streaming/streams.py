"""One connection's open streams: opened by ``stream-request``, fed by later ones, ended by ``end-stream``.

Each stream is one asyncio task (no thread) that does the WebChannel
handshake, posts the desktop's requests in order and relays every response
message through the connection's ``Emit``: ``("data", {"streamId", "payload"})``,
``("error", {"streamId", "payload": {"error": {"message", "code"}}})`` and,
when upstream ends the call cleanly, ``("ended", {"streamId"})``. A stream is
forgotten after an error or its end; a later request with its id opens a new one.

Bounds, all settings: ``STREAM_MAX_PER_CONNECTION`` and
``STREAM_MAX_PER_PROCESS`` open streams (a request beyond gets an error),
``STREAM_IDLE_TIMEOUT`` seconds without a request or a response, and
``STREAM_MAX_DURATION`` seconds in all. Requests waiting to be posted are
bounded by count (``MAX_QUEUED_REQUESTS`` a stream) and by bytes (their JSON
encoding): ``STREAM_MAX_QUEUED_BYTES_PER_STREAM``, ``STREAM_MAX_QUEUED_BYTES``
a connection and ``STREAM_MAX_QUEUED_BYTES_PER_PROCESS``; a request that would
pass one is refused with a stream error and ends its stream. A request's bytes
are held from its arrival until its post upstream is answered.
``close_all`` (the connection's release) cancels every task, which closes its
back channel upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from django.conf import settings

from common import http_clients
from common.log_sampling import LogSampler
from connector import tokens
from connector.desktops.streaming import methods, webchannel
from connector.dialogflow_proxy import credentials
from connector.dialogflow_proxy.permissions import allowed_projects
from events import metrics

logger = logging.getLogger(__name__)
# At the process's bound every further stream-request is refused, and desktops retry: one line, then counts.
repeated = LogSampler(logger)

#: How a connection sends one stream message in its protocol: (kind, message) with kind data, error or ended.
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

# Requests a stream queues while its upstream post is under way; a desktop that sends faster is told so.
MAX_QUEUED_REQUESTS = 64
MAX_STREAM_ID_CHARS = 256
# Integer stream ids every JSON parser holds exactly; a larger one would be echoed at any length the client sent.
MAX_STREAM_ID_NUMBER = 2**53


class _ConnectionGone(Exception):
    """The connection could not take a stream message: it is closing, so the stream ends quietly."""


class _ProcessStreams:
    """This process's open streams and the bytes of their waiting requests (one event loop per process)."""

    def __init__(self) -> None:
        self.count = 0
        self.queued_bytes = 0

    def hold(self, size: int) -> None:
        self.queued_bytes += size
        metrics.stream_bytes_queued(size)

    def release(self, size: int) -> None:
        self.queued_bytes -= size
        metrics.stream_bytes_queued(-size)


PROCESS = _ProcessStreams()


def get_client() -> httpx.AsyncClient:
    """The running loop's pooled client for WebChannel calls, created on first use."""
    # A stream holds one back channel and at most one post at a time: twice the streams bounds the connections.
    connections = 2 * settings.STREAM_MAX_PER_PROCESS + 10
    return http_clients.pooled_client(
        "dialogflow-webchannel",
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=min(connections, 100)),
    )


class StreamRegistry:
    """The open streams of one connection, by the desktop's ``streamId``."""

    __slots__ = ("_emit", "_streams", "queued_bytes")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._streams: dict[str | int, _Stream] = {}
        self.queued_bytes = 0  # of every stream's waiting requests

    async def request(self, identity: tokens.DesktopIdentity | None, frame: Any) -> list[Any]:
        """Handle one ``stream-request``; return the acknowledgement (``[True, id]`` or ``[False, why]``).

        A refusal is also sent as a stream error, as the sample's clients expect.
        """
        stream_id = frame.get("streamId") if isinstance(frame, dict) else None
        try:
            stream_id = _checked_id(stream_id)
            payload = frame.get("payload")
            stream = self._streams.get(stream_id)
            if stream is not None:
                if payload is not None:
                    stream.enqueue(payload, _size_of(payload))
                return [True, stream_id]
            if identity is None:
                raise methods.StreamRefused("authenticate before opening a stream")
            target = methods.target_of(methods.method_named(frame.get("method")), payload)
            if target.project not in allowed_projects():
                raise methods.StreamRefused(f"Project {target.project} is not served by this backend.")
            self._check_bounds()
            size = 0 if payload is None else _size_of(payload)
            self._check_bytes(0, size)
        except methods.StreamRefused as refusal:
            shown = stream_id if _is_valid_id(stream_id) else None
            open_stream = self._streams.get(shown) if shown is not None else None
            if open_stream is not None:
                await open_stream.close()  # a stream ends after an error
            await self._emit("error", _error(shown, str(refusal)))
            return [False, str(refusal)]
        stream = self._streams[stream_id] = _Stream(self, stream_id, methods.channel_url(
            target, settings.DIALOGFLOW_WEBCHANNEL_ROOT))
        if payload is not None:
            stream.enqueue(payload, size)
        stream.start()
        return [True, stream_id]

    async def end(self, frame: Any) -> list[Any]:
        """Handle one ``end-stream``: close the stream upstream and forget it (an unknown id is not an error)."""
        stream_id = frame.get("streamId") if isinstance(frame, dict) else None
        stream = self._streams.get(stream_id) if _is_valid_id(stream_id) else None
        if stream is not None:
            await stream.close()
        return [True, stream_id if _is_valid_id(stream_id) else None]  # never an echo of unbounded input

    async def close_all(self) -> None:
        """Close every open stream upstream (the connection ended)."""
        streams = list(self._streams.values())
        await asyncio.gather(*(stream.close() for stream in streams), return_exceptions=True)

    def _check_bounds(self) -> None:
        if len(self._streams) >= settings.STREAM_MAX_PER_CONNECTION:
            raise methods.StreamRefused(
                f"a connection may have at most {settings.STREAM_MAX_PER_CONNECTION} open streams")
        if PROCESS.count >= settings.STREAM_MAX_PER_PROCESS:
            repeated.warning("process bound", "Refusing a stream: %s are open in this process "
                             "(STREAM_MAX_PER_PROCESS)", PROCESS.count)
            raise methods.StreamRefused("the server has too many open streams; try again later")

    def _check_bytes(self, stream_bytes: int, size: int) -> None:
        """Refuse a request of ``size`` bytes that would take a stream holding ``stream_bytes`` past a bound."""
        if stream_bytes + size > settings.STREAM_MAX_QUEUED_BYTES_PER_STREAM:
            raise methods.StreamRefused(
                f"more than {settings.STREAM_MAX_QUEUED_BYTES_PER_STREAM} bytes of requests would wait on this stream")
        if self.queued_bytes + size > settings.STREAM_MAX_QUEUED_BYTES:
            raise methods.StreamRefused(
                f"more than {settings.STREAM_MAX_QUEUED_BYTES} bytes of requests would wait on this connection")
        if PROCESS.queued_bytes + size > settings.STREAM_MAX_QUEUED_BYTES_PER_PROCESS:
            logger.warning("Refusing a stream request: %s bytes wait in this process "
                           "(STREAM_MAX_QUEUED_BYTES_PER_PROCESS)", PROCESS.queued_bytes)
            raise methods.StreamRefused("the server has too many stream requests waiting; try again later")

    def _forget(self, stream: _Stream) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]


class _Stream:
    """One open stream: its queue of requests and the task that carries the call."""

    __slots__ = ("_registry", "stream_id", "_url", "_queue", "_task", "_counted", "_held")

    def __init__(self, registry: StreamRegistry, stream_id: str | int, url: str) -> None:
        self._registry = registry
        self.stream_id = stream_id
        self._url = url
        # Each entry is (payload, its size in bytes).
        self._queue: asyncio.Queue[tuple[Any, int]] = asyncio.Queue(maxsize=MAX_QUEUED_REQUESTS)
        self._task: asyncio.Task | None = None
        self._counted = False
        self._held = 0  # bytes of requests queued or being posted, counted in the registry's and PROCESS's

    def start(self) -> None:
        PROCESS.count += 1
        self._counted = True
        self._task = asyncio.create_task(self._run())

    def enqueue(self, payload: Any, size: int) -> None:
        """Queue ``payload`` (``size`` bytes of JSON) as the stream's next request."""
        if self._queue.full():
            raise methods.StreamRefused(f"more than {MAX_QUEUED_REQUESTS} requests are waiting on this stream")
        self._registry._check_bytes(self._held, size)
        self._queue.put_nowait((payload, size))
        self._hold(size)

    def _hold(self, size: int) -> None:
        self._held += size
        self._registry.queued_bytes += size
        PROCESS.hold(size)

    def _release(self, size: int) -> None:
        self._held -= size
        self._registry.queued_bytes -= size
        PROCESS.release(size)

    async def close(self) -> None:
        """Cancel the call (closing its back channel) and wait until it is done."""
        self._registry._forget(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._uncount()  # a task cancelled before its first step never runs its finally
        self._drop_waiting()

    def _drop_waiting(self) -> None:
        """Forget the requests that will never be posted, and every byte still held for the stream."""
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._held:
            self._release(self._held)

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            PROCESS.count -= 1

    async def _run(self) -> None:
        emit = self._registry._emit
        loop = asyncio.get_running_loop()
        idle_seconds, total_seconds = settings.STREAM_IDLE_TIMEOUT, settings.STREAM_MAX_DURATION
        timeout = httpx.Timeout(settings.DIALOGFLOW_TIMEOUT, connect=settings.DIALOGFLOW_CONNECT_TIMEOUT)
        channel = webchannel.Channel(get_client(), self._url, credentials.get_source().authorization_headers,
                                     timeout=timeout)
        total = asyncio.timeout_at(loop.time() + total_seconds)
        idle = asyncio.timeout_at(loop.time() + idle_seconds)

        def active() -> None:
            idle.reschedule(loop.time() + idle_seconds)

        outcome: tuple[str, dict[str, Any]] = ("ended", {"streamId": self.stream_id})
        try:
            async with total, idle:
                await self._carry(channel, active)
        except TimeoutError:
            why = (f"the stream was open longer than {total_seconds:g} s" if total.expired()
                   else f"the stream was idle for {idle_seconds:g} s")
            outcome = ("error", _error(self.stream_id, why))
        except webchannel.WebChannelError as error:
            outcome = ("error", _error(self.stream_id, error.message, error.code))
        except credentials.CredentialsUnavailable as error:
            outcome = ("error", _error(self.stream_id, str(error)))
        except _ConnectionGone:
            return  # after the finally below: nobody is left to tell
        except Exception:
            logger.exception("A stream failed unexpectedly")
            outcome = ("error", _error(self.stream_id, "the stream failed"))
        finally:
            # Also on cancellation (end-stream, disconnect): the back channel's close ends the call upstream.
            self._registry._forget(self)
            self._uncount()
            self._drop_waiting()
            with contextlib.suppress(Exception):
                await channel.close()
        if outcome[0] == "error":
            logger.info("A stream ended with an error (code %s)", outcome[1]["payload"]["error"]["code"])
        with contextlib.suppress(Exception):  # the connection may be gone meanwhile
            await emit(*outcome)

    async def _carry(self, channel: webchannel.Channel, active: Callable[[], None]) -> None:
        """Handshake, the first requests, then requests and responses concurrently until upstream ends."""
        await channel.open()
        active()
        await self._send(channel, self._drain())  # as the sample does: the first request before the back channel
        reader = asyncio.create_task(self._relay(channel, active))
        writer = asyncio.create_task(self._post(channel, active))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            await asyncio.gather(reader, writer, return_exceptions=True)
        for task in done:
            task.result()  # a failure of either ends the stream with its error

    async def _relay(self, channel: webchannel.Channel, active: Callable[[], None]) -> None:
        emit = self._registry._emit
        async for message in channel.responses():
            active()
            logger.debug("Stream response: %s", message)
            try:
                await emit("data", {"streamId": self.stream_id, "payload": methods.snake_to_camel(message)})
            except Exception as error:
                logger.debug("A stream message could not be sent: %s", type(error).__name__)
                raise _ConnectionGone() from None

    async def _post(self, channel: webchannel.Channel, active: Callable[[], None]) -> None:
        while True:
            first = await self._queue.get()
            await self._send(channel, [first, *self._drain()])
            active()

    async def _send(self, channel: webchannel.Channel, requests: list[tuple[Any, int]]) -> None:
        """Post ``requests``; their bytes stay counted until the post is answered (they are held until then)."""
        await channel.send([payload for payload, _ in requests])
        self._release(sum(size for _, size in requests))

    def _drain(self) -> list[tuple[Any, int]]:
        waiting = []
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        return waiting


def _size_of(payload: Any) -> int:
    """The bytes of ``payload`` as JSON, about what the post upstream carries and a fair measure of what it holds."""
    try:
        return len(orjson.dumps(payload))
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits: the standard library encodes it
        return len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def _is_valid_id(stream_id: Any) -> bool:
    if isinstance(stream_id, bool):
        return False
    if isinstance(stream_id, int):
        return abs(stream_id) <= MAX_STREAM_ID_NUMBER
    return isinstance(stream_id, str) and 0 < len(stream_id) <= MAX_STREAM_ID_CHARS


def _checked_id(stream_id: Any) -> str | int:
    if not _is_valid_id(stream_id):
        raise methods.StreamRefused(
            f"streamId must be an integer of at most {MAX_STREAM_ID_NUMBER} or a string of 1 to {MAX_STREAM_ID_CHARS} "
            "characters")
    return stream_id


def _error(stream_id: Any, message: str, code: int = webchannel.DEFAULT_ERROR_CODE) -> dict[str, Any]:
    """A ``stream-error`` argument, shaped as the sample sends it."""
    return {"streamId": stream_id, "payload": {"error": {"message": message, "code": code}}}
