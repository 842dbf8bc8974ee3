"""Where a long-poll waits in this process: on its conversations' events (the hub) and on its session's wake.

A ``Poller`` is this process's hub member for one polling session while its
GETs come here: it joins the hub (``connector.fanout``) for the session's
conversations, so a new event ends the wait, and stays a member for
``LINGER_SECONDS`` after a GET, because the next GET of an active session
comes right away (here, or elsewhere through the balancer): the process
neither resubscribes per poll nor makes the presence keys flicker.

POSTs that queue packets publish on the session's wake channel; the process
reads every session's wake through one pattern subscription of its own,
made on first use, so a waiting poll costs no Redis connection or command.
After that subscription is lost and restored, every waiting poll is woken,
since a wake may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from common.loop_local import LoopLocal
from connector.fanout import IDLE_CHECK_SECONDS, RECONNECT_DELAYS, get_hub
from connector.polling.store import wake_channel_prefix
from events import redis_client
from events.history import Event

logger = logging.getLogger(__name__)

LINGER_SECONDS = 5.0
# At most one warning per this many seconds while polls are refused for the bound.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0


class Poller:
    """One polling session as this process's hub sees it."""

    __slots__ = ("sid", "conversations", "woken_by_session", "_signal", "_linger", "waiting")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.conversations: set[str] = set()
        self.woken_by_session = False
        self._signal = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self.waiting = False

    def event_arrived(self, event: Event) -> None:
        self._signal.set()

    def wake(self) -> None:
        self.woken_by_session = True
        self._signal.set()

    def rearm(self) -> None:
        """Forget what woke it: what follows is read afresh from Redis."""
        self.woken_by_session = False
        self._signal.clear()

    async def wait(self, timeout: float) -> None:
        """Until an event of its conversations or its session's wake arrives (since the last ``rearm``),
        or ``timeout`` seconds."""
        if timeout <= 0 or self._signal.is_set():
            return
        try:
            await asyncio.wait_for(self._signal.wait(), timeout)
        except asyncio.TimeoutError:
            pass


def _glob_escape(text: str) -> str:
    return "".join("\\" + character if character in "*?[]\\" else character for character in text)


class Pollers:
    """This process's pollers, the count of GETs waiting, and the wake subscription."""

    def __init__(self) -> None:
        self._members: dict[str, Poller] = {}
        self.waiting = 0
        self._last_refusal_logged = -REFUSAL_LOG_INTERVAL_SECONDS
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task | None = None
        self._prefix: str | None = None
        self._subscribed: asyncio.Future[None] | None = None

    async def attach(self, sid: str) -> Poller | None:
        """The session's poller, counted as waiting; None when ``SOCKETIO_MAX_WAITING_POLLS`` GETs already
        wait here (logged at most once a minute)."""
        if self.waiting >= settings.SOCKETIO_MAX_WAITING_POLLS:
            now = time.monotonic()
            if now - self._last_refusal_logged >= REFUSAL_LOG_INTERVAL_SECONDS:
                self._last_refusal_logged = now
                logger.warning("Refusing long-polls: %s already wait here (SOCKETIO_MAX_WAITING_POLLS)", self.waiting)
            return None
        poller = self._members.get(sid)
        if poller is None:
            poller = self._members[sid] = Poller(sid)
        elif poller._linger is not None:
            poller._linger.cancel()
            poller._linger = None
        poller.waiting = True
        self.waiting += 1
        poller.rearm()
        try:
            await self._subscribe_wakes()
        except BaseException:
            self.detach(poller)
            raise
        return poller

    def detach(self, poller: Poller) -> None:
        """The GET answered: keep the hub membership ``LINGER_SECONDS`` for the session's next one."""
        if poller.waiting:
            poller.waiting = False
            self.waiting -= 1
        poller._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._expire, poller)

    async def watch(self, poller: Poller, conversations: set[str]) -> None:
        """Make the hub hand ``poller`` the events of ``conversations`` (and of no other)."""
        hub = get_hub()
        for conversation in poller.conversations - conversations:
            poller.conversations.discard(conversation)
            await hub.leave(conversation, poller)
        for conversation in conversations - poller.conversations:
            poller.conversations.add(conversation)  # before the await: a failure still leaves it
            await hub.join(conversation, poller)

    def _expire(self, poller: Poller) -> None:
        if self._members.get(poller.sid) is poller and not poller.waiting:
            del self._members[poller.sid]
            if poller.conversations:
                asyncio.ensure_future(self._leave_all(poller))

    @staticmethod
    async def _leave_all(poller: Poller) -> None:
        hub = get_hub()
        conversations, poller.conversations = poller.conversations, set()
        for conversation in conversations:
            try:
                await hub.leave(conversation, poller)
            except Exception as error:
                logger.warning("Could not leave a conversation: %s: %s", type(error).__name__, error)

    # --- the wake subscription ---------------------------------------------------------------

    async def _subscribe_wakes(self) -> None:
        prefix = wake_channel_prefix()
        if self._prefix == prefix and self._subscribed is not None:
            await asyncio.wait_for(asyncio.shield(self._subscribed), settings.EVENT_STORE_TIMEOUT)
            return
        if self._pubsub is None:
            self._pubsub = redis_client.get_subscriber().pubsub()
        if self._prefix is not None:
            await self._pubsub.punsubscribe(_glob_escape(self._prefix) + "*")
        self._prefix = prefix
        subscribed = self._subscribed = asyncio.get_running_loop().create_future()
        try:
            await self._pubsub.psubscribe(_glob_escape(prefix) + "*")
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read())
            await asyncio.wait_for(asyncio.shield(subscribed), settings.EVENT_STORE_TIMEOUT)
        except BaseException:
            if self._subscribed is subscribed:
                self._prefix = self._subscribed = None
            raise

    async def _read(self) -> None:
        failures = 0
        while self._pubsub is not None:
            try:
                if failures:
                    await self._pubsub.connect()  # re-subscribes the pattern
                    logger.warning("Long-polling wake subscription restored after %s failed attempt(s)", failures)
                    failures = 0
                    for poller in list(self._members.values()):
                        poller.wake()
                message = await self._pubsub.get_message(timeout=IDLE_CHECK_SECONDS)
                if message is None:
                    await self._pubsub.ping()
                else:
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                if not failures:
                    logger.warning("Long-polling wake subscription lost (%s: %s); reconnecting",
                                   type(error).__name__, error)
                await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
                failures += 1

    def _handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "psubscribe":
            if self._subscribed is not None and not self._subscribed.done():
                self._subscribed.set_result(None)
            return
        if kind != "pmessage" or self._prefix is None:
            return
        channel = message["channel"]
        channel = channel.decode("utf-8") if isinstance(channel, bytes) else channel
        poller = self._members.get(channel[len(self._prefix):])
        if poller is not None:
            poller.wake()


async def _close(pollers: Pollers) -> None:
    if pollers._reader is not None:
        pollers._reader.cancel()
    pubsub, pollers._pubsub = pollers._pubsub, None
    if pubsub is not None:
        await pubsub.aclose()


_pollers: LoopLocal[Pollers] = LoopLocal(Pollers, close=_close)


def get_pollers() -> Pollers:
    """The running event loop's pollers (one per process under the ASGI server)."""
    return _pollers.get()
