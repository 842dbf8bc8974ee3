"""``connector.desktops.instances``: the record a connector process reports of its desktops, read back from Redis."""

from __future__ import annotations

import asyncio
import json

import pytest

from connector.desktops import instances
from events import redis_client

# Each test on the standalone Redis and on a Redis Cluster.
pytestmark = pytest.mark.usefixtures("redis_kind")


class Desktop:
    def __init__(self, transport: str, *conversations: str) -> None:
        self.transport = transport
        self.joined = set(conversations)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        pass


async def record_removed() -> None:
    """Wait up to 2.5 s for this process's record to go from Redis; fail if it stays."""
    for _ in range(50):
        if await redis_client.get_redis().get(instances.record_key()) is None:
            break
        await asyncio.sleep(0.05)
    assert await redis_client.get_redis().get(instances.record_key()) is None


async def test_the_record_counts_desktops_by_transport_as_they_come_and_go_and_lists_a_bounded_few(
    settings, monkeypatch
) -> None:
    monkeypatch.setattr(instances, "MAX_REPORTED_DESKTOPS", 3)
    settings.INSTANCE_REPORT_SECONDS = 0.1
    registry = instances.Registry()
    desktops = [Desktop("socketio", "projects/p/conversations/a") for _ in range(4)] + [Desktop("websocket")]
    for number, desktop in enumerate(desktops):
        registry.connected(desktop, f"agent-{number}")
    registry.connected(desktops[0], "agent-0")  # counted once
    registry.disconnected(desktops[1])
    registry.disconnected(desktops[1])  # likewise
    record = registry.record()
    assert record["desktops_by_transport"] == {"socketio": 3, "websocket": 1}
    assert [entry["user"] for entry in record["desktops"]] == ["agent-0", "agent-2", "agent-3"]
    assert record["desktops"][0]["conversations"] == ["projects/p/conversations/a"]
    assert record["truncated"] is True
    await asyncio.sleep(0.3)  # the reporter has written it
    stored = json.loads(await redis_client.get_redis().get(instances.record_key()))
    assert stored["desktops_by_transport"] == {"socketio": 3, "websocket": 1}
    for desktop in desktops:
        registry.disconnected(desktop)
    assert registry.record()["desktops_by_transport"] == {}
    assert registry.record()["truncated"] is False
    await record_removed()  # by the reporter, once the last desktop has gone


async def test_polling_sessions_keep_the_record_until_the_last_and_a_desktop_leaving_does_not_end_it(
    settings
) -> None:
    settings.INSTANCE_REPORT_SECONDS = 0.1
    registry = instances.Registry()
    redis = redis_client.get_redis()

    async def stored() -> dict | None:
        for _ in range(50):
            value = await redis.get(instances.record_key())
            if value is not None:
                return json.loads(value)
            await asyncio.sleep(0.05)
        return None

    registry.polling_sessions(2)
    record = await stored()
    assert record is not None and record["polling_sessions"] == 2 and record["desktops_by_transport"] == {}
    desktop = Desktop("socketio")
    registry.connected(desktop, "agent")
    registry.disconnected(desktop)  # the process still holds polling sessions
    await asyncio.sleep(0.3)
    again = await stored()
    assert again is not None and again["polling_sessions"] == 2
    registry.polling_sessions(0)
    await record_removed()
