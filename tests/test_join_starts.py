"""Where a join starts, as the session records it: what a desktop cut off right after the join recovers.

A join's start is where its replay was read from in the conversation's
current epoch (``Replay.starts``), or the current end taken before the join
subscribed. After a failover (a real replica, promoted) an offset of the
epoch the new one continues resumes after it (or after the takeover),
whether it comes as a join's ``after``, or as the offset of a client whose
session could not be recovered and which joins again; a desktop that then
receives none of the replay and recovers gets exactly the replay again,
nothing it had before. Over the websocket (the consumer in process) and
long-polling (a connector process).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest
from redis.asyncio import Redis
from socketio import packet as sio

from connector import tokens
from events.history import Offset, get_history
from events.kinds import EventKind
from events.publish import publish as publish_event
from testing import clients, processes
from testing.engineio_polling import connect_answer, conversation_events, handshake, session_url
from testing.raw_socketio import SocketIOTestClient, client_factory

from .test_failover_epochs import caught_up


def conversation() -> str:
    return f"projects/{processes.TEST_PROJECT}/conversations/join-{secrets.token_hex(4)}"


async def publish(conversation: str) -> dict:
    """An event through the real delivery path, as the interceptor publishes one, with its own message id."""
    payload = {"conversation_name": conversation, "data": "{}", "data_type": EventKind.NEW_MESSAGE,
               "message_id": secrets.token_hex(4)}
    await publish_event(conversation_name=conversation, event=EventKind.NEW_MESSAGE, payload=payload)
    return payload


async def connect(client: SocketIOTestClient, auth: dict) -> sio.Packet:
    await client.open()
    await client.send("40" + json.dumps({"token": tokens.issue_token(user="alice"), **auth}))
    return await client.receive_packet()


async def events_of(client: SocketIOTestClient, count: int) -> list[str]:
    return [(await client.receive_event())[1]["message_id"] for _ in range(count)]


async def failed_over(settings, primary, replica, name: str, before: int) -> tuple[list[str], list[Offset], str]:
    """``before`` events of ``name`` on the primary (caught up on the replica), the replica promoted and the
    application pointed at it, one more event there (the new epoch, taken over at ``before``). Their message
    ids, the old events' offsets, and the new event's id."""
    settings.REDISHOST, settings.REDISPORT = primary.host, primary.port
    sent = [(await publish(name))["message_id"] for _ in range(before)]
    old = await get_history().position(name)
    offsets = [Offset(old.epoch, n) for n in range(1, before + 1)]
    caught_up(primary, replica)
    replica.promote()
    settings.REDISHOST, settings.REDISPORT = replica.address.host, replica.address.port
    later = (await publish(name))["message_id"]
    assert (await get_history().position(name)).epoch != old.epoch
    return sent, offsets, later


async def test_a_join_after_an_offset_of_the_epoch_before_a_failover_starts_there(settings, primary, replica) -> None:
    """The desktop had 1 and 2 of the old epoch; after the failover (taken over at 4, then 5) it joins after
    its offset of 2 and is cut off before the replay reaches it: its recovery replays 3, 4 and 5, not 1 and 2
    again (the join was recorded where its replay started, at 2 in the new epoch)."""
    name = conversation()
    sent, offsets, later = await failed_over(settings, primary, replica, name, 4)
    async with client_factory() as make:
        first = make()
        pid = (await connect(first, {})).data["pid"]
        assert await first.call("join-conversation", name, {"after": str(offsets[1])}) == [True, name]
        await first.communicator.disconnect()  # nothing of the replay arrived: its offset does not name ``name``
        again = make()
        assert (await connect(again, {"pid": pid})).data["pid"] == pid
        assert await events_of(again, 3) == [*sent[2:], later]
        assert await again.communicator.receive_nothing(0.3)


async def test_a_new_session_for_an_offset_of_the_epoch_before_a_failover_joins_from_it(
        settings, primary, replica) -> None:
    """The desktop's session record is gone (a new pid), and its offset says 2 of the old epoch: the session it
    gets instead starts its join of the conversation, now failed over, after 2 (3, 4 and 5), and a cut right
    after the join recovers the same three, not the new epoch's whole start."""
    name = conversation()
    async with client_factory() as make:
        settings.REDISHOST, settings.REDISPORT = primary.host, primary.port
        first = make()
        await connect(first, {})
        assert await first.call("join-conversation", name) == [True, name]
        sent = [(await publish(name))["message_id"] for _ in range(2)]
        assert await events_of(first, 2) == sent
        offset = first.last_offset
        await first.communicator.disconnect()
        sent += [(await publish(name))["message_id"] for _ in range(2)]
        caught_up(primary, replica)
        replica.promote()
        settings.REDISHOST, settings.REDISPORT = replica.address.host, replica.address.port
        later = (await publish(name))["message_id"]

        again = make()
        answer = await connect(again, {"pid": secrets.token_urlsafe(18), "offset": offset})
        pid = answer.data["pid"]
        assert await again.call("join-conversation", name) == [True, name]
        assert await events_of(again, 3) == [*sent[2:], later]
        await again.communicator.disconnect()
        recovered = make()
        assert (await connect(recovered, {"pid": pid})).data["pid"] == pid
        assert await events_of(recovered, 3) == [*sent[2:], later]
        assert await recovered.communicator.receive_nothing(0.3)


async def test_a_polling_join_after_an_offset_of_the_epoch_before_a_failover_reads_on_from_it(
        settings, primary, replica) -> None:
    """Long-polling: a join after 2 of the old epoch reads 3, 4 and 5 (not the new epoch from its start), and
    the session record says so: a recovery right after the join reads the same three."""
    name = conversation()
    sent, offsets, later = await failed_over(settings, primary, replica, name, 4)
    token = clients.server_token(settings, user="agent")
    with processes.service_server(role="connector", redis=replica.address, EVENT_KEY_PREFIX=settings.EVENT_KEY_PREFIX,
                                 SOCKETIO_PING_INTERVAL="2",
                                 SOCKETIO_PING_TIMEOUT="2") as connector:
        url = f"http://127.0.0.1:{connector.port}"
        async with httpx.AsyncClient(timeout=10) as http:

            async def session(auth: dict) -> tuple[str, str, list[str]]:
                """A new session's sid and pid, and the events its first GET brought after the CONNECT answer."""
                sid = await handshake(http, url)
                connect = "40" + json.dumps({"token": token, **auth})
                assert (await http.post(session_url(url, sid), content=connect.encode())).text == "ok"
                text = (await http.get(session_url(url, sid))).text
                return sid, connect_answer(text)["pid"], ids(text)

            def ids(text: str) -> list[str]:
                return [payload["message_id"] for _, payload, _ in conversation_events(text)]

            async def read(sid: str, count: int, received: list[str]) -> list[str]:
                for _ in range(5):  # a GET answers at the latest at the ping (2 s)
                    if len(received) >= count:
                        return received
                    text = (await http.get(session_url(url, sid))).text
                    received = received + ids(text)
                    if text == "2":
                        await http.post(session_url(url, sid), content=b"3")
                raise AssertionError(f"{len(received)} events: {received}, then {text!r}")

            sid, pid, _ = await session({})
            join = json.dumps(["join-conversation", name, {"after": str(offsets[1])}])
            assert (await http.post(session_url(url, sid), content=f"421{join}".encode())).text == "ok"
            assert await read(sid, 3, []) == [*sent[2:], later]
            # Cut off before that GET's answer arrived: its recovery reads the same three.
            again, recovered, first = await session({"pid": pid})
            assert recovered == pid
            assert await read(again, 3, first) == [*sent[2:], later]


# --- an event appended while a join is under way ----------------------------------------------------------


async def paused_clients(redis: Redis, count: int) -> None:
    """Until ``count`` clients wait on ``CLIENT PAUSE WRITE`` (Redis counts them as blocked)."""
    for _ in range(400):
        if (await redis.info("clients"))["blocked_clients"] >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} clients waited on the pause")


async def join_collecting(client: SocketIOTestClient, name: str) -> list[str]:
    """Join ``name`` without options; the message ids of the conversation's events that arrive around the
    acknowledgement (before or after it), until the connection goes quiet."""
    await client.send("42" + "7" + json.dumps(["join-conversation", name]))
    received, acknowledged = [], False
    while not (acknowledged and await client.communicator.receive_nothing(0.5)):
        packet = await client.receive_packet()
        if packet.packet_type == sio.ACK:
            assert (packet.id, packet.data) == (7, [True, name])
            acknowledged = True
        else:
            assert packet.packet_type == sio.EVENT and packet.data[0] == EventKind.NEW_MESSAGE, packet.data
            received.append(packet.data[1]["message_id"])
    return received


@pytest.mark.parametrize("appended", ["before the join's position", "after the join's position"])
async def test_an_event_appended_while_a_join_is_under_way_is_recovered_as_it_was_delivered(
        settings, redis_server, appended) -> None:
    """Writes are paused in Redis (``CLIENT PAUSE WRITE``, which queues them in order) while an append and the
    join's position wait, in either order; then both run. Whatever the connection received of the conversation
    around its join, a recovery with no offset for it (every one of those frames lost on the way) replays
    exactly that: the session's record of where the join started agrees with what the join sent."""
    name = conversation()
    await publish(name)  # the conversation has a sequence before the join
    redis = Redis(host=redis_server.host, port=redis_server.port)
    async with client_factory() as make:
        desktop = make()
        pid = (await connect(desktop, {})).data["pid"]
        await redis.execute_command("CLIENT", "PAUSE", 20000, "WRITE")
        try:
            if appended == "before the join's position":
                appending = asyncio.ensure_future(publish(name))
                await paused_clients(redis, 1)
                joining = asyncio.ensure_future(join_collecting(desktop, name))
            else:
                joining = asyncio.ensure_future(join_collecting(desktop, name))
                await paused_clients(redis, 1)
                appending = asyncio.ensure_future(publish(name))
            await paused_clients(redis, 2)
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
        event = (await appending)["message_id"]
        received = await joining
        assert received in ([], [event])
        await desktop.communicator.disconnect()
        again = make()
        assert (await connect(again, {"pid": pid})).data["pid"] == pid
        assert await events_of(again, len(received)) == received
        assert await again.communicator.receive_nothing(0.3)
    await redis.aclose()
