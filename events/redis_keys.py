"""Hash tags: the part of a Redis key that picks its slot, so that keys used together live on one shard.

On a Redis Cluster (``REDIS_CLUSTER``) a script's keys, or a ``MULTI``'s, must all
hash to one slot, and only the part between the first ``{`` and the next ``}``
is hashed when there is one. Every key used together with others carries
the tag of what they belong to (``{<sid>}`` for a long-polling session's keys,
the conversation's presence key name for its member set): one layout whether
or not Redis is a cluster, so the standalone tests exercise the cluster's keys.
"""

from __future__ import annotations

import functools
import itertools
import string

from redis.crc import key_slot

__all__ = ["key_slot", "tag", "tag_for"]


def tag(name: str) -> str:
    """``{name}``: a key containing it (first) is in ``name``'s slot; ``name`` holds no ``}``."""
    if "}" in name:
        raise ValueError("a hash tag cannot hold '}'")
    return "{" + name + "}"


def hashed_part(key: str) -> str:
    """The part of ``key`` Redis hashes to pick its slot (Redis Cluster specification, "Hash tags")."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def tag_for(key: str) -> str:
    """A hash tag that puts a key containing it in ``key``'s slot: ``{<the part key hashes>}``, readable,
    unless that part holds a ``}`` (``key`` is then a name like ``a{}b``): a short tag found for the slot."""
    part = hashed_part(key)
    if "}" not in part:
        return tag(part)
    return tag(_tag_of_slot(key_slot(key.encode("utf-8"))))


_ALPHABET = string.ascii_letters + string.digits


@functools.lru_cache(maxsize=1024)
def _tag_of_slot(slot: int) -> str:
    # About 16,384 candidates on average before one hashes to the slot: milliseconds (CRC16 is C code).
    for length in itertools.count(1):
        for letters in itertools.product(_ALPHABET, repeat=length):
            candidate = "".join(letters)
            if key_slot(candidate.encode()) == slot:
                return candidate
    raise AssertionError("unreachable")
