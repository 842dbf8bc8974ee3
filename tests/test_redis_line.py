"""``events.redis_line`` and the appends that use it: a kept connection that survives Redis dropping it, gives up
on a stalled Redis within its timeout, and never hands one exchange's reply to the next; on real Redis."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from redis.exceptions import ResponseError, TimeoutError

from events import redis_client
from events.history import RedisHistory, conversation_key
from events.redis_line import Line

A = "projects/p/conversations/line-a"
B = "projects/p/conversations/line-b"


async def append(history: RedisHistory, conversation: str, message_id: str):
    return await history.append(conversation=conversation, kind="new-message-event", message_id=message_id,
                                payload_json=json.dumps({"id": message_id}))


async def test_a_line_answers_each_command_in_order_an_error_reply_as_its_error() -> None:
    line = Line(redis_client.get_redis(), 5.0)
    key = conversation_key(A, "line")
    replies = await line.run([("SET", key, "1"), ("HGET", key, "x"), ("INCR", key)])
    assert replies[0] is True or replies[0] in (b"OK", "OK")
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] == 2 and not line.busy


async def test_a_line_writes_text_numbers_and_bytes_as_redis_py_does() -> None:
    client = redis_client.get_redis()
    line = Line(client, 5.0)
    key = conversation_key(A, "text")
    text = '{"data":"caf\u00e9 \u2014 \U0001f600","n":12}'
    await line.run([("SET", key, text), ("SET", key + "n", 12345678901234), ("SET", key + "b", b"\x00\xff")])
    assert await client.mget(key, key + "n", key + "b") == [text.encode(), b"12345678901234", b"\x00\xff"]


async def test_appends_ride_out_redis_dropping_every_connection() -> None:
    """An idle connection closed by Redis (its timeout, a restart, an operator): the next append tries again on
    a new one, as the client's own retry does."""
    client = redis_client.get_redis()
    history = RedisHistory(client)
    assert (await append(history, A, "1")).offset.seq == 1
    await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert (await append(history, A, "2")).offset.seq == 2


async def test_a_stalled_redis_fails_the_exchange_in_time_and_the_next_reads_its_own_reply() -> None:
    """Redis paused past the line's timeout: the exchange fails with ``TimeoutError``, and the connection it
    waited on is dropped, so the late reply is never taken for the next exchange's."""
    client = redis_client.get_redis()
    line = Line(client, 0.2)
    key = conversation_key(A, "stalled")
    assert await line.run([("INCR", key)]) == [1]
    await client.execute_command("CLIENT", "PAUSE", 700, "ALL")
    with pytest.raises(TimeoutError):
        await line.run([("INCR", key)])
    await asyncio.sleep(0.8)
    counted = int(await client.get(key))
    assert await line.run([("INCR", key)]) == [counted + 1]


async def test_appends_spread_over_turns_of_the_loop_each_get_their_own_answer() -> None:
    """Appends arriving while the line waits for Redis go out in pooled pipelines: every caller gets its own
    conversation's next number, whichever way its append went."""
    history = RedisHistory(redis_client.get_redis())

    async def later(conversation: str, message_id: str):
        await asyncio.sleep(random.random() / 500)
        return conversation, await append(history, conversation, message_id)

    answers = await asyncio.gather(*(later((A, B)[i % 2], f"m-{i}") for i in range(200)))
    for conversation in (A, B):
        seqs = sorted(answer.offset.seq for name, answer in answers if name == conversation)
        assert seqs == list(range(1, 101))
    assert not any(answer.duplicate for _, answer in answers)
