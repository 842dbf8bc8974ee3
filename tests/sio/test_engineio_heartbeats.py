"""The shared heartbeat timer of ``connector.desktops.engineio.session``: many sessions, one timer, none holding up another.

The sessions here run on a transport that records frames in memory (the
WebSocket consumer's tests, ``test_socketio_session.py``, drive the same
session over the real ASGI application).
"""

from __future__ import annotations

import asyncio

from connector.desktops import close_codes
from connector.desktops.engineio import session as engineio


class RecordingTransport:
    """A transport that keeps what it is sent; ``stuck`` makes every send after the OPEN wait until released."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.frames: list[str] = []
        self.closed: int | None = None
        self.release = asyncio.Event()
        self.stuck = stuck

    async def send_frame(self, frame: str) -> None:
        if self.stuck and self.frames:
            await self.release.wait()
        self.frames.append(frame)

    async def close_transport(self, code: int, reason: str | None = None) -> None:
        self.closed = code


async def _until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def noop(payload: str) -> None:
    return None


async def open_sessions(*transports: RecordingTransport) -> list[engineio.EngineIOSession]:
    """An opened session on each of ``transports``, in order."""
    sessions = [engineio.EngineIOSession(transport, on_message=noop) for transport in transports]
    for session in sessions:
        await session.open()
    return sessions


async def test_sessions_share_one_timer_and_each_answered_ping_comes_again(settings) -> None:
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 1
    transports = [RecordingTransport() for _ in range(50)]
    sessions = await open_sessions(*transports)
    assert engineio.heartbeats().scheduled == 50
    await _until(lambda: all(transport.frames[1:] == ["2"] for transport in transports))
    for session in sessions:
        await session.receive("3")
    await _until(lambda: all(transport.frames[1:] == ["2", "2"] for transport in transports))
    assert all(transport.closed is None for transport in transports)
    for session in sessions:
        session.stop()
    assert engineio.heartbeats().scheduled == 0


async def test_unanswered_ping_closes_only_its_session(settings) -> None:
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 1
    silent, answering = RecordingTransport(), RecordingTransport()
    silent_session, answering_session = await open_sessions(silent, answering)
    await _until(lambda: answering.frames[1:] == ["2"])
    await answering_session.receive("3")
    await _until(lambda: silent.closed is not None)
    assert silent.closed == close_codes.NORMAL
    assert answering.closed is None
    answering_session.stop()


async def test_a_client_that_does_not_read_holds_up_no_other_ping(settings) -> None:
    """A ping stuck on one connection's full buffer: the other sessions are still pinged on time."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 5
    stuck, fine = RecordingTransport(stuck=True), RecordingTransport()
    first, second = await open_sessions(stuck, fine)
    await _until(lambda: fine.frames[1:] == ["2"])
    assert stuck.frames[1:] == []
    stuck.release.set()
    await _until(lambda: stuck.frames[1:] == ["2"])
    first.stop()
    second.stop()


async def test_a_later_session_is_pinged_before_an_earlier_ones_pong_deadline(settings) -> None:
    """The timer follows the earliest due session, not the deadline the last ping set."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 5
    early, late = RecordingTransport(), RecordingTransport()
    (early_session,) = await open_sessions(early)
    await asyncio.sleep(0.5)
    (late_session,) = await open_sessions(late)
    await _until(lambda: early.frames[1:] == ["2"])
    await _until(lambda: late.frames[1:] == ["2"] or early.closed is not None, timeout=10)
    # early never answers: it is closed at its deadline, 5 s after its ping; late's ping came long before.
    assert late.frames[1:] == ["2"] and early.closed is None
    early_session.stop()
    late_session.stop()
