"""``MONITOR`` on several Redis nodes at once, for tests that count the commands each node was sent."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from redis.asyncio import Redis

MARK = "aa-monitor-mark-"


class Monitoring:
    """The nodes being monitored; ``caught_up`` waits for their reports to reach the present."""

    def __init__(self, clients: list[Redis]) -> None:
        self.clients = clients
        self.marks: dict[str, asyncio.Future] = {}

    def reported(self, text: str) -> bool:
        """Whether ``text`` (a reported command) is one of ``caught_up``'s marks, which then has arrived."""
        if MARK not in text:
            return False
        for mark, arrived in self.marks.items():
            if mark in text and not arrived.done():
                arrived.set_result(None)
        return True

    async def caught_up(self) -> None:
        """Return once every command the nodes ran before this call has been reported (to ``keep``): a node
        reports its commands in the order it ran them, so once a mark sent to it now is reported, so is every
        command it ran before."""
        loop = asyncio.get_running_loop()
        marks = [f"{MARK}{secrets.token_hex(6)}" for _ in self.clients]
        self.marks.update((mark, loop.create_future()) for mark in marks)
        try:
            for client, mark in zip(self.clients, marks):
                await client.echo(mark)
            await asyncio.wait_for(asyncio.gather(*(self.marks[mark] for mark in marks)), timeout=30)
        finally:
            for mark in marks:
                self.marks.pop(mark, None)


@contextlib.asynccontextmanager
async def monitoring(nodes: Sequence[Any], keep: Callable[[int, dict], None]) -> AsyncIterator[Monitoring]:
    """Until the block ends, ``keep(i, command)`` for each command a client sent ``nodes[i]`` (anything with
    ``host`` and ``port``; a redis-py monitor's dict per command: ``command``, ``client_port``, ...). Commands
    a script ran are left out, and so are the block's own marks. Every node is monitored before the block starts
    (its ``MONITOR`` answered); a command is reported once it ran, which may be after its client had the reply:
    ``await monitor.caught_up()`` (``async with monitoring(...) as monitor``) waits for what ran until then."""
    clients = [Redis(host=node.host, port=node.port, decode_responses=True) for node in nodes]
    monitor = Monitoring(clients)
    watching: list[tuple[Any, asyncio.Task]] = []
    try:
        for index, client in enumerate(clients):
            context = client.monitor()
            watcher = await context.__aenter__()

            async def record(index: int = index, watcher: Any = watcher) -> None:
                async for command in watcher.listen():
                    if command.get("client_type") != "lua" and not monitor.reported(command["command"]):
                        keep(index, command)

            watching.append((context, asyncio.create_task(record())))
        yield monitor
    finally:
        for context, task in watching:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await context.__aexit__(None, None, None)
        for client in clients:
            await client.aclose()
