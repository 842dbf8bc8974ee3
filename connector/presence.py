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

# KEYS: the presence key, the member set. ARGV: this process, the expiry.
_JOIN = """
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], '1', 'EX', ARGV[2])
return 1
"""
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
    client = redis_client.get_redis()
    script = client.register_script(_JOIN)
    async with client.pipeline(transaction=False) as pipe:
        for conversation in conversations:
            await script(keys=_keys(conversation), args=[PROCESS_ID, settings.PRESENCE_KEY_TTL_SECONDS], client=pipe)
        await pipe.execute()


async def _run(source: str, conversation: str, *args: int) -> None:
    client = redis_client.get_redis()
    await client.register_script(source)(keys=_keys(conversation), args=[PROCESS_ID, *args])
