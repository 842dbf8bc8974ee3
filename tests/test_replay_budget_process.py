"""Many desktops replaying a large history at once, on real processes: the connector holds no more replay pages
than its process budget, and every desktop still gets every event once, in order.

A connector with a small budget (``REPLAY_PROCESS_BYTES`` 256 KiB, four pages
of 64 KiB) takes 30 Socket.IO desktops, 10 plain ``/ws/`` ones and 4 long-polling
sessions, all joining a 1.2 MB history at once (each would hold a page of its
own: 2.8 MB), while
live events are pushed to the conversation; a few more desktops join and go
at once, their replays waiting or being read. The connector's own metrics
(``/metrics``: the most bytes its pages held at once, the waits) show the
pages took turns within the budget and that everything went back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
import socketio
import websockets
from prometheus_client.parser import text_string_to_metric_families

from connector.desktops import offsets
from events.history import Offset
from testing import clients, processes
from testing import fault_scenarios as faults
from testing.engineio_polling import connected_session, conversation_events, session_url

BUDGET = 256 * 1024
PAGE = 64 * 1024
METRICS_TOKEN = "metrics-token-Rb7x2Kq9Tz4Lw8Nc3Vd6Hf1Gj5Mp0Sa"
SETTINGS = {
    "EVENT_HISTORY_MAX_EVENTS": "1000",
    "REPLAY_PAGE_BYTES": str(PAGE),
    "REPLAY_PAGE_EVENTS": "10",
    "REPLAY_PROCESS_BYTES": str(BUDGET),
    "REPLAY_PROCESS_EVENTS": "40",  # four pages of 10 events: the count binds as the bytes do
    "METRICS_TOKEN": METRICS_TOKEN,
}
HISTORY = 60
PADDING = 20_000  # 60 events of 20 KB: 1.2 MB, three to a page
SOCKETIO_DESKTOPS = 30
PLAIN_DESKTOPS = 10
POLLING_DESKTOPS = 4
QUITTERS = 6
LIVE = [f"live-{number}" for number in range(5)]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[processes.Server, processes.Server]]:
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, **SETTINGS) as connector, \
            processes.service_server(role="interceptor", redis=store, **SETTINGS) as interceptor:
        yield connector, interceptor


def scrape(connector: processes.Server) -> dict[str, float]:
    answer = httpx.get(f"{connector.http_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                       timeout=clients.CLIENT_TIMEOUT)
    assert answer.status_code == 200, answer.text
    return {sample.name: sample.value for family in text_string_to_metric_families(answer.text)
            for sample in family.samples if not sample.labels}


class SocketIODesktop:
    """A python-socketio desktop that keeps each event's message id and offset, in arrival order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, str]] = []

        @self.client.on(faults.EVENT)
        async def on_event(payload: dict, offset: str | None = None) -> None:
            self.received.append((payload["message_id"], offset or ""))

    async def join(self, connector: processes.Server, conversation: str) -> None:
        await self.client.connect(connector.http_url, transports=["websocket"], auth={"token": faults.token()},
                                  wait_timeout=faults.WAIT)
        answer = await self.client.call("join-conversation", (conversation, {"history": True}), timeout=faults.WAIT)
        assert answer == (True, conversation)

    async def close(self) -> None:
        await self.client.disconnect()

    @staticmethod
    def seq(offset: str, conversation: str) -> int | None:
        position = offsets.position(offset, conversation)  # a vector of the session's conversations
        return None if position is None else position.seq


class PlainDesktop:
    """A ``/ws/`` desktop (the websockets library) that keeps each event's message id and offset."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self.socket = None
        self.reader: asyncio.Task | None = None

    async def join(self, connector: processes.Server, conversation: str) -> None:
        self.socket = await websockets.connect(f"ws://127.0.0.1:{connector.port}/ws/", max_size=None)
        await self.socket.send(json.dumps({"type": "authenticate", "token": faults.token()}))
        assert json.loads(await self.socket.recv())["type"] == "authenticated"
        await self.socket.send(json.dumps({"type": "join", "conversation": conversation, "history": True}))
        joined = json.loads(await self.socket.recv())
        assert joined["type"] == "joined" and joined["complete"], joined
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for text in self.socket:
            frame = json.loads(text)
            if frame.get("type") == "event":
                self.received.append((frame["payload"]["message_id"], frame["offset"]))

    @staticmethod
    def seq(offset: str, conversation: str) -> int | None:
        position = Offset.parse(offset)
        return None if position is None else position.seq

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.socket.close()


class PollingDesktop:
    """A long-polling Engine.IO session (httpx): each GET's answer is one replay page, read within the budget."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self.client = httpx.AsyncClient(timeout=faults.WAIT)
        self.poller: asyncio.Task | None = None

    async def join(self, connector: processes.Server, conversation: str) -> None:
        url = connector.http_url
        sid = await connected_session(self.client, url, faults.token(), ping_ms=(25000, 20000))
        join = json.dumps(["join-conversation", conversation, {"history": True}])
        assert (await self.client.post(session_url(url, sid), content=f"420{join}".encode())).text == "ok"
        self.poller = asyncio.ensure_future(self._poll(session_url(url, sid)))

    async def _poll(self, url: str) -> None:
        while True:
            answer = await self.client.get(url)
            assert answer.status_code == 200, answer.text
            self.received += [(event[1]["message_id"], event[-1]) for event in conversation_events(answer.text)]
            if "2" in answer.text.split("\x1e"):
                await self.client.post(url, content=b"3")  # the pong

    seq = staticmethod(SocketIODesktop.seq)

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
        await self.client.aclose()


async def test_many_desktops_replaying_at_once_hold_no_more_than_the_process_budget(servers) -> None:
    connector, interceptor = servers
    (conversation,) = faults.conversations(1)
    pubsub = faults.PubSub(interceptor, faults.Tally("history"))
    history = [f"old-{number:03d}" for number in range(HISTORY)]
    try:
        await faults.push_concurrently(pubsub, [(conversation, message_id) for message_id in history],
                                       concurrency=4, padding=PADDING)
        assert pubsub.tally.acknowledged == HISTORY
        before = scrape(connector)
        desktops = ([SocketIODesktop() for _ in range(SOCKETIO_DESKTOPS)] + [PlainDesktop() for _ in range(PLAIN_DESKTOPS)]
                    + [PollingDesktop() for _ in range(POLLING_DESKTOPS)])
        quitters = [SocketIODesktop() for _ in range(QUITTERS // 2)] + [PlainDesktop() for _ in range(QUITTERS // 2)]

        async def join_and_quit(desktop) -> None:
            await desktop.join(connector, conversation)
            await desktop.close()  # its replay waiting for the budget, or being read: it gives its share back

        joining = asyncio.gather(*(desktop.join(connector, conversation) for desktop in desktops),
                                 *(join_and_quit(desktop) for desktop in quitters))
        await asyncio.sleep(0.2)
        for message_id in LIVE:  # while the replays go on
            await pubsub.deliver(conversation, message_id, padding=100)
        await joining
        expected = HISTORY + len(LIVE)
        await faults.settle(lambda: all(len(desktop.received) >= expected for desktop in desktops),
                            timeout=faults.WAIT * 2)
        for desktop in desktops:
            message_ids = [message_id for message_id, _ in desktop.received]
            assert sorted(message_ids[:HISTORY]) == history and message_ids[HISTORY:] == LIVE, message_ids
            seqs = [desktop.seq(offset, conversation) for _, offset in desktop.received]
            assert seqs == list(range(1, expected + 1)), seqs
        after = scrape(connector)
    finally:
        await pubsub.close()
        for desktop in [*desktops, *quitters]:
            with contextlib.suppress(Exception):  # closed already
                await desktop.close()
    # The pages took turns: at most the budget at once (with 40 desktops wanting 64 KiB each), near it at times.
    assert BUDGET // 2 < after["aa_replay_reserved_bytes_peak"] <= BUDGET, after
    assert after["aa_replay_budget_wait_seconds_count"] > before.get("aa_replay_budget_wait_seconds_count", 0)
    # Written or given back, every share came back, the quitters' too.
    assert after["aa_replay_reserved_bytes"] == 0 and after["aa_replay_reserved_events"] == 0, after
    assert "Traceback" not in connector.log()
