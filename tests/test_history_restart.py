"""``events.history`` across a restart of Redis that keeps its data (a snapshot, as Memorystore's RDB
persistence restores it): de-duplication records survive, and offsets handed out before the restore resume
exactly from what the restored Redis holds (the new epoch notes where it took over).

A private redis-server writes its snapshot with ``SAVE``, takes more appends,
is killed (SIGKILL: nothing after the snapshot is saved) and restarted from
the same directory on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from redis.asyncio import Redis

from events.history import RedisHistory, conversation_key
from testing import processes

A = "projects/p/conversations/restart"


@contextlib.contextmanager
def snapshotting_redis(directory: Path, port: int) -> Iterator[subprocess.Popen]:
    """A redis-server that loads and writes ``directory``/dump.rdb (only on SAVE), killed on leaving."""
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        processes.wait_for_port(port, process=process)
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def append(history: RedisHistory, message_id: str):
    return await history.append(conversation=A, kind="new-message-event", message_id=message_id,
                                payload_json=json.dumps({"id": message_id}))


async def test_after_a_restore_from_a_snapshot_offsets_of_the_lost_stretch_resume_from_the_restore(settings) -> None:
    """Events 1-2 are in the snapshot, 3-4 only in memory when Redis dies. Restored, the sequence would give
    out 3 and 4 again: the epoch is renewed instead, noting it took over at 2. A desktop that had seen event 2
    resumes exactly after it; one that had seen event 4 (numbers the restored Redis never had) resumes after 2
    too, in the new epoch: every event it gets is new to it, and none is lost that the restored Redis has. A
    redelivery of event 2 is still a duplicate (its record was in the snapshot), one of event 4 is not (the
    window that remains)."""
    port = processes.free_port()
    with tempfile.TemporaryDirectory(prefix="aa-redis-snapshot-") as directory:
        with snapshotting_redis(Path(directory), port):
            client = Redis(host="127.0.0.1", port=port)
            history = RedisHistory(client)
            kept = [await append(history, f"m-{n}") for n in (1, 2)]
            await client.save()
            lost = [await append(history, f"m-{n}") for n in (3, 4)]
            await client.aclose()
        with snapshotting_redis(Path(directory), port):
            client = Redis(host="127.0.0.1", port=port)
            history = RedisHistory(client)
            restored = int(await client.hget(conversation_key(A, "seq"), "seq"))
            assert restored == kept[-1].offset.seq  # the snapshot's: numbers 3 and 4 would be given out again
            redelivered = await append(history, "m-2")
            assert redelivered.duplicate
            after = await append(history, "m-5")
            assert after.offset.epoch != lost[-1].offset.epoch and after.offset.seq == 3
            for seen in (kept[-1].offset, lost[-1].offset):
                replay = await history.read({A: seen})
                assert replay.complete
                assert [json.loads(e.payload_json)["id"] for e in replay.events] == ["m-5"]
                assert replay.positions[A] == after.offset
            assert not (await append(history, "m-4")).duplicate
            await client.aclose()


async def test_every_conversation_of_a_pipeline_renews_its_epoch_after_a_restore() -> None:
    """Each append checks its own conversation's sequence (on a Redis Cluster each conversation's shard is
    another process): conversations appended to together after the restore each get a new epoch."""
    port = processes.free_port()
    others = [f"projects/p/conversations/other-{n}" for n in range(3)]

    async def append_to_each(message_id: str, *, save: bool = False) -> list:
        """One append per conversation, together in one turn of the loop (one pipeline)."""
        client = Redis(host="127.0.0.1", port=port)
        history = RedisHistory(client)
        appended = await asyncio.gather(*(history.append(conversation=c, kind="k", message_id=message_id,
                                                         payload_json="{}") for c in others))
        if save:
            await client.save()
        await client.aclose()
        return appended

    with tempfile.TemporaryDirectory(prefix="aa-redis-snapshot-") as directory:
        with snapshotting_redis(Path(directory), port):
            before = await append_to_each("1", save=True)
        with snapshotting_redis(Path(directory), port):
            after = await append_to_each("2")
    assert all(a.offset.epoch != b.offset.epoch and a.offset.seq == 2 for a, b in zip(after, before))
