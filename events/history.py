"""Every accepted event, in a bounded per-conversation history, with one global order and its offsets.

An event gets the next number of one sequence that all conversations share,
so offsets are comparable across conversations: a desktop that saw offset
``N`` has missed exactly the events numbered above ``N`` in the conversations
it had joined. The sequence carries an *epoch*, a random tag made with it
and renewed whenever another Redis server process appends (a restart, a
failover): offsets of another epoch (Redis lost its data, or some of it)
cannot be resumed from.

Appending an event also de-duplicates it (a Pub/Sub redelivery of a
``messageId`` already accepted for that kind in that conversation is not
stored or sent again) and publishes it to the connectors, in one atomic step
(``RedisHistory``'s Lua script: one Redis round trip per push, shared by the
pushes that arrive together: the appends of one turn of the event loop go out
in one pipeline). Each conversation's history is bounded by count and by
bytes, trimmed exactly, oldest first. Without Redis (development mode)
``MemoryHistory`` keeps the same promises in process.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from common.loop_local import LoopLocal
from events import redis_client


@dataclass(frozen=True, slots=True)
class Offset:
    """A position in the sequence: ``epoch-seq`` on the wire, opaque to clients."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"

    @classmethod
    def parse(cls, text: object) -> Offset | None:
        """The offset ``text`` names, or None when it is not one of ours."""
        if not isinstance(text, str) or len(text) > 64:
            return None
        epoch, _, seq = text.rpartition("-")
        if not epoch or not seq.isdigit() or not epoch.isalnum() or not epoch.isascii():
            return None
        return cls(epoch, int(seq))


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: its place in the sequence, its kind, and the desktop payload as compact JSON."""

    seq: int
    epoch: str
    conversation: str
    kind: str
    payload_json: str
    # Frames built from this event, once per protocol, shared by every desktop of the process.
    frames: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def offset(self) -> str:
        return f"{self.epoch}-{self.seq}"


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``append`` did: the event's offset, and whether it was a duplicate (then not sent again)."""

    offset: Offset
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Replay:
    """Events after some positions, in sequence order; ``complete`` is False when the history no longer
    reaches back that far (trimmed, expired with events missing, or another epoch)."""

    events: list[Event]
    complete: bool
    position: Offset
    #: ``read_page``: the page stopped at its bounds, and ``position`` is its last event: more follow it.
    more: bool = False
    #: ``read_page(count=True)``: how many events the whole replay holds, this page's and the pages after.
    total: int | None = None


def key_prefix() -> str:
    return settings.EVENT_KEY_PREFIX


def channel_name(conversation: str) -> str:
    """The Redis pub/sub channel on which a conversation's events reach the connectors."""
    return f"{key_prefix()}events:{conversation}"


def history_bytes_key(conversation: str) -> str:
    """The Redis key holding the bytes of payload JSON stored in the conversation's history (its running total)."""
    return f"{key_prefix()}history-bytes:{conversation}"


def decode_published(conversation: str, message: bytes | str) -> Event:
    """The event in a pub/sub message of ``channel_name(conversation)``: ``<offset> <kind> <payload JSON>``,
    as the append script publishes it."""
    text = message.decode("utf-8") if isinstance(message, bytes) else message
    offset, kind, payload_json = text.split(" ", 2)
    parsed = Offset.parse(offset)
    if parsed is None:
        raise ValueError(f"not an event offset: {offset[:40]!r}")
    return Event(parsed.seq, parsed.epoch, conversation, kind, payload_json)


def _dedup_capacity() -> int:
    # Redeliveries come within minutes; ten histories' worth of messageIds covers them.
    return 10 * settings.EVENT_HISTORY_MAX_EVENTS


# Trimming is exact, by count (EVENT_HISTORY_MAX_EVENTS) and by bytes (EVENT_HISTORY_MAX_BYTES of payload
# JSON, the running total kept in the history-bytes key beside the stream): the oldest entries go until the
# new one fits both, but the new one always stays, alone if it is over the byte budget by itself (a
# reconnecting desktop still recovers it; a push is bounded by PUSH_MAX_BODY_BYTES). Before trimming, the id
# of the newest entry about to go is kept in the trimmed key: a replay from before it cannot be whole (Redis
# 7.0's XINFO max-deleted-entry-id counts XDEL only, not trimming). Entries about to go are read in growing
# chunks: usually one, as many as a large new event pushes out otherwise.
# The epoch is also renewed when the Redis server process is not the one that last appended (its run_id,
# new at every start, and another on a replica promoted by a failover): restored from a snapshot, or a
# replica that had not received the last writes, the sequence would count again numbers it already gave
# out, and a desktop holding one of them would be told its replay was whole while it missed events. Only
# the first append of each pipeline checks (INFO costs about as much as the rest of an append), and it is
# sent with EVAL, which a flushed script cache cannot refuse: the pipeline's commands reach one server
# process in order, so none of them appends before the check.
# KEYS: sequence hash, history stream, seen zset, trimmed mark, history bytes. ARGV: kind, messageId ('' for
# none), payload JSON, max events, history seconds, dedup capacity, channel, a new epoch (used only if none
# yet, or for a new server process), max bytes, '1' to check the server process.
_APPEND = """
if ARGV[10] == '1' then
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local found = redis.call('HMGET', KEYS[1], 'epoch', 'run')
  if found[1] and found[2] and found[2] ~= run then
    redis.call('HSET', KEYS[1], 'epoch', ARGV[8], 'run', run)
  elseif not found[2] then
    redis.call('HSET', KEYS[1], 'run', run)
  end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[8]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local member = ARGV[1] .. ' ' .. ARGV[2]
if ARGV[2] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[3], member)
  if seen then return {1, epoch, seen} end
end
local function payload_size(entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'p' then return #fields[i + 1] end
  end
  return 0
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local size = #ARGV[3]
local count = redis.call('XLEN', KEYS[2])
local total = 0
if count > 0 then
  total = tonumber(redis.call('GET', KEYS[5]) or '-1')
  if total < 0 then
    -- No running total beside a stored history (written by an earlier version, or evicted): count it once.
    total = 0
    local after = '-'
    repeat
      local chunk = redis.call('XRANGE', KEYS[2], after, '+', 'COUNT', 100)
      for _, entry in ipairs(chunk) do total = total + payload_size(entry) end
      if #chunk > 0 then after = '(' .. chunk[#chunk][1] end
    until #chunk < 100
  end
end
local excess = count + 1 - tonumber(ARGV[4])
local budget = tonumber(ARGV[9])
local going, last, after, want = 0, nil, '-', math.max(excess, 1)
while going < count and (going < excess or total + size > budget) do
  local chunk = redis.call('XRANGE', KEYS[2], after, '+', 'COUNT', want)
  if #chunk == 0 then break end
  for _, entry in ipairs(chunk) do
    if not (going < excess or total + size > budget) then break end
    going = going + 1
    total = total - payload_size(entry)
    last = entry[1]
  end
  after = '(' .. chunk[#chunk][1]
  want = math.min(want * 2, 128)
end
if last then
  redis.call('SET', KEYS[4], last, 'EX', ARGV[5])
  redis.call('XTRIM', KEYS[2], 'MINID', '0-' .. (tonumber(string.match(last, '%d+$')) + 1))
end
redis.call('XADD', KEYS[2], '0-' .. seq, 'k', ARGV[1], 'p', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[5], total + size, 'EX', ARGV[5])
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[3], seq, member)
  if redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[6]) then
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[6]) - 1)
  end
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('PUBLISH', ARGV[7], epoch .. '-' .. seq .. ' ' .. ARGV[1] .. ' ' .. ARGV[3])
return {0, epoch, seq}
"""

# KEYS: sequence hash, then per conversation its history stream and its trimmed mark. ARGV: the seq after
# which to read each. Returns the epoch, the current seq, then per conversation {trimmed up to, entries}.
_READ = """
local out = {redis.call('HGET', KEYS[1], 'epoch') or '', redis.call('HGET', KEYS[1], 'seq') or '0'}
for i = 2, #KEYS, 2 do
  local trimmed = redis.call('GET', KEYS[i + 1]) or '0-0'
  out[#out + 1] = {trimmed, redis.call('XRANGE', KEYS[i], '(0-' .. ARGV[i / 2], '+')}
end
return out
"""


# One page of a replay: KEYS: sequence hash, then per conversation its history stream and its trimmed mark.
# ARGV: the epoch the positions are counted in ('' for the current one), most events, most bytes (at least one
# event is taken however big), whether to count every event the replay holds ('1'; 16 entries at a time),
# then per conversation the seq after which to read. Positions of another epoch
# read from the current epoch's start: each of its events was pushed after Redis lost the older ones.
# The conversations' streams are merged in sequence order one entry at a time (XRANGE COUNT 1 per head), so
# Redis holds no more than a head per conversation beyond the page itself.
# Returns the epoch, the current seq, whether more follow, the trimmed marks, the page's entries as
# {seq, conversation index, kind, payload}, and the count (0 when not asked).
_READ_PAGE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local current = redis.call('HGET', KEYS[1], 'seq') or '0'
local stale = ARGV[1] ~= '' and ARGV[1] ~= epoch
local max_events, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#KEYS - 1) / 2
local after, heads, done, trimmed, count = {}, {}, {}, {}, 0
for i = 1, n do
  after[i] = stale and 0 or tonumber(ARGV[4 + i])
  trimmed[i] = redis.call('GET', KEYS[2 * i + 1]) or '0-0'
  if ARGV[4] == '1' then
    local from = '(0-' .. after[i]
    while true do
      local got = redis.call('XRANGE', KEYS[2 * i], from, '+', 'COUNT', 16)
      count = count + #got
      if #got < 16 then break end
      from = '(' .. got[#got][1]
    end
  end
end
local page, bytes, more = {}, 0, 0
while true do
  local best, best_seq = nil, nil
  for i = 1, n do
    if not done[i] and not heads[i] then
      local got = redis.call('XRANGE', KEYS[2 * i], '(0-' .. after[i], '+', 'COUNT', 1)
      if #got == 0 then done[i] = true else heads[i] = got[1] end
    end
    if heads[i] then
      local seq = tonumber(string.sub(heads[i][1], 3))
      if not best_seq or seq < best_seq then best, best_seq = i, seq end
    end
  end
  if not best then break end
  local fields = heads[best][2]
  local kind, payload = '', ''
  for j = 1, #fields, 2 do
    if fields[j] == 'k' then kind = fields[j + 1] elseif fields[j] == 'p' then payload = fields[j + 1] end
  end
  local size = #kind + #payload
  if #page >= max_events or (#page > 0 and bytes + size > max_bytes) then
    more = 1
    break
  end
  page[#page + 1] = {best_seq, best, kind, payload}
  bytes = bytes + size
  after[best] = best_seq
  heads[best] = nil
end
return {epoch, current, more, trimmed, page, count}
"""


class RedisHistory:
    """The history in Redis: a stream per conversation, a sorted set of seen messageIds, one sequence."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._append = client.register_script(_APPEND)
        self._read = client.register_script(_READ)
        self._read_page = client.register_script(_READ_PAGE)
        # Appends waiting for this turn of the event loop to end: (EVALSHA arguments, its caller's future).
        self._waiting: list[tuple[tuple, asyncio.Future]] = []
        self._batches: set[asyncio.Task] = set()  # pipelines in flight, held until done

    async def append(self, *, conversation: str, kind: str, message_id: str | None, payload_json: str) -> Appended:
        """Store, de-duplicate and publish one event in one atomic step.

        The script runs in a pipeline with the other appends asked for in the same turn of the event
        loop: one connection taken from the pool, one write and one read for all of them (redis-py's
        machinery around one command was most of a push's cost: README, "Performance"). Each script is
        still atomic on its own, and each caller gets its own answer or error.
        """
        prefix = key_prefix()
        command = (
            "EVALSHA", self._append.sha, 5,
            f"{prefix}sequence", f"{prefix}history:{conversation}",
            f"{prefix}seen:{conversation}", f"{prefix}trimmed:{conversation}", history_bytes_key(conversation),
            kind, message_id or "", payload_json, settings.EVENT_HISTORY_MAX_EVENTS, settings.EVENT_HISTORY_SECONDS,
            _dedup_capacity(), channel_name(conversation), secrets.token_hex(4), settings.EVENT_HISTORY_MAX_BYTES,
            "0",
        )
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send_waiting)
        self._waiting.append((command, answer))
        duplicate, epoch, seq = await answer
        return Appended(Offset(_text(epoch), int(seq)), duplicate=bool(duplicate))

    def _send_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._run(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run(self, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        """Run ``batch``'s scripts in one pipeline and answer each caller (its reply, or the error)."""
        try:
            replies = await self._pipeline([command for command, _ in batch])
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis lost its script cache (a restart): load it once, run again what it refused.
                await self._client.script_load(_APPEND)
                again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                for i, reply in zip(again, await self._pipeline([batch[i][0] for i in again])):
                    replies[i] = reply
        except Exception as error:  # Redis unreachable, or slower than its socket timeout: every caller's error
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for _, answer in batch:
                answer.cancel()
            raise
        for (_, answer), reply in zip(batch, replies):
            if answer.done():
                continue  # its caller gave up waiting (a timeout)
            if isinstance(reply, Exception):
                answer.set_exception(reply)
            else:
                answer.set_result(reply)

    async def _pipeline(self, commands: list[tuple]) -> list:
        """Run ``commands`` in one pipeline, the first as EVAL checking the server process; their replies."""
        pipeline = self._client.pipeline(transaction=False)
        first, *others = commands
        pipeline.execute_command("EVAL", _APPEND, *first[2:-1], "1")
        for command in others:
            pipeline.execute_command(*command)
        return await pipeline.execute(raise_on_error=False)

    async def read(self, since: Mapping[str, int], *, epoch: str | None) -> Replay:
        """The events after ``since[conversation]`` in each conversation, read atomically, in sequence order.

        ``epoch`` is the epoch ``since`` was counted in (None: the positions are this epoch's own).
        """
        prefix = key_prefix()
        conversations = list(since)
        keys = [f"{prefix}sequence"]
        for conversation in conversations:
            keys += [f"{prefix}history:{conversation}", f"{prefix}trimmed:{conversation}"]
        reply = await self._read(keys=keys, args=[since[c] for c in conversations])
        current_epoch, current_seq = _text(reply[0]), int(reply[1])
        complete = epoch is None or epoch == current_epoch
        events: list[Event] = []
        for conversation, (trimmed, entries) in zip(conversations, reply[2:]):
            if _seq_of(trimmed) > since[conversation]:
                complete = False  # events after the position were trimmed away
            for entry_id, fields in entries:
                values = dict(zip(fields[::2], fields[1::2]))
                events.append(
                    Event(_seq_of(entry_id), current_epoch, conversation, _text(values[b"k"]), _text(values[b"p"]))
                )
        events.sort(key=lambda event: event.seq)
        return Replay(events, complete and bool(current_epoch or not events), Offset(current_epoch, current_seq))

    async def read_page(self, since: Mapping[str, int], *, epoch: str | None, max_events: int,
                        max_bytes: int, count: bool = False) -> Replay:
        """The first events after ``since[conversation]`` in each conversation, in sequence order, read
        atomically: at most ``max_events`` of them and ``max_bytes`` (of their kinds and payloads; the first
        event is taken whatever its size). With ``more``, the page stopped at those bounds and ``position``
        is its last event: every event of these conversations up to it is in the page (or was before
        ``since``), so the next page reads after it. Without, the page reaches the history's end, and
        ``position`` is the sequence's end. Positions of another ``epoch`` than the current one read from the
        current epoch's start (the page is not ``complete``). With ``count``, ``total`` is the number of
        events the whole replay holds now (a walk of the streams in Redis: for the plain protocol's answer)."""
        prefix = key_prefix()
        conversations = list(since)
        keys = [f"{prefix}sequence"]
        for conversation in conversations:
            keys += [f"{prefix}history:{conversation}", f"{prefix}trimmed:{conversation}"]
        reply = await self._read_page(
            keys=keys, args=[epoch or "", max_events, max_bytes, "1" if count else "0",
                             *(since[c] for c in conversations)]
        )
        current_epoch, current_seq, more, trimmed_marks, entries, total = reply
        current_epoch = _text(current_epoch)
        complete = epoch is None or epoch == current_epoch
        if complete and any(_seq_of(mark) > since[c] for c, mark in zip(conversations, trimmed_marks)):
            complete = False  # events after a position were trimmed away
        events = [Event(int(seq), current_epoch, conversations[int(index) - 1], _text(kind), _text(payload))
                  for seq, index, kind, payload in entries]
        position = Offset(current_epoch, events[-1].seq if more else int(current_seq))
        return Replay(events, complete and bool(current_epoch or not events), position, more=bool(more),
                      total=int(total) if count else None)

    async def position(self) -> Offset:
        """The current end of the sequence (no events yet: seq 0). Before the first event the epoch is made
        here (as the append script would make it): a position without one could never be resumed from."""
        key = f"{key_prefix()}sequence"
        epoch, seq = await self._client.hmget(key, ["epoch", "seq"])
        if not epoch:
            await self._client.hsetnx(key, "epoch", secrets.token_hex(4))
            epoch, seq = await self._client.hmget(key, ["epoch", "seq"])
        return Offset(_text(epoch), int(seq or 0))


class MemoryHistory:
    """The same history in this process, for development mode without Redis; ``listener`` gets each new event."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self._streams: dict[str, deque[Event]] = {}
        self._bytes: dict[str, int] = {}  # per conversation, of its stored events' payload JSON (UTF-8)
        self._trimmed: dict[str, int] = {}
        self._seen: dict[str, dict[str, int]] = {}
        self.listener: Callable[[Event], None] | None = None

    async def append(self, *, conversation: str, kind: str, message_id: str | None, payload_json: str) -> Appended:
        seen = self._seen.setdefault(conversation, {})
        member = f"{kind} {message_id}"
        if message_id and member in seen:
            return Appended(Offset(self.epoch, seen[member]), duplicate=True)
        self.seq += 1
        event = Event(self.seq, self.epoch, conversation, kind, payload_json)
        stream = self._streams.setdefault(conversation, deque())
        stream.append(event)
        stored = self._bytes.get(conversation, 0) + _size(event)
        # As the Redis script trims: by count and by bytes, never the event just stored.
        while len(stream) > settings.EVENT_HISTORY_MAX_EVENTS or (
                stored > settings.EVENT_HISTORY_MAX_BYTES and len(stream) > 1):
            gone = stream.popleft()
            stored -= _size(gone)
            self._trimmed[conversation] = gone.seq
        self._bytes[conversation] = stored
        if message_id:
            seen[member] = self.seq
            while len(seen) > _dedup_capacity():
                del seen[next(iter(seen))]
        if self.listener is not None:
            self.listener(event)
        return Appended(Offset(self.epoch, self.seq), duplicate=False)

    async def read(self, since: Mapping[str, int], *, epoch: str | None) -> Replay:
        complete = epoch is None or epoch == self.epoch
        events = []
        for conversation, after in since.items():
            if self._trimmed.get(conversation, 0) > after:
                complete = False
            events.extend(event for event in self._streams.get(conversation, ()) if event.seq > after)
        events.sort(key=lambda event: event.seq)
        return Replay(events, complete, Offset(self.epoch, self.seq))

    async def read_page(self, since: Mapping[str, int], *, epoch: str | None, max_events: int,
                        max_bytes: int, count: bool = False) -> Replay:
        stale = epoch is not None and epoch != self.epoch
        replay = await self.read({c: 0 if stale else after for c, after in since.items()}, epoch=None)
        complete = replay.complete and not stale and all(
            self._trimmed.get(c, 0) <= after for c, after in since.items())
        total = len(replay.events) if count else None
        page: list[Event] = []
        size = 0
        for event in replay.events:
            grown = size + len(event.kind) + len(event.payload_json)
            if len(page) >= max_events or (page and grown > max_bytes):
                return Replay(page, complete, Offset(self.epoch, page[-1].seq), more=True, total=total)
            page.append(event)
            size = grown
        return Replay(page, complete, Offset(self.epoch, self.seq), total=total)

    async def position(self) -> Offset:
        return Offset(self.epoch, self.seq)


def _size(event: Event) -> int:
    return len(event.payload_json.encode("utf-8"))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _seq_of(entry_id: bytes | str) -> int:
    return int(_text(entry_id).partition("-")[2] or 0)


_memory_histories: LoopLocal[MemoryHistory] = LoopLocal(MemoryHistory)
_redis_histories: redis_client.PerClient[RedisHistory] = redis_client.PerClient(RedisHistory)


def get_history() -> RedisHistory | MemoryHistory:
    """The history for this process: in Redis when REDISHOST is set, else in process (development mode)."""
    if not redis_client.is_configured():
        return memory_history()
    return _redis_histories.get()


def memory_history() -> MemoryHistory:
    """The in-process history of this event loop (development mode without Redis)."""
    return _memory_histories.get()


# --- what operators see and do (the admin's live view) -------------------------------------------

# KEYS: sequence hash, history stream, trimmed mark, history bytes. ARGV: history seconds. Drops the stored
# events (and their running byte total) and marks everything up to the current sequence number trimmed, so a
# replay from before the purge says it is not whole.
# The seen messageIds stay: a redelivery of a purged event is still recognised and not sent again.
_PURGE = """
local removed = redis.call('XLEN', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[4])
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
redis.call('SET', KEYS[3], '0-' .. seq, 'EX', ARGV[1])
return removed
"""


@dataclass(frozen=True, slots=True)
class EventSummary:
    """What an operator may see of a stored event: ids, kind and times, never the notification's content."""

    offset: str
    kind: str
    message_id: str | None
    publish_time: str | None
    ack_time: str | None


async def recent_events(conversation: str, count: int) -> list[EventSummary]:
    """The conversation's newest ``count`` stored events, newest first (Redis only)."""
    prefix = key_prefix()
    client = redis_client.get_redis()
    epoch = await client.hget(f"{prefix}sequence", "epoch")
    entries = await client.xrevrange(f"{prefix}history:{conversation}", count=count)
    summaries = []
    for entry_id, fields in entries:
        try:
            payload = orjson.loads(fields[b"p"])
        except (orjson.JSONDecodeError, KeyError):
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        summaries.append(EventSummary(
            offset=f"{_text(epoch or b'')}-{_seq_of(entry_id)}",
            kind=_text(fields.get(b"k", b"")),
            message_id=_short(payload.get("message_id")),
            publish_time=_short(payload.get("publish_time")),
            ack_time=_short(payload.get("ack_time")),
        ))
    return summaries


async def purge(conversation: str) -> int:
    """Delete the conversation's stored events (Redis only); how many there were."""
    prefix = key_prefix()
    client = redis_client.get_redis()
    keys = [f"{prefix}sequence", f"{prefix}history:{conversation}", f"{prefix}trimmed:{conversation}",
            history_bytes_key(conversation)]
    return int(await client.eval(_PURGE, len(keys), *keys, settings.EVENT_HISTORY_SECONDS))


async def stored_conversations(limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` conversations with stored events (Redis only), and whether there are more."""
    prefix = f"{key_prefix()}history:"
    names: list[str] = []
    async for key in redis_client.get_redis().scan_iter(match=f"{prefix}*", count=1000):
        if len(names) == limit:
            return sorted(names), True
        names.append(_text(key)[len(prefix):])
    return sorted(names), False


async def accepted_count() -> Offset:
    """The sequence's current position: how many events were accepted in its epoch."""
    return await get_history().position()


def _short(value: object) -> str | None:
    return value[:100] if isinstance(value, str) else None
