"""Where a long-poll waits in this process: on its conversations' events (the hub) and on its session's wake.

A ``Poller`` is one polling session as this process sees it while its GETs
come here. The process's ``Pollers`` is the hub's (``connector.desktops.fanout``) one
member for every conversation a poller here watches, and hands each event to
those pollers, so that a new event ends their wait. The hub counts that member
as no desktop (``Hub.relay``): each poll's answer counts the events it carries
(``aa_event_deliveries_total``), on whichever process serves it.

A poller stays ``LINGER_SECONDS`` after a GET, because the next GET of an
active session comes right away (here, or elsewhere through the balancer):
the process neither resubscribes per poll nor makes the presence keys
flicker. A wake for a lingering poller (its session changed: a join, a leave,
a close) makes it re-read the session at once and drop the conversations the
session left, or drop everything when the session is gone, so that the
presence keys (``connector.desktops.presence``) follow the session's conversations
without waiting for the linger to end.

The process's instance record (``connector.desktops.instances``) stays while it has
pollers, so that the operators' view lists the instance.

While a GET of a session connected to ``/`` waits here, it counts in
``aa_desktops_connected{transport="polling"}``: a connected polling client
has a GET outstanding nearly all the time, and only one at a time across
processes, so the sum over processes is the number of polling desktops.

POSTs that queue packets publish on the session's sharded wake channel
(``store.wake_channel``, in the session's slot); the process holds one
sharded subscription per poller it has, on its one wake subscription
(``connector.desktops.subscriptions``, the reader behind the hub too), made
when the poller is and dropped when it goes, so a waiting poll costs no
Redis connection or command. Why a channel per session rather than one per
process carrying the sid: the script that changes the session publishes the
wake in the same atomic step, which a cluster allows only on a channel of
the session's own slot (a process's channel would cost every wake a second
round trip, to another shard, outside the script); and the wake reaches
every process holding a poller of the session, the one its GET waits on and
those its earlier GETs went to through a round-robin balancer, whose
lingering pollers leave the conversations the session left at once. The
price is one SSUBSCRIBE and one SUNSUBSCRIBE per session per process over a
poller's life (not per poll: a poller lingers between GETs), as the hub has
one per conversation; a classic pattern would be one subscription per
process, but a cluster broadcasts every classic message to every node.
The wake of a session its client closed says so (``store.CLIENT_CLOSED``):
its waiting poll answers a noop rather than CLOSE. After the subscription is
lost and restored (also when a cluster moved a wake channel's slot), every
poller is woken, since a wake may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time

from django.conf import settings
from redis.exceptions import RedisError

from common.loop_local import LoopLocal
from connector.desktops.engineio import store
from connector.desktops.fanout import get_hub
from connector.desktops.instances import get_registry
from connector.desktops.subscriptions import SHARD, Subscription
from events import metrics
from events.history import Event

logger = logging.getLogger(__name__)

LINGER_SECONDS = 5.0
# At most one warning per this many seconds while polls are refused for the bound.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0
TRANSPORT = "polling"


class Poller:
    """One polling session as this process's hub sees it."""

    __slots__ = ("sid", "channel", "conversations", "woken_by_session", "_signal", "_linger", "waiting", "counted",
                 "ended", "was_connected", "closed_by_client")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.channel = store.wake_channel(sid)  # (the key prefix may change while the process runs: tests)
        self.conversations: set[str] = set()
        self.woken_by_session = False
        self._signal = asyncio.Event()
        self._linger: asyncio.TimerHandle | None = None
        self.waiting = 0  # its GETs waiting here (a second one, refused, is here for a moment too)
        self.counted = False  # in aa_desktops_connected
        self.ended = False  # its GET ended the session: nothing to linger for
        self.was_connected = False  # a GET here found its session connected to "/" (authenticated)
        self.closed_by_client = False  # its client ended the session (a CLOSE packet): its waiting GET answers a noop

    def event_arrived(self, event: Event) -> None:
        self._signal.set()

    def wake(self, *, closed_by_client: bool = False) -> None:
        self.woken_by_session = True
        self.closed_by_client = self.closed_by_client or closed_by_client
        self._signal.set()

    def interrupt(self) -> None:
        """End its wait for a reason of the GET's own (its client went away): the GET looks at why."""
        self._signal.set()

    def rearm(self) -> None:
        """Forget what woke it: what follows is read afresh from Redis."""
        self.woken_by_session = False
        self._signal.clear()

    def count_as_desktop(self, connected: bool) -> None:
        """Its session is (still) connected to ``/``, or not: count this waiting GET as a desktop accordingly."""
        self.was_connected = self.was_connected or connected
        if connected != self.counted:
            self.counted = connected
            (metrics.desktop_connected if connected else metrics.desktop_disconnected)(TRANSPORT)

    async def wait(self, timeout: float) -> None:
        """Until an event of its conversations or its session's wake arrives (since the last ``rearm``),
        or ``timeout`` seconds."""
        if timeout <= 0 or self._signal.is_set():
            return
        try:
            await asyncio.wait_for(self._signal.wait(), timeout)
        except asyncio.TimeoutError:
            pass


class Pollers:
    """This process's pollers, the count of GETs waiting, the hub membership for them, and the wake
    subscription."""

    def __init__(self) -> None:
        self._members: dict[str, Poller] = {}  # sid -> poller
        self._by_channel: dict[str, Poller] = {}  # wake channel -> poller
        self._watchers: dict[str, set[Poller]] = {}  # conversation -> the pollers watching it
        self.waiting = 0
        self._last_refusal_logged = -REFUSAL_LOG_INTERVAL_SECONDS
        self._wakes = Subscription("Long-polling wake subscription", logger, received=self._wake_received,
                                   restored=self._wakes_restored, log_attempts=False)
        self._refreshing: set[asyncio.Task] = set()

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
        new = poller is None
        if poller is None:
            poller = self._members[sid] = Poller(sid)
            self._by_channel[poller.channel] = poller
            get_registry().polling_sessions(len(self._members))
        elif poller._linger is not None:
            poller._linger.cancel()
            poller._linger = None
        poller.waiting += 1
        self.waiting += 1
        if poller.waiting == 1:
            poller.rearm()  # else its first GET still waits, and what woke it is its own
        try:
            # Confirmed before the GET reads its session: no wake published after that read is missed.
            if new:
                await self._wakes.subscribe(poller.channel, SHARD)
            else:
                await self._wakes.confirmed(poller.channel, SHARD)
        except BaseException:
            if new:
                poller.ended = True  # not subscribed: it goes now, so the session's next GET subscribes again
            self.detach(poller)
            raise
        return poller

    def interrupt_waiting(self) -> int:
        """End the wait of every GET waiting here (the process drains: ``connector.desktops.drain``); how many."""
        woken = 0
        for poller in self._members.values():
            if poller.waiting:
                poller.interrupt()
                woken += 1
        return woken

    def connected(self, sid: str) -> bool:
        """Whether a GET here found the session connected to ``/``: its next GETs (while its poller lingers) are
        not counted as unauthenticated (``connector.desktops.preauth``) without asking Redis."""
        poller = self._members.get(sid)
        return poller is not None and poller.was_connected

    def detach(self, poller: Poller) -> None:
        """The GET answered: keep the hub membership ``LINGER_SECONDS`` for the session's next one (none when
        the GET ended the session)."""
        poller.waiting -= 1
        self.waiting -= 1
        if poller.waiting:
            return  # its other GET still waits
        poller.count_as_desktop(False)
        if poller.ended:
            self._expire(poller)
        else:
            poller._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self._expire, poller)

    async def watch(self, poller: Poller, conversations: set[str]) -> None:
        """Make the hub hand ``poller`` the events of ``conversations`` (and of no other)."""
        for conversation in poller.conversations - conversations:
            await self._unwatch(poller, conversation)
        for conversation in conversations - poller.conversations:
            poller.conversations.add(conversation)
            self._watchers.setdefault(conversation, set()).add(poller)
            hub = get_hub()
            hub.relay = self
            try:
                # Once this returns, the hub hands this process every later event of the conversation
                # (a member already: it waits for the subscription another poller began, if any).
                await hub.join(conversation, self)
            except BaseException:
                # The membership may be gone or half made: leave it, and every poller here watching the
                # conversation joins it again at its next GET.
                for watcher in self._watchers.pop(conversation, ()):
                    watcher.conversations.discard(conversation)
                self._run(self._leave_unwatched(conversation))
                raise

    def event_arrived(self, event: Event) -> None:
        """An event of a conversation pollers here watch (from the hub): end their wait."""
        for poller in self._watchers.get(event.conversation, ()):
            poller.event_arrived(event)

    async def _unwatch(self, poller: Poller, conversation: str) -> None:
        poller.conversations.discard(conversation)
        watchers = self._watchers.get(conversation)
        if watchers is None or poller not in watchers:
            return
        watchers.discard(poller)
        if not watchers:
            del self._watchers[conversation]
            await get_hub().leave(conversation, self)

    async def _leave_unwatched(self, conversation: str) -> None:
        if conversation not in self._watchers:
            try:
                await get_hub().leave(conversation, self)
            except Exception as error:
                logger.warning("Could not leave a conversation: %s: %s", type(error).__name__, error)

    def _expire(self, poller: Poller) -> None:
        if self._members.get(poller.sid) is poller and not poller.waiting:
            del self._members[poller.sid]
            self._by_channel.pop(poller.channel, None)
            self._wakes.discard(poller.channel, SHARD)
            self._run(self._unsubscribe(poller.channel))
            get_registry().polling_sessions(len(self._members))
            if poller._linger is not None:
                poller._linger.cancel()
                poller._linger = None
            if poller.conversations:
                self._run(self._unwatch_all(poller, set(poller.conversations)))

    async def _unwatch_all(self, poller: Poller, conversations: set[str]) -> None:
        for conversation in conversations:
            try:
                await self._unwatch(poller, conversation)
            except Exception as error:
                logger.warning("Could not leave a conversation: %s: %s", type(error).__name__, error)

    def _woken(self, poller: Poller, *, closed_by_client: bool = False) -> None:
        poller.wake(closed_by_client=closed_by_client)
        if not poller.waiting:
            self._run(self._refresh(poller))

    async def _refresh(self, poller: Poller) -> None:
        """A lingering poller's session changed: keep only the conversations it still has joined."""
        try:
            state = await store.load(poller.sid)
        except (RedisError, OSError) as error:
            logger.warning("Could not read a long-polling session: %s: %s", type(error).__name__, error)
            return
        if poller.waiting or self._members.get(poller.sid) is not poller:
            return  # a GET came meanwhile: it watches what the session has now
        if state is None:
            self._expire(poller)
        else:
            await self._unwatch_all(poller, poller.conversations - set(state.joined))

    def _run(self, work) -> None:
        task = asyncio.ensure_future(work)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    # --- the wake subscription ---------------------------------------------------------------

    async def _unsubscribe(self, channel: str) -> None:
        try:
            await self._wakes.unsubscribe(channel, SHARD)
        except (RedisError, OSError) as error:
            # Dropped at the subscription's next restore (it unsubscribes what is no longer wanted).
            logger.debug("Could not unsubscribe a wake channel: %s: %s", type(error).__name__, error)

    async def _wakes_restored(self) -> None:
        """The subscription's connection was made again, the channels subscribed again: wakes may have been
        missed meanwhile, and sessions may be gone (a restarted Redis), so every poller looks again."""
        logger.warning("Long-polling wake subscription restored after its connection was lost")
        for poller in list(self._members.values()):
            self._woken(poller)

    def _wake_received(self, channel: str, data: bytes) -> None:
        poller = self._by_channel.get(channel)
        if poller is not None:
            self._woken(poller, closed_by_client=data in (store.CLIENT_CLOSED, store.CLIENT_CLOSED.encode()))


async def _close(pollers: Pollers) -> None:
    await pollers._wakes.close()


_pollers: LoopLocal[Pollers] = LoopLocal(Pollers, close=_close)


def get_pollers() -> Pollers:
    """The running event loop's pollers (one per process under the ASGI server)."""
    return _pollers.get()
