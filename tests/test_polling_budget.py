"""What a long-polling client can make Redis hold for it: its out-queue's budget, and answers that echo no more
than a bound of what it sent.

A session's packets wait in ``aa:eio:{<sid>}:out`` for its next GET. One that POSTs without GETting is closed
once they would pass ``SOCKETIO_POLLING_QUEUE_LIMIT`` packets or ``SOCKETIO_POLLING_QUEUE_BYTES``: its list is
dropped at once, its next GET (or the one waiting) answers CLOSE, and its client recovers with its pid.
Raw Engine.IO over HTTP against a real connector process and a private Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from testing import clients, processes
from testing.engineio_polling import connect_answer, eio_keys, handshake, session_url

LIMIT, BUDGET = 10, 65536
PROJECT = processes.TEST_PROJECT
# A conversation name of 500 characters: each acknowledgement of its join is about 520 bytes.
LONG_CONVERSATION = f"projects/{PROJECT}/conversations/" + "c" * (500 - len(f"projects/{PROJECT}/conversations/"))
DEFAULT_PING_MS = (25000, 20000)


@pytest.fixture(scope="module")
def budget_redis() -> Iterator[processes.RedisAddress]:
    with processes.redis_server(private=True) as address:
        yield address


@pytest.fixture(scope="module")
def counted(budget_redis) -> Iterator[processes.Server]:
    """A connector whose sessions may have 10 packets waiting (and 64 KiB)."""
    with processes.service_server(role="connector", redis=budget_redis, SOCKETIO_POLLING_QUEUE_LIMIT=str(LIMIT),
                                 SOCKETIO_POLLING_QUEUE_BYTES=str(BUDGET)) as server:
        yield server


@pytest.fixture(scope="module")
def sized(budget_redis) -> Iterator[processes.Server]:
    """A connector whose sessions may have 64 KiB waiting (and 1,000 packets)."""
    with processes.service_server(role="connector", redis=budget_redis, SOCKETIO_POLLING_QUEUE_LIMIT="1000",
                                 SOCKETIO_POLLING_QUEUE_BYTES=str(BUDGET)) as server:
        yield server


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


def store(address: processes.RedisAddress) -> redis.Redis:
    return redis.Redis(host=address.host, port=address.port)


def queued(address: processes.RedisAddress, sid: str) -> tuple[int, int]:
    """The packets waiting for the session's next GET, and their bytes."""
    packets = store(address).lrange(f"aa:eio:{{{sid}}}:out", 0, -1)
    return len(packets), sum(len(packet) for packet in packets)


def held_by_sessions(address: processes.RedisAddress) -> int:
    """The bytes Redis holds for every long-polling session's keys."""
    client = store(address)
    return sum(client.memory_usage(key) or 0 for key in client.scan_iter("aa:eio:*"))


async def connected(client: httpx.AsyncClient, url: str, token: str) -> tuple[str, str]:
    """A session connected to ``/``, its CONNECT answer read: its sid and pid."""
    sid = await handshake(client, url, ping_ms=DEFAULT_PING_MS)
    assert (await client.post(session_url(url, sid), content=f'40{{"token":"{token}"}}'.encode())).text == "ok"
    return sid, connect_answer((await client.get(session_url(url, sid))).text)["pid"]


async def recovers(client: httpx.AsyncClient, url: str, token: str, pid: str) -> bool:
    """A new session's CONNECT with ``pid``, as socket.io-client sends it: whether it got that pid back."""
    sid = await handshake(client, url, ping_ms=DEFAULT_PING_MS)
    auth = json.dumps({"token": token, "pid": pid})
    await client.post(session_url(url, sid), content=f"40{auth}".encode())
    return connect_answer((await client.get(session_url(url, sid))).text)["pid"] == pid


async def test_connects_to_unknown_namespaces_without_a_token_hold_no_more_than_the_budget(
    counted, budget_redis
) -> None:
    """Unauthenticated sessions POST CONNECTs to unknown namespaces and never GET. A namespace over 64 characters
    is a protocol error (the session ends), never echoed; short ones are answered CONNECT_ERROR naming them
    until the session's queue would pass its budget, when it is closed and its queue dropped: what Redis holds
    stays under the budget however much is sent."""
    url = counted.http_url
    # 16 packets: the most a POST may carry (python-engineio's Payload.max_decode_packets).
    long_namespaces = "\x1e".join(f"40/{'n' * 56_000}{number}," for number in range(16)).encode()  # 900 kB
    short_namespaces = "\x1e".join(["40/ns,"] * 16).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(4):
            sid = await handshake(client, url, ping_ms=DEFAULT_PING_MS)
            assert (await client.post(session_url(url, sid), content=long_namespaces)).text == "ok"
            assert eio_keys(budget_redis, sid) == []  # ended: a protocol error
            assert (await client.get(session_url(url, sid))).status_code == 400
        for _ in range(4):
            sid = await handshake(client, url, ping_ms=DEFAULT_PING_MS)
            assert (await client.post(session_url(url, sid), content=b"40/ns,\x1e40/ns,")).text == "ok"
            assert queued(budget_redis, sid) == (2, 2 * len('44/ns,{"message":"Invalid namespace"}'))
            for _ in range(5):
                assert (await client.post(session_url(url, sid), content=short_namespaces)).text == "ok"
                assert queued(budget_redis, sid) == (0, 0)
                assert held_by_sessions(budget_redis) < 1024
            assert (await client.get(session_url(url, sid))).text == "1"  # the server's close
            assert eio_keys(budget_redis, sid) == []
    assert "Traceback" not in counted.log()


async def test_a_session_posting_without_polling_is_closed_past_the_packet_limit_and_recovers(
    counted, budget_redis, token
) -> None:
    """A connected session POSTs pings (each answered by a pong) and never GETs: at 10 packets waiting it goes
    on; the POST that would queue an 11th closes it: its queue and conversations go at once (a hash of two fields
    stays, so that its next GET answers CLOSE, not an unknown sid), one log line says why, and its client
    recovers with its pid, its conversation with it."""
    url = counted.http_url
    async with httpx.AsyncClient(timeout=30) as client:
        sid, pid = await connected(client, url, token)
        joined = json.dumps(["join-conversation", LONG_CONVERSATION])
        assert (await client.post(session_url(url, sid), content=f"420{joined}".encode())).text == "ok"
        assert (await client.post(session_url(url, sid), content=b"2\x1e2\x1e2\x1e2")).text == "ok"
        assert (await client.post(session_url(url, sid), content=b"2\x1e2\x1e2\x1e2\x1e2")).text == "ok"
        assert queued(budget_redis, sid)[0] == LIMIT
        assert (await client.post(session_url(url, sid), content=b"2")).text == "ok"
        assert queued(budget_redis, sid) == (0, 0)
        assert set(store(budget_redis).hgetall(f"aa:eio:{{{sid}}}")) == {b"closed", b"pid"}
        assert (await client.post(session_url(url, sid), content=b"2\x1e2")).text == "ok"  # after the close: dropped
        assert queued(budget_redis, sid) == (0, 0)
        assert (await client.get(session_url(url, sid))).text == "1"
        assert eio_keys(budget_redis, sid) == []
        assert await recovers(client, url, token, pid)
    await clients.wait_until(lambda: "(SOCKETIO_POLLING_QUEUE_LIMIT, SOCKETIO_POLLING_QUEUE_BYTES)" in counted.log(),
                             what="the log line")
    assert counted.log().count("left 11 packets") == 1


async def test_a_post_over_the_budget_while_a_poll_waits_closes_it_at_once(counted, budget_redis, token) -> None:
    """One POST whose answers alone pass the budget: the waiting GET answers CLOSE, nothing is queued."""
    url = counted.http_url
    async with httpx.AsyncClient(timeout=30) as client:
        sid, pid = await connected(client, url, token)
        waiting = asyncio.create_task(client.get(session_url(url, sid)))
        await asyncio.sleep(0.5)
        assert (await client.post(session_url(url, sid), content="\x1e".join(["2"] * 16).encode())).text == "ok"
        assert (await waiting).text == "1"
        assert eio_keys(budget_redis, sid) == []
        assert await recovers(client, url, token, pid)


async def test_a_session_posting_without_polling_is_closed_past_the_byte_budget(sized, budget_redis, token) -> None:
    """Acknowledgements of joins of a 500-character conversation (about 512 bytes each), 16 a POST: seven POSTs
    fit in 64 KiB, a poll answers them all; seven more, and the eighth is over: the session is closed."""
    url = sized.http_url
    joins = "\x1e".join(f"42{number}" + json.dumps(["join-conversation", LONG_CONVERSATION]) for number in range(16))
    async with httpx.AsyncClient(timeout=30) as client:
        sid, pid = await connected(client, url, token)
        for _ in range(7):
            assert (await client.post(session_url(url, sid), content=joins.encode())).text == "ok"
        count, size = queued(budget_redis, sid)
        assert count == 7 * 16 and size <= BUDGET < size * 8 / 7
        answer = (await client.get(session_url(url, sid))).text.split("\x1e")
        assert len(answer) == 7 * 16 and answer[0] == f'430[true,"{LONG_CONVERSATION}"]'
        assert store(budget_redis).hget(f"aa:eio:{{{sid}}}", "out_bytes") is None  # the list is empty
        for _ in range(7):
            assert (await client.post(session_url(url, sid), content=joins.encode())).text == "ok"
        assert (await client.post(session_url(url, sid), content=joins.encode())).text == "ok"
        assert queued(budget_redis, sid) == (0, 0)
        assert (await client.get(session_url(url, sid))).text == "1"
        assert await recovers(client, url, token, pid)


async def test_an_unknown_event_and_a_huge_ack_id_are_not_echoed(counted, budget_redis, token) -> None:
    """An unknown event's acknowledgement names its first 64 characters; an ack id past 2^31 - 1 is a protocol
    error (the session ends) rather than an echo."""
    url = counted.http_url
    async with httpx.AsyncClient(timeout=30) as client:
        sid, _ = await connected(client, url, token)
        name = "e" * 64 + "x" * 500_000
        assert (await client.post(session_url(url, sid), content=f'427["{name}"]'.encode())).text == "ok"
        assert queued(budget_redis, sid)[1] < 200
        assert (await client.get(session_url(url, sid))).text == f"437[false,\"unknown event '{'e' * 64}'\"]"
        assert (await client.post(session_url(url, sid), content=f'42{"9" * 99}["x"]'.encode())).text == "ok"
        assert eio_keys(budget_redis, sid) == []  # ended: a protocol error


async def test_a_poll_answers_at_most_the_budget_of_a_list_queued_before_it(counted, budget_redis, token) -> None:
    """A list longer than the budget (queued by a connector without one, before an upgrade of the deployment) is
    answered a budget at a time: ten packets, then the other five, the byte count following."""
    url = counted.http_url
    async with httpx.AsyncClient(timeout=30) as client:
        sid, _ = await connected(client, url, token)
        store(budget_redis).rpush(f"aa:eio:{{{sid}}}:out", *[f"43{number}[true]" for number in range(15)])
        store(budget_redis).hset(f"aa:eio:{{{sid}}}", "out_bytes", sum(len(f"43{n}[true]") for n in range(15)))
        first = (await client.get(session_url(url, sid))).text.split("\x1e")
        assert first == [f"43{number}[true]" for number in range(10)]
        assert queued(budget_redis, sid) == (5, 5 * len("4310[true]"))
        assert int(store(budget_redis).hget(f"aa:eio:{{{sid}}}", "out_bytes")) == 5 * len("4310[true]")
        assert (await client.get(session_url(url, sid))).text.split("\x1e") == [f"43{n}[true]" for n in range(10, 15)]
        assert store(budget_redis).hget(f"aa:eio:{{{sid}}}", "out_bytes") is None
