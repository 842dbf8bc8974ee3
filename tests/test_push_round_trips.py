"""One Redis round trip per accepted push: the de-duplication, the append and the publish are one function.

Counted with ``MONITOR`` on a private Redis around a run of pushes through a
real interceptor process: MONITOR tags what a script or function runs as ``lua``, so every
other command is a round trip a client made.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import redis.asyncio as redis

from testing import processes
from testing.push_bodies import push_body

PUSHES = 50


async def test_each_push_costs_one_round_trip_and_a_redelivery_one_too() -> None:
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="interceptor", redis=store) as interceptor:
        inspector = redis.Redis(host=store.host, port=store.port, decode_responses=True)
        round_trips: Counter[str] = Counter()
        inside_scripts: Counter[str] = Counter()
        async with httpx.AsyncClient(timeout=10) as http:

            async def push(message_id: str) -> None:
                body = push_body({"conversation": "projects/p/conversations/trips"}, messageId=message_id)
                response = await http.post(f"{interceptor.http_url}/new-message-event", content=body,
                                           headers={"Content-Type": "application/json"})
                assert response.status_code == 204

            await push("warm-up")  # loads the script and opens the connection
            async with inspector.monitor() as monitor:

                async def record() -> None:
                    async for command in monitor.listen():
                        name = command["command"].split(" ", 1)[0].strip('"').lower()
                        (inside_scripts if command.get("client_type") == "lua" else round_trips)[name] += 1

                recorder = asyncio.create_task(record())
                for number in range(PUSHES):
                    await push(f"m-{number}")
                for number in range(PUSHES):
                    await push(f"m-{number}")  # redeliveries: acknowledged, not sent again
                await asyncio.sleep(0.5)
                recorder.cancel()
        await inspector.aclose()
    # One command per push: the append function (FCALL).
    assert set(round_trips) <= {"fcall"} and round_trips.total() == 2 * PUSHES, round_trips
    # The server process's run_id was read once, at the warm-up: not once per push.
    assert inside_scripts["info"] == 0, inside_scripts
    # Inside those round trips: one append and one sharded publish per new event, none for a redelivery.
    assert (inside_scripts["xadd"], inside_scripts["spublish"]) == (PUSHES, PUSHES), inside_scripts
    assert inside_scripts["publish"] == 0, inside_scripts
