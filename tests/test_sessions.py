"""Recovery session records (``connector.desktops.sessions``): one token keeps at most ``SOCKETIO_SESSIONS_PER_TOKEN``.

A client that connects over and over with one token makes a record each time; the token's index evicts the
ended records, then the oldest, so the records it holds stay bounded. Driven through the real application
(``WebsocketCommunicator``) on the test Redis, standalone and a Redis Cluster (where a token's records and index
share one slot: each pid begins with the token's hash tag), and once without Redis (development mode).
"""

from __future__ import annotations

import json

import pytest
from socketio import packet as sio

from connector import tokens
from connector.desktops import sessions
from connector.desktops.socketio.application import start_session
from events import redis_client, redis_keys
from testing.raw_socketio import SHORT_NAME, SocketIOTestClient, client_factory

LIMIT = 3

pytestmark = pytest.mark.usefixtures("redis_kind")


async def connect_once(token: str, auth: dict | None = None) -> str:
    """Connect with ``token`` (and ``auth``), end the connection (its record stays for recovery); the pid."""
    async with client_factory() as make:
        client: SocketIOTestClient = make()
        await client.open()
        await client.send("40" + json.dumps({"token": token, **(auth or {})}))
        packet = await client.receive_packet()
        assert packet.packet_type == sio.CONNECT
        return packet.data["pid"]


async def live(pids: list[str]) -> list[str]:
    return [pid for pid in pids if await sessions.load(pid) is not None]


async def test_a_token_keeps_at_most_its_bound_of_records_the_oldest_evicted(settings) -> None:
    """Five connections with one token, bound three: the three newest records are left, the index holds three;
    the evicted session cannot be recovered (a new pid), the newest can; another token's records are its own."""
    settings.SOCKETIO_SESSIONS_PER_TOKEN = LIMIT
    token = tokens.issue_token(user="alice")
    pids = [await connect_once(token) for _ in range(5)]
    assert len(set(pids)) == 5
    assert all(sessions.is_pid(pid) for pid in pids)
    if redis_client.is_cluster():
        tags = {redis_keys.hashed_part(sessions.key(pid)) for pid in pids}
        identity = tokens.validate_token(token)
        assert tags == {redis_keys.hashed_part(sessions.index_key(sessions.owner(identity)))}
    assert await live(pids) == pids[-LIMIT:]
    identity = tokens.validate_token(token)
    assert await redis_client.get_redis().zcard(sessions.index_key(sessions.owner(identity))) == LIMIT
    assert await connect_once(token, {"pid": pids[-1]}) == pids[-1]  # recovered: no new record
    assert await live(pids) == pids[-LIMIT:]
    assert await connect_once(token, {"pid": pids[0]}) not in pids  # evicted: not recoverable
    other = [await connect_once(tokens.issue_token(user="alice")) for _ in range(2)]
    assert await live(other) == other


async def test_an_evicted_record_is_not_written_again_by_its_live_connection(settings) -> None:
    """The oldest connection is still open when newer ones evict its record: its joins still work, but do not
    bring the record back (the bound would not hold)."""
    settings.SOCKETIO_SESSIONS_PER_TOKEN = 1
    token = tokens.issue_token(user="alice")
    async with client_factory() as make:
        first = make()
        await first.open()
        pid = (await first.connect_namespace(token)).data["pid"]
        await connect_once(token)
        assert await sessions.load(pid) is None
        assert await first.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
        assert await sessions.load(pid) is None


async def test_ended_records_go_before_live_ones(settings) -> None:
    """A session ended on purpose (its record removed) frees its place: the live ones stay."""
    settings.SOCKETIO_SESSIONS_PER_TOKEN = 2
    identity = tokens.validate_token(tokens.issue_token(user="alice"))
    kept = await start_session(identity)
    ended = await start_session(identity)
    await sessions.expire(ended.pid, ttl=0)
    newest = await start_session(identity)
    assert await live([kept.pid, ended.pid, newest.pid]) == [kept.pid, newest.pid]


async def test_without_redis_the_same_bound_holds(settings) -> None:
    settings.REDISHOST = ""
    settings.SOCKETIO_SESSIONS_PER_TOKEN = LIMIT
    identity = tokens.validate_token(tokens.issue_token(user="alice"))
    started = [await start_session(identity) for _ in range(5)]
    pids = [session.pid for session in started]
    assert await live(pids) == pids[-LIMIT:]
    started[0].joined["projects/p/conversations/c"] = 1
    await sessions.save(started[0], ttl=60)  # evicted: not written again
    assert await sessions.load(pids[0]) is None


async def test_a_record_is_bounded_in_bytes(settings) -> None:
    """64 conversations (a connection's most) of 512 characters each, every one 4 bytes in UTF-8: the record is
    at most their UTF-8 bytes plus a little, never their JSON escapes (12 bytes a character)."""
    token = tokens.issue_token(user="alice")
    async with client_factory() as make:
        client = make()
        await client.open()
        pid = (await client.connect_namespace(token)).data["pid"]
        for number in range(64):
            prefix = f"projects/p/conversations/c{number:02d}-"
            name = prefix + "\U0001d11e" * (512 - len(prefix))
            assert await client.call("join-conversation", name) == [True, name]
        refused, _ = await client.call("join-conversation", "projects/p/conversations/one-more")
        assert refused is False
        assert len((await sessions.load(pid)).joined) == 64
        assert await redis_client.get_redis().strlen(sessions.key(pid)) <= 64 * (4 * 512 + 16) + 256


async def test_a_record_written_before_conversations_had_their_own_sequences_is_not_recovered() -> None:
    """One position for every conversation (``epoch``/``since``, bare numbers per join) says nothing about each
    conversation's own sequence: the client gets a new session, as for any record that cannot be resumed."""
    token = tokens.issue_token(user="alice")
    identity = tokens.validate_token(token)
    old = {"pid": "old-record-pid", "user": identity.user, "project": identity.project, "epoch": "1a2b3c4d",
           "since": 7, "joined": {"projects/p/conversations/c1": 7}, "fresh_epoch": False}
    await redis_client.get_redis().set(sessions.key("old-record-pid"), json.dumps(old), ex=60)
    assert await sessions.load("old-record-pid") is None
    assert await connect_once(token, {"pid": "old-record-pid", "offset": "1a2b3c4d-7"}) != "old-record-pid"
