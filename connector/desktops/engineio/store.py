"""A long-polling session's state in Redis, so that any connector process can serve its next request.

One hash per Engine.IO session, ``<prefix>eio:{<sid>}``: when it began, the
heartbeat (when the next ping is due, by when the pong must come: past that
deadline the session is over for whichever request comes next), the lock of
the one GET that may wait at a time, the one WebSocket that may upgrade it
(and until when), and, once the client connected to ``/``, its identity,
recovery ``pid`` and per joined conversation (field ``c:<name>``) the
position (``epoch-seq`` in that conversation) it has been sent up to, which
its answers' offsets carry; ``served_by``, the process that took
its latest GET (for the operators' live view), and ``closed`` (why:
``operator``, ``token_expired``, ``queue_full``) once the server ended it
while no GET of it was there to answer CLOSE. Beside it,
``<prefix>eio:{<sid>}:out`` lists the packets waiting for the next GET (the
CONNECT answer, acknowledgements), at most
``SOCKETIO_POLLING_QUEUE_LIMIT`` packets and ``SOCKETIO_POLLING_QUEUE_BYTES``
(their total in the hash's ``out_bytes``): a POST that would queue more ends
the session instead (``queue_full``), its list dropped at once, as a WebSocket
too far behind is closed (4429). A POST that adds packets publishes on the sharded channel
``<prefix>eio:{<sid>}:wake``, so a GET waiting on another process answers at once: in the session's slot, so
that on a Redis Cluster the script that changes the session publishes it too (``SPUBLISH``), and only the
shard that owns the slot carries it (classic ``PUBLISH`` goes to every node of a cluster).

Both keys expire: an unauthenticated session after ``WEBSOCKET_AUTH_TIMEOUT``,
a connected one ``SOCKETIO_PING_INTERVAL + SOCKETIO_PING_TIMEOUT`` after its
last request, refreshed by each. Every step is one Lua script (one round
trip, atomic), and times are Redis's own clock (``TIME``), so processes whose
clocks differ agree on every deadline.

The hash tag ``{<sid>}`` keeps a session's keys in one slot, so that on a Redis
Cluster each script still sees them all. The session's recovery record
(``connector.desktops.sessions``) is another's key, in another slot: on a
cluster the scripts that renew it tell what to renew and this module does it
right after (``PEXPIRE`` alone, not atomic with the script; the record only
outlives the session by the recovery window, so a moment's difference is
harmless); on a standalone Redis the script does it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from django.conf import settings
from redis.asyncio import Redis

from connector import tokens
from connector.desktops import sessions
from connector.desktops.presence import PROCESS_ID
from events import redis_client, redis_keys
from events.history import Offset, key_prefix

# Redis's clock in milliseconds.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: hash. ARGV: lifetime (ms), ping interval (ms).
_CREATE = _NOW + """
redis.call('HSET', KEYS[1], 'created', now, 'ping_due', now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Take at most ``limit`` packets and ``budget`` bytes (one at least) off the out list, keeping its byte count.
# The list never holds more (``_COMMIT`` ends a session before), unless it was queued before the budget.
_TAKE = """
local function _take(hash, list, limit, budget)
  local queued = redis.call('LRANGE', list, 0, limit - 1)
  if #queued == 0 then return queued end
  local out, size = {}, 0
  for j = 1, #queued do
    if j > 1 and size + #queued[j] > budget then break end
    out[j] = queued[j]
    size = size + #queued[j]
  end
  if #out >= redis.call('LLEN', list) then
    redis.call('DEL', list)
    redis.call('HDEL', hash, 'out_bytes')
  elseif #out > 0 then
    redis.call('LTRIM', list, #out, -1)
    redis.call('HINCRBY', hash, 'out_bytes', -size)
  end
  return out
end
"""

# Start (ARGV[2] 'begin') or continue ('again') the one waiting GET. KEYS: hash, out list. ARGV: lock token,
# mode, lock lifetime, ping interval, ping timeout, connected lifetime (ms), this process, the queue's limit in
# packets and in bytes. Returns {status},
# {'closed', pid, why}, {'overlap', pid} (another GET holds the lock) or {'ok', fields, packets, ping (0/1), ms until
# the next ping is due or the pong deadline passes, whichever comes first}; the packets are taken off the list.
_POLL = _NOW + _TAKE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
local f = redis.call('HMGET', KEYS[1], 'pong_by', 'poll', 'poll_until', 'upgrading_until', 'ping_due', 'identity',
                     'closed', 'pid')
if f[7] then return {'closed', f[8] or '', f[7]} end
local pong_by = tonumber(f[1] or '0')
if pong_by > 0 and now >= pong_by then
  return {'timeout'}
end
if ARGV[2] == 'begin' then
  if f[2] and tonumber(f[3] or '0') > now then return {'overlap', f[8] or ''} end
elseif f[2] ~= ARGV[1] then
  return {'overlap', f[8] or ''}
end
if tonumber(f[4] or '0') > now then
  if ARGV[2] ~= 'begin' then redis.call('HDEL', KEYS[1], 'poll', 'poll_until') end
  return {'upgrading'}
end
redis.call('HSET', KEYS[1], 'poll', ARGV[1], 'poll_until', now + tonumber(ARGV[3]), 'served_by', ARGV[7])
local ping = 0
local ping_due = tonumber(f[5])
if now >= ping_due then
  ping = 1
  ping_due = now + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'ping_due', ping_due)
  if pong_by == 0 then
    pong_by = now + tonumber(ARGV[5])
    redis.call('HSET', KEYS[1], 'pong_by', pong_by)
  end
end
local deadline = ping_due
if pong_by > 0 and pong_by < deadline then deadline = pong_by end
local out = _take(KEYS[1], KEYS[2], tonumber(ARGV[8]), tonumber(ARGV[9]))
if f[6] then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
return {'ok', redis.call('HGETALL', KEYS[1]), out, ping, deadline - now}
"""

# A POST's view of the session. KEYS: hash, out list. ARGV: wake channel. Its fields, or none when there is no
# such session or its pong deadline passed: then it ends here (its keys go; a GET waiting anywhere answers CLOSE).
_LOAD = _NOW + """
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return f end
local pong_by = tonumber(redis.call('HGET', KEYS[1], 'pong_by') or '0')
if pong_by > 0 and now >= pong_by then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SPUBLISH', ARGV[1], '1')
  return {}
end
return f
"""

# The GET answers: release its lock, advance each conversation it read to the position read, unless a POST
# changed it meanwhile (a leave, a join again). KEYS: hash, and the recovery record unless on a cluster. ARGV:
# lock token, connected lifetime, record lifetime (ms), then per conversation read its name, the position it
# was read from and the position it is read up to. Returns 0 (no such session), 1, or 2 (connected: its
# recovery record is to live on).
_FINISH = """
if redis.call('HGET', KEYS[1], 'poll') == ARGV[1] then redis.call('HDEL', KEYS[1], 'poll', 'poll_until') end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #ARGV, 3 do
  local name = 'c:' .. ARGV[i]
  if redis.call('HGET', KEYS[1], name) == ARGV[i + 1] then redis.call('HSET', KEYS[1], name, ARGV[i + 2]) end
end
if redis.call('HEXISTS', KEYS[1], 'identity') == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if KEYS[2] then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
  return 2
end
return 1
"""

# A POST's outcome. KEYS: hash, out list, and the recovery record unless on a cluster. ARGV: connected lifetime,
# record lifetime (ms), wake channel, the queue's limit in packets and in bytes, the recovery window (ms), the
# number of fields to set, field/value pairs, the number to delete, their names, packets. Returns 0 (no such
# session), 1, {2, packets, bytes} (the session was marked closed: it is over its budget; its recovery record is
# to live the recovery window), 3 (it was marked closed before) or 4 (connected: its record is to live on).
_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return 3 end
local i = 7
local sets = tonumber(ARGV[i])
local first = i + 2 * sets + 2
local deletes = tonumber(ARGV[first - 1])
first = first + deletes
local waiting = redis.call('LLEN', KEYS[2])
local count = waiting + #ARGV - first + 1
-- The list may have expired before the hash (a POST without packets renews only the hash): then nothing waits.
local size = 0
if waiting > 0 then size = tonumber(redis.call('HGET', KEYS[1], 'out_bytes') or '0') end
for j = first, #ARGV do size = size + #ARGV[j] end
if count > tonumber(ARGV[4]) or size > tonumber(ARGV[5]) then
  -- Over budget: the queued packets go now; a small hash stays so that the next GET answers CLOSE.
  local pid = redis.call('HGET', KEYS[1], 'pid')
  for j = 1, sets do
    if ARGV[i + 2 * j - 1] == 'pid' then pid = ARGV[i + 2 * j] end
  end
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'closed', 'queue_full', 'pid', pid or '')
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  if KEYS[3] and tonumber(ARGV[6]) > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[6]) end
  redis.call('SPUBLISH', ARGV[3], '1')
  return {2, count, size}
end
for j = 1, sets do
  redis.call('HSET', KEYS[1], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
for j = i + 2 * sets + 2, first - 1 do redis.call('HDEL', KEYS[1], ARGV[j]) end
local packets = #ARGV - first + 1
for j = first, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[j]) end
if packets > 0 then redis.call('HSET', KEYS[1], 'out_bytes', size) end
local connected = redis.call('HEXISTS', KEYS[1], 'identity') == 1
if connected then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  if KEYS[3] then redis.call('PEXPIRE', KEYS[3], ARGV[2]) end
end
if packets > 0 then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
  redis.call('SPUBLISH', ARGV[3], '1')
end
if connected then return 4 end
return 1
"""

# KEYS: hash, out list. ARGV: wake channel, wake message. The session ends; a waiting GET answers CLOSE, or a
# noop when the message says the client closed it.
_CLOSE = """
local existed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SPUBLISH', ARGV[1], ARGV[2])
return existed
"""

# One WebSocket at a time may upgrade a session, as the JavaScript server has it (lib/server.ts, onWebSocket:
# "transport has already been trying to upgrade"). KEYS: hash. ARGV: the WebSocket's token, how long the upgrade
# may take (ms). 1: the upgrade is this WebSocket's until then; 0: no such session, closed, or another's.
_CLAIM_UPGRADE = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'upgrade_until') or '0') > now then return 0 end
redis.call('HSET', KEYS[1], 'upgrader', ARGV[1], 'upgrade_until', now + tonumber(ARGV[2]))
return 1
"""

# Whether the session's upgrade is the WebSocket ``token``'s, and still in time (a Lua expression over KEYS[1],
# ``now`` and the token).
_UPGRADER = """
local function _upgrader(token)
  local f = redis.call('HMGET', KEYS[1], 'upgrader', 'upgrade_until')
  return f[1] == token and tonumber(f[2] or '0') > now
end
"""

# KEYS: hash. ARGV: the WebSocket's token, wake channel. The probe: the pending GET answers a noop, and GETs
# answer at once until the upgrade ends.
_START_UPGRADE = _NOW + _UPGRADER + """
if not _upgrader(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'upgrading_until', redis.call('HGET', KEYS[1], 'upgrade_until'))
redis.call('SPUBLISH', ARGV[2], '1')
return 1
"""

# KEYS: hash. ARGV: the WebSocket's token. It went before the upgrade packet: polling goes on, and another
# WebSocket may upgrade the session.
_ABANDON_UPGRADE = """
if redis.call('HGET', KEYS[1], 'upgrader') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'upgrader', 'upgrade_until', 'upgrading_until')
end
return 1
"""

# KEYS: hash. ARGV: wake channel, why. The server ends the session: its pending or next GET answers CLOSE.
_MARK_CLOSED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'closed', ARGV[2])
redis.call('SPUBLISH', ARGV[1], '1')
return 1
"""

# KEYS: hash, out list. ARGV: the WebSocket's token. The WebSocket whose upgrade it is takes the session over:
# its state, its waiting packets; both keys go. Not a session marked closed: its polls answer CLOSE.
_ADOPT = _NOW + _UPGRADER + """
if redis.call('HEXISTS', KEYS[1], 'closed') == 1 or not _upgrader(ARGV[1]) then return false end
local state = {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
redis.call('DEL', KEYS[1], KEYS[2])
return state
"""

JOINED_PREFIX = "c:"


@dataclass
class PollingState:
    """What one request needs of a session: who it is, what it joined, and up to where it was sent."""

    sid: str
    identity: tokens.DesktopIdentity | None = None
    connected: bool = False  # to the namespace "/"
    pid: str | None = None  # its recovery session (connector.desktops.sessions)
    joined: dict[str, Offset] = field(default_factory=dict)  # conversation -> position sent up to
    pending: list[str] = field(default_factory=list)  # packets taken for this answer
    closed: str = ""  # why the server ended it (``mark_closed``), while its next GET has not answered CLOSE yet

    @classmethod
    def parse(cls, sid: str, flat: list[bytes], pending: list[bytes] = ()) -> PollingState:
        fields = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        identity = None
        if "identity" in fields:
            identity = tokens.DesktopIdentity(**json.loads(fields["identity"]))
        return cls(
            sid=sid,
            identity=identity,
            connected=fields.get("connected") == "1",
            pid=fields.get("pid") or None,
            joined={name[len(JOINED_PREFIX):]: _position(value) for name, value in fields.items()
                    if name.startswith(JOINED_PREFIX)},
            pending=[_text(packet) for packet in pending],
            closed=fields.get("closed", ""),
        )


def _position(value: str) -> Offset:
    # A session written before each conversation had its own sequence (a bare number): an epoch no conversation
    # has, so that reading after it is never whole and the session ends, its client told it was not recovered.
    return Offset.parse(value) or Offset("0", 0)


def identity_field(identity: tokens.DesktopIdentity) -> str:
    return json.dumps({"project": identity.project, "user": identity.user, "token_id": identity.token_id,
                       "expires_at": identity.expires_at})


@dataclass(frozen=True)
class Poll:
    """A GET's turn: ``status`` is ``ok`` (then the rest is set), ``gone``, ``timeout`` (no pong in time),
    ``overlap`` (another GET holds the session), ``upgrading`` or ``closed`` (``why``: see ``mark_closed``);
    for ``closed`` and ``overlap``, ``pid`` is the session's recovery session, if any. ``seconds_to_deadline``:
    until the next ping is due or the pong deadline passes, whichever comes first."""

    status: Literal["ok", "gone", "timeout", "overlap", "upgrading", "closed"]
    state: PollingState | None = None
    ping: bool = False
    seconds_to_deadline: float = 0.0
    pid: str | None = None
    why: str = ""


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _keys(sid: str) -> tuple[str, str]:
    # A sid holding "}" cannot be a tag; no session has one (packets.new_sid), so it names one that never exists.
    base = f"{key_prefix()}eio:{redis_keys.tag(sid if '}' not in sid else 'not-a-sid')}"
    return base, f"{base}:out"


def session_key(sid: str) -> str:
    """The Redis key of the session's hash."""
    return _keys(sid)[0]


def session_keys_pattern() -> str:
    """A ``SCAN`` pattern matching every session's keys (its hash and its packet list)."""
    return f"{key_prefix()}eio:*"


def sid_of(key: bytes | str) -> str | None:
    """The sid whose hash ``key`` is (a key ``session_keys_pattern`` matched); None for a packet list."""
    key = _text(key)
    tagged = key[len(f"{key_prefix()}eio:"):]
    if not (tagged.startswith("{") and tagged.endswith("}")):
        return None
    return tagged[1:-1]


def wake_channel(sid: str) -> str:
    """The session's sharded wake channel, in its keys' slot (a script that changes them may publish on it)."""
    return f"{_keys(sid)[0]}:wake"


def _record_key(pid: str | None) -> str:
    # No recovery session: a key that never exists, so the scripts' PEXPIRE of it does nothing.
    return sessions.key(pid) if pid else f"{key_prefix()}eio:no-session"


def _record_keys(pid: str | None) -> list[str]:
    """The recovery record as a script key: on a cluster none (another slot), renewed by ``_renew_record``."""
    return [] if redis_client.is_cluster() else [_record_key(pid)]


async def _renew_record(pid: str | None, milliseconds: int) -> None:
    """On a cluster, what a script would have done to the session's recovery record (in another slot)."""
    if pid and milliseconds > 0 and redis_client.is_cluster():
        await redis_client.get_redis().pexpire(_record_key(pid), milliseconds)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def connected_lifetime() -> float:
    """Seconds a connected session lives after its last request: a live client polls again well within it."""
    return settings.SOCKETIO_PING_INTERVAL + settings.SOCKETIO_PING_TIMEOUT + 1


def record_lifetime() -> float:
    """Seconds the recovery record outlives the polling session's last request."""
    return connected_lifetime() + settings.SOCKETIO_RECOVERY_SECONDS


class _Scripts:
    def __init__(self, client: Redis) -> None:
        self.create = client.register_script(_CREATE)
        self.poll = client.register_script(_POLL)
        self.finish = client.register_script(_FINISH)
        self.commit = client.register_script(_COMMIT)
        self.load = client.register_script(_LOAD)
        self.close = client.register_script(_CLOSE)
        self.claim_upgrade = client.register_script(_CLAIM_UPGRADE)
        self.start_upgrade = client.register_script(_START_UPGRADE)
        self.abandon_upgrade = client.register_script(_ABANDON_UPGRADE)
        self.mark_closed = client.register_script(_MARK_CLOSED)
        self.adopt = client.register_script(_ADOPT)


_scripts: redis_client.PerClient[_Scripts] = redis_client.PerClient(_Scripts)


def _get() -> _Scripts:
    return _scripts.get()


async def create(sid: str) -> None:
    """A new session, unauthenticated: it expires after ``WEBSOCKET_AUTH_TIMEOUT`` unless it connects."""
    await _get().create(keys=[_keys(sid)[0]], args=[_ms(settings.WEBSOCKET_AUTH_TIMEOUT),
                                                    _ms(settings.SOCKETIO_PING_INTERVAL)])


async def poll(sid: str, token: str, *, again: bool) -> Poll:
    """Take the session's waiting packets (and a ping when one is due) for a GET holding lock ``token``."""
    reply = await _get().poll(
        keys=list(_keys(sid)),
        args=[token, "again" if again else "begin", _ms(settings.SOCKETIO_PING_INTERVAL + 5),
              _ms(settings.SOCKETIO_PING_INTERVAL), _ms(settings.SOCKETIO_PING_TIMEOUT), _ms(connected_lifetime()),
              PROCESS_ID, settings.SOCKETIO_POLLING_QUEUE_LIMIT, settings.SOCKETIO_POLLING_QUEUE_BYTES],
    )
    status = _text(reply[0])
    if status == "closed":
        return Poll(status, pid=_text(reply[1]) or None, why=_text(reply[2]))
    if status == "overlap":
        return Poll(status, pid=_text(reply[1]) or None)
    if status != "ok":
        return Poll(status)  # type: ignore[arg-type]
    return Poll("ok", PollingState.parse(sid, reply[1], reply[2]), bool(reply[3]), max(0, int(reply[4])) / 1000)


async def finish(sid: str, token: str, *, read: dict[str, tuple[Offset, Offset]], pid: str | None) -> None:
    """The GET answers with every event of ``read``'s conversations from the first position of each to the
    second: record it (where no POST changed the conversation meanwhile), release the lock."""
    reply = await _get().finish(
        keys=[_keys(sid)[0], *_record_keys(pid)],
        args=[token, _ms(connected_lifetime()), _ms(record_lifetime()),
              *(str(part) for conversation, (start, end) in read.items() for part in (conversation, start, end))],
    )
    if reply == 2:
        await _renew_record(pid, _ms(record_lifetime()))


async def load(sid: str) -> PollingState | None:
    """The session's state for a POST, or None when there is no such session, or none any more: its pong
    deadline passed, which ends it there and then, as the JavaScript server ends a session at the deadline
    whether or not a request comes (lib/socket.ts, "ping timeout")."""
    flat = await _get().load(keys=list(_keys(sid)), args=[wake_channel(sid)])
    if not flat:
        return None
    return PollingState.parse(sid, flat)


@dataclass(frozen=True)
class Committed:
    """A POST's outcome in Redis: ``ok``; ``gone`` (no such session); ``closed`` (marked closed before: its
    packets were dropped); ``over_budget`` (its out list would pass ``SOCKETIO_POLLING_QUEUE_LIMIT`` packets or
    ``SOCKETIO_POLLING_QUEUE_BYTES``: the list was dropped and the session marked closed, ``queue_full``, its
    recovery window begun), with the ``packets`` and ``size`` (bytes) it would have reached."""

    status: Literal["ok", "gone", "closed", "over_budget"]
    packets: int = 0
    size: int = 0


async def commit(sid: str, *, pid: str | None, sets: dict[str, str], deletes: list[str],
                 packets: list[str]) -> Committed:
    """Apply a POST's changes and queue its packets for the next GET (waking one waiting anywhere), within the
    session's budget: one over it is closed at once, in the same step, and its queued bytes freed."""
    pairs = [item for pair in sets.items() for item in pair]
    reply = await _get().commit(
        keys=[*_keys(sid), *_record_keys(pid)],
        args=[_ms(connected_lifetime()), _ms(record_lifetime()), wake_channel(sid),
              settings.SOCKETIO_POLLING_QUEUE_LIMIT, settings.SOCKETIO_POLLING_QUEUE_BYTES,
              _ms(settings.SOCKETIO_RECOVERY_SECONDS),
              len(sets), *pairs, len(deletes), *deletes, *packets],
    )
    if isinstance(reply, list):
        await _renew_record(pid, _ms(settings.SOCKETIO_RECOVERY_SECONDS))
        return Committed("over_budget", int(reply[1]), int(reply[2]))
    if int(reply) == 4:
        await _renew_record(pid, _ms(record_lifetime()))
    return Committed({0: "gone", 1: "ok", 3: "closed", 4: "ok"}[int(reply)])  # type: ignore[arg-type]


#: The wake message of a session its client closed (a CLOSE packet): its waiting GET answers a noop, not CLOSE.
CLIENT_CLOSED = "client"


async def close(sid: str, *, by_client: bool = False) -> bool:
    """End the session: its keys go, and a GET waiting on it answers CLOSE (a noop when ``by_client``). False
    when it was gone already (ended, expired, or taken over by a WebSocket)."""
    message = CLIENT_CLOSED if by_client else "1"
    return bool(await _get().close(keys=list(_keys(sid)), args=[wake_channel(sid), message]))


CloseReason = Literal["operator", "token_expired", "queue_full"]


async def mark_closed(sid: str, why: CloseReason) -> bool:
    """Mark the session closed, so that its pending or next GET, on any process, answers CLOSE (and ends
    it); False when there is no such session. For a request that ends the session while no GET may be waiting:
    deleting it then would answer the client's next GET 400 (``Session ID unknown``), which its client takes
    for a transport error, not the server's close."""
    return bool(await _get().mark_closed(keys=[_keys(sid)[0]], args=[wake_channel(sid), why]))


def upgrade_lifetime() -> float:
    """Seconds a WebSocket has, from its opening, to complete the upgrade of a session."""
    return settings.SOCKETIO_PING_TIMEOUT


async def claim_upgrade(sid: str, token: str) -> bool:
    """Make the session's upgrade the WebSocket ``token``'s for ``upgrade_lifetime()``; False when there is no
    such session (gone, upgraded already, closed) or another WebSocket's upgrade of it is under way."""
    if not redis_client.is_configured() or not sid.isascii() or len(sid) > 64:
        return False
    return bool(await _get().claim_upgrade(keys=[_keys(sid)[0]], args=[token, _ms(upgrade_lifetime())]))


async def start_upgrade(sid: str, token: str) -> bool:
    """The WebSocket ``token`` probed the session: the pending GET answers a noop, and GETs answer at once until
    the upgrade completes or is abandoned, or its time is up. False when the upgrade is not (or no longer) its."""
    return bool(await _get().start_upgrade(keys=[_keys(sid)[0]], args=[token, wake_channel(sid)]))


async def abandon_upgrade(sid: str, token: str) -> None:
    """The WebSocket ``token`` went before the upgrade packet: polling goes on, and another may upgrade."""
    await _get().abandon_upgrade(keys=[_keys(sid)[0]], args=[token])


async def adopt(sid: str, token: str) -> PollingState | None:
    """Take the session over for the WebSocket ``token`` whose upgrade it is (the polling keys are removed);
    None when it is gone, closed, or its upgrade is not (or no longer) this WebSocket's."""
    reply = await _get().adopt(keys=list(_keys(sid)), args=[token])
    if not reply:
        return None
    return PollingState.parse(sid, reply[0], reply[1])
