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
"""

from __future__ import annotations

import logging
import secrets

from django.conf import settings

from events import redis_client
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


def _keys(conversation: str) -> list[str]:
    return [key_name(conversation), f"{key_prefix()}presence:{conversation}"]


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
    script = redis_client.get_redis().register_script(_JOIN)
    for start in range(0, len(conversations), REFRESH_SLICE):
        keys = [key for conversation in conversations[start:start + REFRESH_SLICE] for key in _keys(conversation)]
        await script(keys=keys, args=[PROCESS_ID, settings.PRESENCE_KEY_TTL_SECONDS])


async def _run(source: str, conversation: str, *args: int) -> None:
    client = redis_client.get_redis()
    await client.register_script(source)(keys=_keys(conversation), args=[PROCESS_ID, *args])
