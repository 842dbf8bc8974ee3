"""The key each joined conversation is named by, for the companion services that share our Redis.

Google's other integration services (for example its Genesys AudioHook
service, whose ``await_redis`` polls ``EXISTS projects/P/conversations/C``)
wait for the key the sample's connector sets on ``join-conversation``. Here
the key exists while at least one desktop on any connector process has
joined the conversation: each process adds itself to the conversation's
member set when its first desktop joins and removes itself when its last one
leaves, and the process that removes the last member deletes the key. Both
expire after ``PRESENCE_KEY_TTL_SECONDS`` unless refreshed (every third of
that, by the hub), so a crashed process leaves nothing behind for long.

The key's name is the companion services' (``projects/P/conversations/C``, no
hash tag); the member set carries the key's own slot as its hash tag
(``<prefix>presence:{projects/P/conversations/C}``), so that on a Redis Cluster
one script still sees both.
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings

from events import redis_client, redis_keys
from events.history import key_prefix

logger = logging.getLogger(__name__)

# KEYS: the presence key and the member set of each conversation in turn (one for a join, a slice of them
# for a refresh). ARGV: this process, the expiry.
_JOIN = """
for i = 1, #KEYS, 2 do
  redis.call('SADD', KEYS[i + 1], ARGV[1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[2])
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[2])
end
return #KEYS / 2
"""
# Conversations renewed per script call. One pipeline of a script call per conversation held the event loop
# (building and reading it) for 55-90 ms at 5,000 conversations, and Redis for the whole pipeline; a call per
# slice of this size holds each for well under a millisecond, and events go out between the slices.
REFRESH_SLICE = 100
# The same keys and this process: the key goes with the last member.
_LEAVE = """
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 1
"""

PROCESS_ID = secrets.token_hex(8)


def enabled() -> bool:
    return settings.PRESENCE_KEYS and redis_client.is_configured()


def key_name(conversation: str) -> str:
    """The key the companion services look for: the normalised conversation name itself."""
    return settings.PRESENCE_KEY_PREFIX + conversation


def member_key(conversation: str) -> str:
    """The set of processes with desktops in ``conversation``: in the slot of its ``key_name``."""
    name = key_name(conversation)
    tag = redis_keys.tag_for(name)
    # The tag is the whole name but for names holding braces; those carry the conversation to stay apart.
    return f"{key_prefix()}presence:{tag}" + ("" if tag == "{" + name + "}" else f":{conversation}")


def _keys(conversation: str) -> list[str]:
    return [key_name(conversation), member_key(conversation)]


async def joined(conversation: str) -> None:
    """This process's first desktop joined ``conversation``."""
    await _run(_JOIN, conversation, settings.PRESENCE_KEY_TTL_SECONDS)


async def left(conversation: str) -> None:
    """This process's last desktop left ``conversation``."""
    await _run(_LEAVE, conversation)


async def refresh(conversations: list[str]) -> None:
    """Renew the keys of every conversation this process has desktops in (recreating any that expired)."""
    if not conversations:
        return
    client = redis_client.get_redis()
    args = [PROCESS_ID, settings.PRESENCE_KEY_TTL_SECONDS]
    if redis_client.is_cluster():
        await _refresh_on_cluster(client, conversations, args)
        return
    script = client.register_script(_JOIN)
    for start in range(0, len(conversations), REFRESH_SLICE):
        keys = [key for conversation in conversations[start:start + REFRESH_SLICE] for key in _keys(conversation)]
        await script(keys=keys, args=args)


async def _refresh_on_cluster(client, conversations: list[str], args: list) -> None:
    """``refresh`` on a Redis Cluster: a script's keys must share a slot, and conversations spread over every
    slot, so each slice is one pipeline (sent to each shard at once) of one script call per slot."""
    for start in range(0, len(conversations), REFRESH_SLICE):
        by_slot: dict[int, list[str]] = {}
        for conversation in conversations[start:start + REFRESH_SLICE]:
            keys = _keys(conversation)
            by_slot.setdefault(redis_keys.key_slot(keys[0].encode("utf-8")), []).extend(keys)
        async with client.pipeline(transaction=False) as pipe:
            for keys in by_slot.values():
                # EVAL, not EVALSHA: a pipeline cannot load a script missing on a shard.
                pipe.eval(_JOIN, len(keys), *keys, *args)
            await pipe.execute()


async def _run(source: str, conversation: str, *args: int) -> None:
    client = redis_client.get_redis()
    await client.register_script(source)(keys=_keys(conversation), args=[PROCESS_ID, *args])
