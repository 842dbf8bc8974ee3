"""Offsets handed out before a failover resume exactly after it: the promoted replica's epoch continues the old.

Real servers: a private primary with a real replica (``--replicaof``),
promoted with ``REPLICAOF NO ONE`` as a failover does, and the history (or a
connector and an interceptor) pointed at it afterwards. The replica either
holds every event (confirmed with ``REDIS_ACK_REPLICAS``) or misses the last
ones (its link to the primary cut before they were appended).
"""

from __future__ import annotations

import json
import time

import httpx
from redis.asyncio import Redis

from events.history import Offset, RedisHistory, conversation_key
from testing import clients, processes
from testing.engineio_polling import connected_session, conversation_events, session_url
from testing.push_bodies import push
from testing.tcp_proxy import tcp_proxy

A = "projects/p/conversations/failover"



async def append(history: RedisHistory, message_id: str):
    return await history.append(conversation=A, kind="new-message-event", message_id=message_id,
                                payload_json=json.dumps({"id": message_id}))


def ids(replay) -> list[str]:
    return [json.loads(event.payload_json)["id"] for event in replay.events]


def caught_up(primary: processes.RedisAddress, replica: processes.RedisReplica, timeout: float = 20.0) -> None:
    """Until the replica applied everything the primary wrote so far (every connection's writes, which a WAIT
    on one connection would not cover)."""
    info = processes._redis_cli("-h", primary.host, "-p", str(primary.port), "info", "replication")
    wanted = int(next(line for line in info.splitlines() if line.startswith("master_repl_offset:")).split(":")[1])
    deadline = time.monotonic() + timeout
    while True:
        lines = replica.replication().splitlines()
        if int(next(line for line in lines if line.startswith("slave_repl_offset:")).split(":")[1]) >= wanted:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not catch up")
        time.sleep(0.05)


async def test_after_a_failover_to_a_replica_holding_everything_old_offsets_resume_exactly(
        settings, primary, replica) -> None:
    """Events 1-4 reached the replica (``REDIS_ACK_REPLICAS``) before it was promoted. From the old epoch's
    offsets: before any append on the new primary, the old epoch still reads on; once the new primary appends
    (a new epoch, taken over at 4) a position at 2 replays 3, 4 and 5, a position at 4 only 5: complete, in
    the new epoch, nothing twice. Pages and the count agree; a redelivery of 4 is still a duplicate."""
    settings.REDIS_ACK_REPLICAS = 1
    old = RedisHistory(Redis(host=primary.host, port=primary.port))
    given = [await append(old, f"m-{n}") for n in range(1, 5)]
    first = given[0].offset.epoch
    replica.promote()
    settings.REDIS_ACK_REPLICAS = 0
    client = Redis(host=replica.address.host, port=replica.address.port)
    new = RedisHistory(client)

    untouched = await new.read({A: Offset(first, 2)})
    assert untouched.complete and ids(untouched) == ["m-3", "m-4"]
    assert (await append(new, "m-4")).duplicate
    later = await append(new, "m-5")
    assert later.offset.epoch != first and later.offset.seq == 5
    sequence = await client.hgetall(conversation_key(A, "seq"))
    assert (sequence[b"previous"].decode(), int(sequence[b"taken_at"])) == (first, 4)

    for seen, expected in ((2, ["m-3", "m-4", "m-5"]), (4, ["m-5"])):
        replay = await new.read({A: Offset(first, seen)})
        assert replay.complete and ids(replay) == expected, seen
        assert all(event.epoch == later.offset.epoch for event in replay.events)
        assert replay.positions[A] == later.offset
    page = await new.read_page({A: Offset(first, 2)}, max_events=2, max_bytes=1 << 20, count=True)
    assert (ids(page), page.more, page.total, page.complete) == (["m-3", "m-4"], True, 3, True)
    rest = await new.read_page(page.positions, max_events=2, max_bytes=1 << 20)
    assert (ids(rest), rest.more, rest.complete) == (["m-5"], False, True)
    await client.aclose()


async def test_after_a_failover_to_a_replica_missing_the_last_events_old_offsets_resume_without_duplicates(
        primary, replica) -> None:
    """Events 1-2 reached the replica; its link was then cut (the primary asks for a password it does not have)
    and 3-4 went to the primary only. Promoted, the replica takes over at 2: a desktop that had 4 (numbers the
    new primary never had) gets only what the new primary appends after, 5; one that had 1 gets 2 and 5. Every
    replay is complete and none repeats an event the desktop had."""
    old_client = Redis(host=primary.host, port=primary.port)
    old = RedisHistory(old_client)
    given = [await append(old, f"m-{n}") for n in (1, 2)]
    caught_up(primary, replica)
    await old_client.config_set("requirepass", "cut-the-replica-off")
    await old_client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    deadline = time.monotonic() + 20
    while "master_link_status:down" not in replica.replication():
        assert time.monotonic() < deadline, "the replica's link stayed up"
        time.sleep(0.05)
    given += [await append(old, f"m-{n}") for n in (3, 4)]
    await old_client.aclose()
    first = given[0].offset.epoch
    replica.promote()
    client = Redis(host=replica.address.host, port=replica.address.port)
    new = RedisHistory(client)
    later = await append(new, "m-5")
    assert later.offset.seq == 3 and later.offset.epoch != first

    for seen, expected in ((4, ["m-5"]), (3, ["m-5"]), (2, ["m-5"]), (1, ["m-2", "m-5"])):
        replay = await new.read({A: Offset(first, seen)})
        assert replay.complete and ids(replay) == expected, seen
        assert replay.positions[A] == later.offset
    assert not (await append(new, "m-4")).duplicate  # the primary's record of it was lost with it
    await client.aclose()


async def test_two_failovers_while_a_desktop_is_away_leave_its_offset_unresumable(primary, replica) -> None:
    """One predecessor is remembered: after a second takeover (a replica of the promoted replica promoted in
    turn), an offset of the first epoch reads as lost (the replay is not complete, read from the current epoch's
    start); one of the second epoch still resumes exactly."""
    old = RedisHistory(Redis(host=primary.host, port=primary.port))
    first = (await append(old, "m-1")).offset
    caught_up(primary, replica)
    replica.promote()
    middle_client = Redis(host=replica.address.host, port=replica.address.port)
    middle = await append(RedisHistory(middle_client), "m-2")
    with processes.redis_replica(replica.address) as second:
        caught_up(replica.address, second)
        second.promote()
        client = Redis(host=second.address.host, port=second.address.port)
        last = RedisHistory(client)
        latest = await append(last, "m-3")
        assert len({first.epoch, middle.offset.epoch, latest.offset.epoch}) == 3
        lost = await last.read({A: first})
        assert not lost.complete and lost.stale == {A} and ids(lost) == ["m-1", "m-2", "m-3"]
        kept = await last.read({A: middle.offset})
        assert kept.complete and ids(kept) == ["m-3"]
        await client.aclose()
    await middle_client.aclose()


async def test_a_desktop_recovers_exactly_on_a_connector_of_the_promoted_replica(settings, primary, replica) -> None:
    """A Socket.IO desktop on a connector of the primary sees events 1-3 (acknowledged once on the replica) and is
    cut off. The replica is promoted; an interceptor and a connector on it take 4 and 5. The desktop comes back
    to the new connector with its pid and last offset (of the old epoch): its session is recovered and it gets
    4 and 5, once each, none of 1-3 again, then live events."""
    conversation = clients.new_conversation("failover")
    token = clients.server_token(settings, user="agent")
    with processes.service_server(role="connector", redis=primary) as connector, \
            processes.service_server(role="interceptor", redis=primary, REDIS_ACK_REPLICAS="1") as interceptor:
        async with tcp_proxy(connector.port) as proxy:
            desktop = clients.SocketIODesktop()
            await desktop.connect(proxy, token)
            assert await desktop.join(conversation) == (True, conversation)
            for n in (1, 2, 3):
                await push(interceptor, conversation, f"m-{n}")
            await clients.wait_until(lambda: len(desktop.offsets) == 3, what="the events before")
            caught_up(primary, replica)  # the session record too
            replica.promote()
            with processes.service_server(role="connector", redis=replica.address) as moved, \
                    processes.service_server(role="interceptor", redis=replica.address) as taken_over:

                async def while_away() -> None:
                    for n in (4, 5):
                        await push(taken_over, conversation, f"m-{n}")

                back = await desktop.cut_then_recover(proxy, moved, token, while_away)
                try:
                    assert back.pid == desktop.pid  # recovered, not a new session
                    await clients.wait_until(lambda: len(back.offsets) == 2, what="the missed events")
                    await push(taken_over, conversation, "m-6")
                    await clients.wait_until(lambda: len(back.offsets) == 3, what="a live event")
                    received = [payload["message_id"] for _, payload in back.events
                                if isinstance(payload, dict) and "message_id" in payload]
                    assert received == ["m-4", "m-5", "m-6"]
                finally:
                    await back.disconnect()
                    await desktop.disconnect()


async def test_a_polling_join_after_an_offset_of_the_epoch_taken_over_from_replays_only_what_came_after(
        settings, primary, replica) -> None:
    """Events 1-3 reached the replica before it was promoted; the new primary's interceptor takes 4 (a new epoch,
    taken over at 3). A long-polling desktop on a connector of the new primary joins with ``after`` the old
    epoch's offset of 2: its polls answer 3 and 4, not the conversation's whole history again."""
    conversation = clients.new_conversation("failover-join")
    token = clients.server_token(settings, user="agent")
    settings.REDIS_ACK_REPLICAS = 1
    old = RedisHistory(Redis(host=primary.host, port=primary.port))
    given = [await old.append(conversation=conversation, kind="new-message-event", message_id=f"m-{n}",
                              payload_json=json.dumps({"message_id": f"m-{n}"})) for n in (1, 2, 3)]
    settings.REDIS_ACK_REPLICAS = 0
    replica.promote()
    prefix = settings.EVENT_KEY_PREFIX  # the servers' keys are the test's
    with processes.service_server(role="connector", redis=replica.address, SOCKETIO_PING_INTERVAL="2",
                                  SOCKETIO_PING_TIMEOUT="2", EVENT_KEY_PREFIX=prefix) as connector, \
            processes.service_server(role="interceptor", redis=replica.address, EVENT_KEY_PREFIX=prefix) as interceptor:
        await push(interceptor, conversation, "m-4")
        url = connector.http_url
        async with httpx.AsyncClient(timeout=10) as client:
            sid = await connected_session(client, url, token)
            join = json.dumps(["join-conversation", conversation, {"after": str(given[1].offset)}])
            assert (await client.post(session_url(url, sid), content=f"420{join}".encode())).text == "ok"
            received: list[str] = []
            for _ in range(5):
                text = (await client.get(session_url(url, sid))).text
                if "2" in text.split("\x1e"):
                    await client.post(session_url(url, sid), content=b"3")
                received += [payload["message_id"] for _, payload, _ in conversation_events(text)]
                if len(received) >= 2:
                    break
        assert received == ["m-3", "m-4"]
