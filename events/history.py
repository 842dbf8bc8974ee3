"""Every accepted event, in a bounded per-conversation history, numbered by its conversation's own sequence.

Each conversation has its own sequence and *epoch* (a random tag made with
the sequence, renewed whenever another Redis server process appends to it: a
restart, a failover): an event's offset ``epoch-seq`` names its place in its
conversation. The new epoch remembers the one it took over from and the seq
it took over at (the new process holds that epoch's start): an offset of it
still resumes, exactly. Offsets of any older epoch (Redis lost the
conversation's data, or some of it) cannot be resumed from. A desktop in several
conversations holds a position in each (``connector.desktops.offsets`` packs
them into the one offset a Socket.IO client hands back).

Every key of one conversation shares one Redis Cluster hash tag, the
conversation's name: ``<prefix>{<conversation>}:seq`` (the sequence: epoch,
seq, the server process that last appended), ``:history`` (a stream, entry id
``0-<seq>``), ``:seen`` (messageIds accepted), ``:trimmed`` (the newest entry
trimmed away), ``:history-bytes`` (the stream's payload bytes) and the
sharded pub/sub channel ``:events``. Appending an event touches only those:
it de-duplicates it (a Pub/Sub redelivery of a ``messageId`` already
accepted for that kind in that conversation is not stored or sent again),
stores it, trims the history exactly by count and by bytes, oldest first,
and publishes it (``SPUBLISH``), in one atomic step (``RedisHistory``'s Lua
function: one Redis round trip per push, shared by the pushes that arrive
together: the appends of one turn of the event loop go out in one write, on
a connection kept for them, ``events.redis_line``; in a pooled pipeline while
it is busy, and on a Redis Cluster).
Replays read conversation by conversation, each in its own slot. Without
Redis (development mode) ``MemoryHistory`` keeps the same promises in process.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from common.loop_local import LoopLocal
from events import redis_client, replica_ack
from events.redis_line import Line

#: Characters of an epoch: 12 hex digits. Offsets of the single sequence all conversations once shared had 8:
#: such an offset never names an epoch of a conversation, so it reads as another epoch's (not resumable).
EPOCH_HEX_DIGITS = 12
#: A conversation's sequence outlives its history (it is a few bytes): a desktop that sat in a quiet
#: conversation keeps a resumable position for this long after the last event, or a join once it has events
#: (a sequence without events, made by a join, lives EVENT_HISTORY_SECONDS).
SEQUENCE_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Offset:
    """A position in one conversation's sequence: ``epoch-seq`` on the wire, opaque to clients. An empty epoch
    stands for the conversation's current one (a position counted from its start, or taken just now)."""

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
        if not epoch or not seq.isdigit() or len(seq) > 15 or not epoch.isalnum() or not epoch.isascii():
            return None
        return cls(epoch, int(seq))


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: its place in its conversation's sequence, its kind, and the desktop payload as compact
    JSON."""

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

    @property
    def position(self) -> Offset:
        return Offset(self.epoch, self.seq)


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``append`` did: the event's offset, and whether it was a duplicate (then not sent again)."""

    offset: Offset
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Replay:
    """Events after some positions, conversation by conversation, each conversation's in its sequence order.

    ``complete`` is False when the history no longer reaches back that far: ``trimmed`` names the
    conversations whose events after the position were trimmed away (or expired), ``stale`` those whose
    position was of an epoch Redis lost (read from the current epoch's start: each of its events came after; a
    position of the epoch the current one continues is not stale, ``_continued``).
    ``positions`` says where each conversation is read up to: its last event in the replay when the replay
    stopped inside it, else the end of its sequence (its current epoch); a conversation in ``trimmed`` the
    replay stopped before reading any of, the seq its oldest event kept follows; ``starts`` where it was read from, in
    its current epoch (a position of the epoch the current one continues, resolved: where a join that asked
    for this replay starts)."""

    events: list[Event]
    positions: dict[str, Offset]
    trimmed: frozenset[str] = frozenset()
    stale: frozenset[str] = frozenset()
    #: ``read_page``: the page stopped at its bounds: more events follow ``positions``.
    more: bool = False
    #: ``read_page(count=True)``: how many events the whole replay holds, this page's and the pages after.
    total: int | None = None
    starts: dict[str, Offset] = field(default_factory=dict)
    #: ``read_page(whole_first=False)``: the page holds no event because the next one alone is over ``max_bytes``;
    #: its size (of its kind and payload), the bound that reads it.
    too_big: int = 0

    @property
    def complete(self) -> bool:
        return not self.trimmed and not self.stale


Since = Mapping[str, "Offset | int"]


def event_bytes(event: Event) -> int:
    """An event's size as a page's byte bound counts it (in Redis too): its kind's and payload's UTF-8."""
    kind, payload = event.kind, event.payload_json
    return ((len(kind) if kind.isascii() else len(kind.encode("utf-8")))
            + (len(payload) if payload.isascii() else len(payload.encode("utf-8"))))


def key_prefix() -> str:
    return settings.EVENT_KEY_PREFIX


def conversation_key(conversation: str, part: str) -> str:
    """A key of ``conversation``'s: its name is the hash tag, so all of them live in one Redis Cluster slot."""
    return f"{key_prefix()}{{{conversation}}}:{part}"


def conversation_keys(conversation: str) -> list[str]:
    """The keys one push touches: sequence, history stream, seen messageIds, trimmed mark, history bytes."""
    base = f"{key_prefix()}{{{conversation}}}:"  # the prefix read once: a settings read is a Python call
    return [base + part for part in ("seq", "history", "seen", "trimmed", "history-bytes")]


def channel_name(conversation: str) -> str:
    """The sharded pub/sub channel (``SSUBSCRIBE``) on which a conversation's events reach the connectors: in
    the slot of its keys."""
    return conversation_key(conversation, "events")


def history_bytes_key(conversation: str) -> str:
    """The Redis key holding the bytes of payload JSON stored in the conversation's history (its running total)."""
    return conversation_key(conversation, "history-bytes")


def new_epoch() -> str:
    return secrets.token_hex(EPOCH_HEX_DIGITS // 2)


def decode_published(conversation: str, message: bytes | str) -> Event:
    """The event in a pub/sub message of ``channel_name(conversation)``: ``<offset> <kind> <payload JSON>``,
    as the append function publishes it."""
    text = message.decode("utf-8") if isinstance(message, bytes) else message
    offset, kind, payload_json = text.split(" ", 2)
    parsed = Offset.parse(offset)
    if parsed is None:
        raise ValueError(f"not an event offset: {offset[:40]!r}")
    return Event(parsed.seq, parsed.epoch, conversation, kind, payload_json)


def _dedup_capacity() -> int:
    # Redeliveries come within minutes; ten histories' worth of messageIds covers them.
    return 10 * settings.EVENT_HISTORY_MAX_EVENTS


def _sequence_seconds() -> int:
    return max(SEQUENCE_SECONDS, settings.EVENT_HISTORY_SECONDS)


def _positions(since: Since, epoch: str | None) -> dict[str, Offset]:
    """``since`` as offsets: a bare number is counted in ``epoch`` (None: the conversation's current one)."""
    return {conversation: at if isinstance(at, Offset) else Offset(epoch or "", at)
            for conversation, at in since.items()}


# The conversation's sequence, checked before each append (and when a position is taken): its epoch is renewed
# when the Redis server process is not the one that last appended (its run_id, new at every start, and another
# on a replica promoted by a failover): restored from a snapshot, or a replica that had not received the last
# writes, the sequence would count again numbers it already gave out, and a desktop holding one of them would
# be told its replay was whole while it missed events. Each append checks its own conversation's sequence (on a
# Redis Cluster each conversation's shard is another process) against the run_id its library read once
# (``_LIBRARY``).
# A missing sequence (a new conversation, or one whose sequence expired) is made in a new epoch, going on from
# the newest stored entry if any. A renewal for another process notes the epoch it ends and the seq this
# process took over at (``previous``, ``taken_at``): what this process holds of that epoch is its start, up to
# ``taken_at`` (replication and snapshots keep the order of writes), so a position in it still resumes
# (``_continued``); the numbering goes on from ``taken_at``. KEYS[1]: the sequence hash, KEYS[2]: the history
# stream; ``new_epoch``: a new epoch, used only if needed. Leaves ``epoch`` set.
_SEQUENCE = """
local run = server_run()
local found = redis.call('HMGET', KEYS[1], 'epoch', 'run')
local epoch = found[1]
if not epoch then
  epoch = new_epoch
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local seq = 0
  if #newest > 0 then seq = tonumber(string.match(newest[1][1], '%d+$')) end
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'run', run, 'seq', seq)
elseif found[2] ~= run then
  epoch = new_epoch
  local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'run', run, 'previous', found[1], 'taken_at', seq)
end
"""

# The append, as a function of a library (``_LIBRARY``).
# Trimming is exact, by count (EVENT_HISTORY_MAX_EVENTS) and by bytes (EVENT_HISTORY_MAX_BYTES of payload
# JSON, the running total kept in the history-bytes key beside the stream): the oldest entries go until the
# new one fits both, but the new one always stays, alone if it is over the byte budget by itself (a
# reconnecting desktop still recovers it; a push is bounded by PUSH_MAX_BODY_BYTES). Before trimming, the id
# of the newest entry about to go is kept in the trimmed key: a replay from before it cannot be whole (Redis
# 7.0's XINFO max-deleted-entry-id counts XDEL only, not trimming). Entries about to go are read in growing
# chunks: usually one, as many as a large new event pushes out otherwise.
# KEYS (one conversation's, one slot): sequence hash, history stream, seen zset, trimmed mark, history bytes.
# ARGV: kind, messageId ('' for none), payload JSON, max events, history seconds, dedup capacity, channel (in
# the same slot), a new epoch (used only if needed), max bytes, sequence seconds.
_APPEND = "local new_epoch = ARGV[8]\n" + _SEQUENCE + """
redis.call('EXPIRE', KEYS[1], ARGV[10])
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
    -- No running total beside a stored history (evicted): count it once.
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
redis.call('SPUBLISH', ARGV[7], epoch .. '-' .. seq .. ' ' .. ARGV[1] .. ' ' .. ARGV[3])
return {0, epoch, seq}
"""

# The position (a function of ``_LIBRARY``) at the end of the conversation's sequence (made, in a new epoch,
# when there is none yet: a position without an epoch could never be resumed from); its lifetime starts again:
# the sequence's of a conversation with events, the history's of one without (every join makes one for any
# name; only an append keeps a sequence a day). A position at seq 0 whose sequence then expires reads as
# another epoch's (the sequence is made again in a new one), never as whole. KEYS: sequence hash, history
# stream. ARGV: a new epoch, sequence seconds, history seconds. Returns the epoch and the seq.
_POSITION = "local new_epoch = ARGV[1]\n" + _SEQUENCE + """
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
if tonumber(seq) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {epoch, seq}
"""

# The append and the position as a Redis function library, so that the server process's run_id is read once
# per process rather than once per append (an INFO costs about 5 microseconds, a quarter of an append): a
# library's local variables live as long as its Lua engine, which a restart, a failover (another process) and
# a FUNCTION LOAD make anew, and the library is loaded again (it is kept in snapshots and replicated) when a
# call finds it missing. Its name carries a digest of its code: versions running side by side during a
# rolling deploy each call their own.
_LIBRARY_CODE = """
local run_id = nil
local function server_run()
  if not run_id then run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') end
  return run_id
end
redis.register_function('NAME_append', function(KEYS, ARGV)
""" + _APPEND + """
end)
redis.register_function('NAME_position', function(KEYS, ARGV)
""" + _POSITION + """
end)
"""
LIBRARY_NAME = "aa_history_" + hashlib.sha1(_LIBRARY_CODE.encode()).hexdigest()[:12]
_LIBRARY = f"#!lua name={LIBRARY_NAME}\n" + _LIBRARY_CODE.replace("'NAME_", f"'{LIBRARY_NAME}_")
_APPEND_FUNCTION, _POSITION_FUNCTION = f"{LIBRARY_NAME}_append", f"{LIBRARY_NAME}_position"

# One conversation's events after a position, within bounds. KEYS: sequence hash, history stream, trimmed mark.
# ARGV: the epoch the position is counted in ('' for the current one), the seq after which to read, most events
# (-1: no bound, 0: none, only the state), most bytes (of kinds and payloads), whether the first event is taken
# however big ('1'). A position of the epoch the current one took over from reads from where it took over, or
# from the position when that came before; a position of any other epoch reads from the current epoch's start:
# each of its events was pushed after Redis lost the older ones. Entries are read 64 at a time, so Redis holds
# no more than that beyond what it returns. Returns the epoch, the current seq, the trimmed mark, the stream's
# length, whether the read stopped at a bound with events after it (1), the entries as {id, kind, payload}, the
# epoch taken over from, the seq it was taken over at, and the size of the event the read stopped before when it
# took none because that one alone was over the byte bound (0 otherwise).
_READ = """
local found = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'previous', 'taken_at')
local epoch, current = found[1] or '', tonumber(found[2] or '0')
local previous, taken_at = found[3] or '', tonumber(found[4] or '0')
local after = tonumber(ARGV[2])
if ARGV[1] ~= '' and ARGV[1] ~= epoch then
  if ARGV[1] == previous then after = math.min(after, taken_at) else after = 0 end
end
local trimmed = redis.call('GET', KEYS[3]) or '0-0'
local length = redis.call('XLEN', KEYS[2])
-- The gap is derived from what is stored too (sequence numbers have no holes): the stream and its trimmed
-- mark expire after EVENT_HISTORY_SECONDS of quiet while the sequence lives on, and a replay from before
-- them must not read as whole. An empty stream under a sequence past the position lost everything up to
-- the sequence's end; a stream starting after the trimmed mark's next entry lost what came before it.
if length == 0 then
  if current > after then trimmed = '0-' .. current end
else
  local oldest = tonumber(string.match(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1][1], '%d+$'))
  if oldest - 1 > tonumber(string.match(trimmed, '%d+$')) then trimmed = '0-' .. (oldest - 1) end
end
local max_events, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local entries, bytes, more, from, too_big = {}, 0, 0, '(0-' .. after, 0
while length > 0 and (max_events < 0 or #entries < max_events) do
  local want = 64
  if max_events >= 0 then want = math.min(want, max_events - #entries) end
  local chunk = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', want)
  for _, entry in ipairs(chunk) do
    local fields, kind, payload = entry[2], '', ''
    for j = 1, #fields, 2 do
      if fields[j] == 'k' then kind = fields[j + 1] elseif fields[j] == 'p' then payload = fields[j + 1] end
    end
    local size = #kind + #payload
    if max_events >= 0 and (#entries > 0 or ARGV[5] ~= '1') and bytes + size > max_bytes then
      more = 1
      if #entries == 0 then too_big = size end
      break
    end
    entries[#entries + 1] = {entry[1], kind, payload}
    bytes = bytes + size
  end
  if more == 1 or #chunk < want then break end
  from = '(' .. chunk[#chunk][1]
end
if more == 0 and max_events >= 0 and length > 0 then
  local last = after
  if #entries > 0 then last = tonumber(string.match(entries[#entries][1], '%d+$')) end
  if last < current then more = 1 end
end
return {epoch, current, trimmed, length, more, entries, previous, taken_at, too_big}
"""


@dataclass(slots=True)
class _Read:
    """One conversation's answer to ``_READ``."""

    epoch: str
    current: int
    trimmed: int
    length: int
    more: bool
    entries: list
    # The epoch this one took over from on another Redis process ('' for none), and the seq it took over at.
    previous: str = ""
    taken_at: int = 0
    # The read took no event: the next one alone is over its byte bound, and this big (0: not so).
    too_big: int = 0


def _parsed_read(reply: list) -> _Read:
    epoch, current, trimmed, length, more, entries, previous, taken_at, too_big = reply
    return _Read(_text(epoch), int(current), _seq_of(trimmed), int(length), bool(more), entries, _text(previous),
                 int(taken_at), int(too_big))


def _continued(at: Offset, state: _Read) -> int | None:
    """Where a read from ``at`` goes on in ``state``'s epoch, or None when ``at`` is of an epoch Redis lost.

    A position of the epoch the current one took over from (a failover, a restore: ``_SEQUENCE``) goes on from
    where it is, or from the takeover when it is past it: the events after the takeover in that epoch never
    reached the process now serving, and the desktop holding them has them. Older epochs are lost: two
    takeovers while a desktop was away leave its position unresumable, as Redis losing the data does."""
    if not at.epoch or at.epoch == state.epoch:
        return at.seq
    if at.epoch == state.previous:
        return min(at.seq, state.taken_at)
    return None


class _Walk:
    """A replay being made conversation by conversation from ``_Read`` answers (Redis's or the memory's)."""

    def __init__(self, positions: dict[str, Offset], *, count: bool = False) -> None:
        self.since = positions
        self.events: list[Event] = []
        self.positions: dict[str, Offset] = {}
        self.starts: dict[str, Offset] = {}
        self.trimmed: set[str] = set()
        self.stale: set[str] = set()
        self.more = False
        self.total = 0 if count else None
        self.too_big = 0

    def after(self, conversation: str, state: _Read) -> int:
        """Where ``conversation`` is read from in its current epoch; notes a gap."""
        after = _continued(self.since[conversation], state)
        if after is None:
            self.stale.add(conversation)  # Redis lost that epoch: every event of this one came after it
            return 0
        if state.trimmed > after:
            self.trimmed.add(conversation)  # events after the position were trimmed away
        return after

    def take(self, conversation: str, state: _Read, events: Iterable[Event], *, read: bool) -> None:
        """``conversation``'s state and the events read of it (``read``: its read was asked for)."""
        after = self.after(conversation, state)
        self.starts[conversation] = Offset(state.epoch, after)
        if self.total is not None and state.length:
            self.total += min(state.length, max(0, state.current - after))
        # What was trimmed away is read past: the next page goes on from the oldest event kept.
        last = max(after, state.trimmed) if conversation in self.trimmed else after
        for event in events:
            self.events.append(event)
            last = event.seq
        if not state.more:
            last = max(last, state.current)
        self.positions[conversation] = Offset(state.epoch, last)
        if state.more:
            self.more = True
        if state.too_big and not self.too_big:
            self.too_big = state.too_big

    def replay(self) -> Replay:
        return Replay(self.events, self.positions, frozenset(self.trimmed), frozenset(self.stale), self.more,
                      self.total, self.starts, 0 if self.events else self.too_big)


class RedisHistory:
    """The history in Redis: per conversation a sequence, a stream, a sorted set of seen messageIds."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._read = client.register_script(_READ)
        # Appends waiting for this turn of the event loop to end: (EVALSHA arguments, its caller's future).
        self._waiting: list[tuple[tuple, asyncio.Future]] = []
        self._batches: set[asyncio.Task] = set()  # pipelines in flight, held until done
        # On a cluster, pipelines in flight at once: each takes a connection to each node it writes to, and
        # redis-py's cluster pipeline fails (MaxConnectionsError) rather than wait for one at the client's bound
        # per node (``redis_client.WaitingRedisCluster`` waits for single commands only). Half the bound leaves
        # the rest to other commands.
        self._in_flight = (asyncio.Semaphore(max(1, redis_client.MAX_CONNECTIONS // 2))
                           if isinstance(client, RedisCluster) else None)
        # Standalone: a connection kept for the appends, free of redis-py's pipeline machinery (most of a
        # paced push's Redis cost); the appends of a turn that find it busy take a pooled pipeline.
        self._line = None if isinstance(client, RedisCluster) else Line(client, redis_client.SOCKET_TIMEOUT_SECONDS)

    async def append(self, *, conversation: str, kind: str, message_id: str | None, payload_json: str) -> Appended:
        """Store, de-duplicate and publish one event in one atomic step, on the conversation's keys only.

        The function runs with the other appends asked for in the same turn of the event loop: one write and
        one read for all of them, on the connection kept for appends (``_appends``). Each call is still atomic
        on its own, and each caller gets its own answer or error.
        """
        command = (
            "FCALL", _APPEND_FUNCTION, 5, *conversation_keys(conversation),
            kind, message_id or "", payload_json, settings.EVENT_HISTORY_MAX_EVENTS, settings.EVENT_HISTORY_SECONDS,
            _dedup_capacity(), channel_name(conversation), new_epoch(), settings.EVENT_HISTORY_MAX_BYTES,
            _sequence_seconds(),
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
        """Run ``batch``'s calls in one pipeline and answer each caller (its reply, or the error)."""
        try:
            replies = await self._appends([command for command, _ in batch])
            if any(_function_missing(reply) for reply in replies):
                # Redis lost its functions (restored from an older snapshot, or flushed): load them once, run
                # again what it refused.
                await self._load_library()
                again = [i for i, reply in enumerate(replies) if _function_missing(reply)]
                for i, reply in zip(again, await self._appends([batch[i][0] for i in again])):
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

    async def _appends(self, commands: list[tuple]) -> list:
        """Run the append ``commands``: on the line kept for them when it is free (standalone Redis), else in a
        pooled pipeline (a cluster's client sends each node its share). With ``REDIS_ACK_REPLICAS`` a WAIT
        follows them on the same connection, and an append it found short of replicas answers
        ``ReplicasBehind``."""
        if self._line is None or self._line.busy:
            return await self._pipeline(commands, confirm=True)
        if not replica_ack.wanted():
            return await self._line.run(commands)
        wait, waits = replica_ack.single_wait(len(commands))
        keys = [command[3] for command in commands]
        return waits.judge(self._client, keys, await self._line.run([*commands, wait]))

    async def _pipeline(self, commands: list[tuple], *, confirm: bool = False) -> list:
        """Run ``commands`` in one pipeline; their replies (an error as its exception). ``confirm`` (appends) with
        ``REDIS_ACK_REPLICAS``: a WAIT follows them on each connection, and an append it found short of
        replicas answers ``ReplicasBehind``. On a cluster, one pipeline per shard, at once (one write each, as
        redis-py's one pipeline would send them): a shard that fails (its primary killed, before its replica
        takes over) fails its own commands only, where redis-py's one pipeline raised its error for every
        shard's, and every push of the batch was answered 503."""
        if self._in_flight is None:
            return await self._one_pipeline(commands, confirm)
        async with self._in_flight:
            shards = self._by_shard(commands)
            if len(shards) == 1:
                return await self._one_pipeline(commands, confirm)
            answers = await asyncio.gather(*(self._one_pipeline([commands[i] for i in indexes], confirm)
                                             for indexes in shards), return_exceptions=True)
            replies: list = [None] * len(commands)
            for indexes, answer in zip(shards, answers):
                if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                    raise answer
                for n, i in enumerate(indexes):
                    replies[i] = answer if isinstance(answer, Exception) else answer[n]
            return replies

    async def _one_pipeline(self, commands: list[tuple], confirm: bool) -> list:
        pipeline = self._client.pipeline(transaction=False)
        for command in commands:
            pipeline.execute_command(*command)
        keys = [command[3] for command in commands]
        waits = await replica_ack.add_waits(self._client, pipeline, keys) if confirm and replica_ack.wanted() else None
        if waits is None:
            return await pipeline.execute(raise_on_error=False)
        if not isinstance(self._client, RedisCluster):
            return waits.judge(self._client, keys, await pipeline.execute(raise_on_error=False))
        # A redirected append is sent again by us, not by redis-py: redis-py would send it after the WAITs ran.
        replies = await pipeline.execute(raise_on_error=False, allow_redirections=False)
        return await replica_ack.redirected(self._client, commands, waits.judge(self._client, keys, replies), waits)

    def _by_shard(self, commands: list[tuple]) -> list[list[int]]:
        """The commands' indexes grouped by the primary the client knows for their first key's slot (each command
        is ``(FCALL or EVALSHA, name, number of keys, key, ...)``); a slot it does not know is a group of its own."""
        known = self._client.nodes_manager.slots_cache
        shards: dict[str, list[int]] = {}
        for i, command in enumerate(commands):
            nodes = known.get(self._client.keyslot(command[3]))
            shards.setdefault(nodes[0].name if nodes else "", []).append(i)
        return list(shards.values())

    async def _reads(self, asks: list[tuple[str, Offset, int, int, bool]]) -> list[_Read]:
        """``_READ`` for each (conversation, position, most events, most bytes, first taken whatever its size),
        each on its own conversation's keys, in one pipeline."""
        parts = ("seq", "history", "trimmed")
        commands = [("EVALSHA", self._read.sha, 3, *(conversation_key(c, part) for part in parts),
                     at.epoch, at.seq, events, size, "1" if first else "0") for c, at, events, size, first in asks]
        if not commands:
            return []
        replies = await self._pipeline(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self._client.script_load(_READ)
            replies = await self._pipeline(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [_parsed_read(reply) for reply in replies]

    def _events(self, conversation: str, state: _Read) -> list[Event]:
        return [Event(_seq_of(entry_id), state.epoch, conversation, _text(kind), _text(payload))
                for entry_id, kind, payload in state.entries]

    async def read(self, since: Since, *, epoch: str | None = None) -> Replay:
        """Every event after ``since[conversation]`` in each conversation (a bare number is counted in
        ``epoch``, None: the conversation's current one), conversation by conversation (one read each, in one
        pipeline), each conversation's in its sequence order."""
        walk = _Walk(_positions(since, epoch))
        states = await self._reads([(c, at, -1, 0, True) for c, at in walk.since.items()])
        for conversation, state in zip(walk.since, states):
            walk.take(conversation, state, self._events(conversation, state), read=True)
        return walk.replay()

    async def read_page(self, since: Since, *, epoch: str | None = None, max_events: int,
                        max_bytes: int, count: bool = False, whole_first: bool = True) -> Replay:
        """The first events after ``since[conversation]`` in each conversation: at most ``max_events`` of them and
        ``max_bytes`` (of their kinds and payloads; the first event is taken whatever its size, unless not
        ``whole_first``: then a page that would start with an event over ``max_bytes`` holds none, and
        ``too_big`` says its size), conversation by conversation in ``since``'s order. With ``more``, the page
        stopped at those bounds, and the next page reads after ``positions``. Positions of an epoch a conversation
        lost read from its current epoch's start, and a conversation trimmed past its position goes on from its
        oldest event kept (the page is not ``complete``). With ``count``, ``total`` is the number of events
        the whole replay holds now.

        One round trip reads the first conversation's page and every other's state (its sequence, trimmed mark,
        length); each other conversation with events after its position then takes what room is left, one
        read each: no more is read from Redis than the page holds."""
        walk = _Walk(_positions(since, epoch), count=count)
        conversations = list(walk.since)
        states = await self._reads([(c, walk.since[c], max_events if i == 0 else 0, max_bytes, whole_first)
                                    for i, c in enumerate(conversations)])
        events_left, bytes_left = max_events, max_bytes
        for i, (conversation, state) in enumerate(zip(conversations, states)):
            read = i == 0
            # A page stops at an event over its bytes (``too_big``): the conversations after it are not read.
            if (not read and state.more and events_left > 0 and (bytes_left > 0 or not walk.events)
                    and not walk.too_big):
                at = walk.since[conversation]
                (state,) = await self._reads([(conversation, at, events_left, bytes_left,
                                               whole_first and not walk.events)])
                read = True
            events = self._events(conversation, state) if read else []
            walk.take(conversation, state, events, read=read)
            events_left -= len(events)
            bytes_left -= sum(event_bytes(event) for event in events)
        return walk.replay()

    async def position(self, conversation: str) -> Offset:
        """The current end of ``conversation``'s sequence (no events yet: seq 0). Before the first event the
        epoch is made here (as the append function would make it): a position without one could never be resumed
        from. The sequence's lifetime starts again (a sequence without events lives as long as a history)."""
        command = ("FCALL", _POSITION_FUNCTION, 2, conversation_key(conversation, "seq"),
                   conversation_key(conversation, "history"), new_epoch(), _sequence_seconds(),
                   settings.EVENT_HISTORY_SECONDS)
        try:
            epoch, seq = await self._client.execute_command(*command)
        except ResponseError as error:
            if not _function_missing(error):
                raise
            await self._load_library()
            epoch, seq = await self._client.execute_command(*command)
        return Offset(_text(epoch), int(seq))

    async def _load_library(self) -> None:
        await self._client.function_load(_LIBRARY, replace=True)


class MemoryHistory:
    """The same history in this process, for development mode without Redis; ``listener`` gets each new event."""

    def __init__(self) -> None:
        self._epochs: dict[str, str] = {}
        self._seqs: dict[str, int] = {}
        self._streams: dict[str, deque[Event]] = {}
        self._bytes: dict[str, int] = {}  # per conversation, of its stored events' payload JSON (UTF-8)
        self._trimmed: dict[str, int] = {}
        self._seen: dict[str, dict[str, int]] = {}
        self.listener: Callable[[Event], None] | None = None

    def _epoch(self, conversation: str) -> str:
        return self._epochs.setdefault(conversation, new_epoch())

    async def append(self, *, conversation: str, kind: str, message_id: str | None, payload_json: str) -> Appended:
        epoch = self._epoch(conversation)
        seen = self._seen.setdefault(conversation, {})
        member = f"{kind} {message_id}"
        if message_id and member in seen:
            return Appended(Offset(epoch, seen[member]), duplicate=True)
        seq = self._seqs[conversation] = self._seqs.get(conversation, 0) + 1
        event = Event(seq, epoch, conversation, kind, payload_json)
        stream = self._streams.setdefault(conversation, deque())
        stream.append(event)
        stored = self._bytes.get(conversation, 0) + _size(event)
        # As the Redis function trims: by count and by bytes, never the event just stored.
        while len(stream) > settings.EVENT_HISTORY_MAX_EVENTS or (
                stored > settings.EVENT_HISTORY_MAX_BYTES and len(stream) > 1):
            gone = stream.popleft()
            stored -= _size(gone)
            self._trimmed[conversation] = gone.seq
        self._bytes[conversation] = stored
        if message_id:
            seen[member] = seq
            while len(seen) > _dedup_capacity():
                del seen[next(iter(seen))]
        if self.listener is not None:
            self.listener(event)
        return Appended(Offset(epoch, seq), duplicate=False)

    def _state(self, conversation: str, at: Offset, max_events: int, max_bytes: int, first: bool) -> _Read:
        """What ``_READ`` answers, from this process's history."""
        epoch = self._epochs.get(conversation, "")
        current = self._seqs.get(conversation, 0)
        after = _continued(at, _Read(epoch, current, 0, 0, False, [])) or 0
        stream = self._streams.get(conversation, ())
        entries, size, more, too_big = [], 0, False, 0
        for event in stream:
            if event.seq <= after or max_events < 0:
                if event.seq > after:
                    entries.append(event)
                continue
            grown = size + event_bytes(event)
            if len(entries) >= max_events or ((entries or not first) and grown > max_bytes):
                more = True
                if not entries and len(entries) < max_events:
                    too_big = grown
                break
            entries.append(event)
            size = grown
        return _Read(epoch, current, self._trimmed.get(conversation, 0), len(stream), more, entries, too_big=too_big)

    async def read(self, since: Since, *, epoch: str | None = None) -> Replay:
        walk = _Walk(_positions(since, epoch))
        for conversation, at in walk.since.items():
            state = self._state(conversation, at, -1, 0, True)
            walk.take(conversation, state, state.entries, read=True)
        return walk.replay()

    async def read_page(self, since: Since, *, epoch: str | None = None, max_events: int,
                        max_bytes: int, count: bool = False, whole_first: bool = True) -> Replay:
        walk = _Walk(_positions(since, epoch), count=count)
        events_left, bytes_left = max_events, max_bytes
        for conversation, at in walk.since.items():
            read = events_left > 0 and (bytes_left > 0 or not walk.events) and not walk.too_big
            state = self._state(conversation, at, events_left if read else 0, bytes_left,
                                whole_first and not walk.events)
            walk.take(conversation, state, state.entries, read=read)
            events_left -= len(state.entries)
            bytes_left -= sum(event_bytes(event) for event in state.entries)
        return walk.replay()

    async def position(self, conversation: str) -> Offset:
        return Offset(self._epoch(conversation), self._seqs.get(conversation, 0))


def _function_missing(reply: object) -> bool:
    return isinstance(reply, ResponseError) and "Function not found" in str(reply)


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

# KEYS (one conversation's): sequence hash, history stream, trimmed mark, history bytes. ARGV: history seconds.
# Drops the stored events (and their running byte total) and marks everything up to the current sequence
# number trimmed, so a replay from before the purge says it is not whole.
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
    client = redis_client.get_redis()
    epoch = await client.hget(conversation_key(conversation, "seq"), "epoch")
    entries = await client.xrevrange(conversation_key(conversation, "history"), count=count)
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
    keys = [conversation_key(conversation, part) for part in ("seq", "history", "trimmed", "history-bytes")]
    return int(await redis_client.get_redis().eval(_PURGE, len(keys), *keys, settings.EVENT_HISTORY_SECONDS))


def _stored_conversation(key: bytes | str) -> str | None:
    """The conversation whose history stream ``key`` is (``<prefix>{<conversation>}:history``)."""
    text = _text(key)
    head, tail = f"{key_prefix()}{{", "}:history"
    if text.startswith(head) and text.endswith(tail):
        return text[len(head):-len(tail)]
    return None


async def stored_conversations(limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` conversations with stored events (Redis only), and whether there are more."""
    names: list[str] = []
    async for key in redis_client.get_redis().scan_iter(match=f"{_glob(key_prefix())}{{*}}:history", count=1000):
        name = _stored_conversation(key)
        if name is None:
            continue
        if len(names) == limit:
            return sorted(names), True
        names.append(name)
    return sorted(names), False


async def accepted_count(conversations: list[str]) -> int:
    """How many events ``conversations`` accepted, each in its current epoch: the sum of their sequences
    (there is no count over all conversations: each has its own sequence)."""
    if not conversations:
        return 0
    if not redis_client.is_configured():
        history = memory_history()
        return sum((await history.position(c)).seq for c in conversations)
    pipeline = redis_client.get_redis().pipeline(transaction=False)
    for conversation in conversations:
        pipeline.hget(conversation_key(conversation, "seq"), "seq")
    return sum(int(seq or 0) for seq in await pipeline.execute())


def _glob(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\{}" else c for c in text)


def _short(value: object) -> str | None:
    return value[:100] if isinstance(value, str) else None
