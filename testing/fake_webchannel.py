"""A fake of Google's WebChannel (BrowserChannel ``VER=8``) endpoint for streaming calls: a real server on 127.0.0.1.

It speaks the protocol as ``connector.desktops.streaming.webchannel`` documents it and
checks what it is sent: the handshake (``MODE=init``, body ``count=0``),
request posts (the session's ``SID`` and ``gsessionid``, ``RID`` rising,
``ofs`` continuing from the last post, ``count`` matching the
``reqN___data__`` fields), the back channel ``GET`` (``RID=rpc``, ``CI=0``,
``TYPE=xmlhttp``), and a Bearer token that ``valid_tokens`` lists. Every
request posted is answered with ``replies_per_request`` response messages
on the session's back channel, ``cadence_seconds`` apart, each stamped with
the fake's ``time.monotonic()`` as it is written (``sent_at``), so a caller in
the same process measures what the connector adds. Attributes script the
rest: a slow handshake, an error frame, an abrupt close, a clean end, and
holding every back channel silent while many are open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from testing.fake_server import serve_app


def frame(entries: list[Any]) -> str:
    """One back-channel frame: the length in UTF-16 code units, a newline, the JSON array."""
    text = json.dumps(entries, ensure_ascii=False)
    return f"{len(text.encode('utf-16-le')) // 2}\n{text}"


@dataclass
class Session:
    """One WebChannel session as the fake saw it."""

    sid: str
    gsessionid: str
    path: str
    rid: int
    requests: list[Any] = field(default_factory=list)  # every request message posted, in order
    posts: int = 0
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    next_index: int = 1
    back_channels: int = 0  # GETs opened
    frames_sent: int = 0
    closed_by_client: bool = False  # the back channel's connection was closed by the caller
    ended_by_fake: bool = False


@dataclass
class FakeWebChannel:
    """State of the running fake; tests set the attributes, the server thread reads them."""

    valid_tokens: Callable[[], Collection[str]]
    port: int = 0
    loop: asyncio.AbstractEventLoop | None = None
    handshake_delay: float = 0.0
    handshake_status: int = 200
    replies_per_request: int = 1
    cadence_seconds: float = 0.0
    error_after: int | None = None  # after this many response frames of a session, an error frame
    error: dict[str, Any] = field(default_factory=lambda: {"code": 3, "message": "fake invalid argument",
                                                            "status": "INVALID_ARGUMENT"})
    abrupt_close_after: int | None = None  # after this many frames, drop the connection mid-body
    end_after: int | None = None  # after this many frames, end the back channel cleanly
    hold: bool = False  # while set, back channels are opened but send nothing (for at most 60 s)
    extra_reply: dict[str, Any] = field(default_factory=dict)  # merged into every reply
    sessions: dict[str, Session] = field(default_factory=dict)
    open_back_channels: int = 0
    max_open_back_channels: int = 0
    refused: list[str] = field(default_factory=list)  # why requests were refused (400/401/404)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        """Base URL for ``DIALOGFLOW_WEBCHANNEL_ROOT``."""
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Answer at once with one reply per request, no errors, forget every session."""
        self.handshake_delay, self.handshake_status = 0.0, 200
        self.replies_per_request, self.cadence_seconds = 1, 0.0
        self.error_after = self.abrupt_close_after = self.end_after = None
        self.hold = False
        self.extra_reply = {}
        self.sessions.clear()
        # A gauge, not a record: back channels of an earlier test may still be closing.
        self.max_open_back_channels = self.open_back_channels
        self.refused.clear()

    def session_with(self, predicate: Callable[[Session], bool]) -> Session | None:
        """The first session ``predicate`` holds for (read from the test's thread)."""
        return next((s for s in list(self.sessions.values()) if predicate(s)), None)

    # --- the protocol ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.valid_tokens():
            return self._refuse(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        if query.get("VER") != "8":
            return self._refuse(400, "VER=8 is required", "INVALID_ARGUMENT")
        if request.method == "POST" and query.get("MODE") == "init":
            return await self._handshake(request)
        session = self.sessions.get(query.get("SID", ""))
        if session is None or query.get("gsessionid") != session.gsessionid or request.path != session.path:
            return self._refuse(404, "Unknown SID", "NOT_FOUND")
        if request.method == "POST":
            return await self._post(request, session)
        if request.method == "GET" and query.get("RID") == "rpc":
            if (query.get("CI"), query.get("TYPE"), query.get("AID")) != ("0", "xmlhttp", "0"):
                return self._refuse(400, "back channel needs AID=0&CI=0&TYPE=xmlhttp", "INVALID_ARGUMENT")
            return await self._back_channel(request, session)
        return self._refuse(400, "not a WebChannel request", "INVALID_ARGUMENT")

    async def _handshake(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        if (await request.text()) != "count=0" or query.get("X-HTTP-Session-Id") != "gsessionid":
            return self._refuse(400, "handshake must post count=0 with X-HTTP-Session-Id=gsessionid",
                                "INVALID_ARGUMENT")
        if self.handshake_delay:
            await asyncio.sleep(self.handshake_delay)
        if self.handshake_status != 200:
            return self._refuse(self.handshake_status, "fake handshake refusal", "PERMISSION_DENIED")
        number = next(self._ids)
        session = Session(sid=f"SID-{number}", gsessionid=f"gsess-{number}", path=request.path,
                          rid=int(query.get("RID", "0")))
        self.sessions[session.sid] = session
        return web.Response(text=frame([[0, ["c", session.sid, "", 8, 14]]]),
                            headers={"X-HTTP-Session-Id": session.gsessionid, "Content-Type": "text/plain"})

    async def _post(self, request: web.Request, session: Session) -> web.Response:
        query = request.rel_url.query
        form = parse_qs(await request.text(), keep_blank_values=True)
        try:
            rid, count, ofs = int(query["RID"]), int(form["count"][0]), int(form["ofs"][0])
            messages = [json.loads(form[f"req{i}___data__"][0]) for i in range(count)]
        except (KeyError, ValueError, IndexError) as error:
            return self._refuse(400, f"malformed request post: {error!r}", "INVALID_ARGUMENT")
        if query.get("AID") != "0" or rid <= session.rid or ofs != len(session.requests) or len(form) != count + 2:
            return self._refuse(400, f"bad RID {rid}/ofs {ofs}/count {count} after RID {session.rid}",
                                "INVALID_ARGUMENT")
        session.rid = rid
        session.posts += 1
        for message in messages:
            number = len(session.requests)
            session.requests.append(message)
            for reply in range(self.replies_per_request):
                session.outbox.put_nowait({"request_number": number, "reply_number": reply, "echo_request": message,
                                           **self.extra_reply})
        return web.Response(text=frame([1, session.next_index - 1, 0]))

    async def _back_channel(self, request: web.Request, session: Session) -> web.StreamResponse:
        session.back_channels += 1
        self.open_back_channels += 1
        self.max_open_back_channels = max(self.max_open_back_channels, self.open_back_channels)
        response = web.StreamResponse(headers={"Content-Type": "application/javascript; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            deadline = time.monotonic() + 60
            while self.hold and time.monotonic() < deadline:
                if _gone(request):
                    session.closed_by_client = True
                    return response
                await asyncio.sleep(0.02)
            last_sent = 0.0
            while True:
                if session.frames_sent == self.end_after:
                    session.ended_by_fake = True
                    await response.write_eof()
                    return response
                if session.frames_sent == self.abrupt_close_after:
                    session.ended_by_fake = True
                    assert request.transport is not None
                    request.transport.abort()  # no final chunk: the body is cut short
                    return response
                if session.frames_sent == self.error_after:
                    await response.write(frame([[session.next_index, [{"error": self.error}]]]).encode())
                    session.ended_by_fake = True
                    await response.write_eof()
                    return response
                message = await self._next(request, session)
                if message is None:
                    session.closed_by_client = True
                    return response
                wait = last_sent + self.cadence_seconds - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                last_sent = time.monotonic()
                message["sent_at"] = last_sent
                await response.write(frame([[session.next_index, [message]]]).encode())
                session.next_index += 1
                session.frames_sent += 1
        except (ConnectionResetError, ConnectionError):
            session.closed_by_client = True
            return response
        finally:
            self.open_back_channels -= 1

    @staticmethod
    async def _next(request: web.Request, session: Session) -> dict[str, Any] | None:
        """The next queued reply, or None once the caller has closed the connection."""
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(session.outbox.get(), 0.05)
            if _gone(request):
                return None

    def _refuse(self, status: int, message: str, name: str) -> web.Response:
        self.refused.append(f"{status} {message}")
        return web.json_response({"error": {"code": status, "message": message, "status": name}}, status=status)


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


@contextlib.contextmanager
def serve(valid_tokens: Callable[[], Collection[str]]) -> Iterator[FakeWebChannel]:
    """Run a ``FakeWebChannel`` on a free loopback port until the block ends."""
    fake = FakeWebChannel(valid_tokens=valid_tokens)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    with serve_app(app, name="fake-webchannel") as running:
        fake.port, fake.loop = running.port, running.loop
        yield fake
