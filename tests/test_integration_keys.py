"""/conversation-name through the real ASGI application, on the real Redis of the test run.

Every test uses integration keys of its own (uuid), so tests never see each other's entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as redis
from channels.testing import HttpCommunicator
from django.conf import settings as django_settings
from redis.asyncio.cluster import RedisCluster

from aa_site.asgi import application
from connector import tokens
from connector.http import integration_keys
from testing.docs_site import settings_page
from testing.processes import free_port

RESPONSE_TIMEOUT = 20.0
NAME = "projects/test-project/locations/global/conversations/CONV-1"
PREFIX = integration_keys.KEY_PREFIX


# Every test on the standalone Redis and on a Redis Cluster, but those of the names before the hash tag.
pytestmark = pytest.mark.usefixtures("redis_kind")
STANDALONE_ONLY = pytest.mark.parametrize("redis_kind", ["standalone"], indirect=True)


@pytest.fixture
async def redis_direct(redis_kind: str, settings: Any) -> AsyncIterator[redis.Redis | RedisCluster]:
    """A client of our own on the test's Redis, to see what the endpoint stored."""
    make = RedisCluster if redis_kind == "cluster" else redis.Redis
    client = make(host=settings.REDISHOST, port=settings.REDISPORT)
    yield client
    await client.aclose()


async def stored_entries(client: redis.Redis) -> set[bytes]:
    """Every /conversation-name entry in Redis."""
    return {key async for key in client.scan_iter(match=PREFIX + "*")}


def new_key() -> str:
    """An integration key no other test uses (shaped like a phone number plus a unique tail)."""
    return f"+1-555-0100-{uuid.uuid4().hex}"


async def call(
    method: str, path: str, *, body: Any = None, token: str | None = "valid", forwarded_for: str | None = None
) -> dict[str, Any]:
    """One request to the real application; ``body`` is JSON-encoded unless it is bytes."""
    headers: list[tuple[bytes, bytes]] = []
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for.encode()))
    if token is not None:
        headers.append((b"authorization", (tokens.issue_token(user="agent") if token == "valid" else token).encode()))
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    if raw:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    return await HttpCommunicator(application, method, path, body=raw, headers=headers).get_response(
        timeout=RESPONSE_TIMEOUT
    )


def query(key: str) -> str:
    """The endpoint's path with ``key`` as conversationIntegrationKey."""
    return f"/conversation-name?conversationIntegrationKey={quote(key, safe='')}"


def text(response: dict[str, Any]) -> str:
    """A plain-text body."""
    return response["body"].decode()


async def test_post_stores_and_get_reads_back(settings: Any) -> None:
    """POST answers {key: name}; GET then answers {"conversationName": name}."""
    key = new_key()
    response = await call("POST", "/conversation-name",
                          body={"conversationIntegrationKey": key, "conversationName": NAME})
    assert response["status"] == 200
    assert json.loads(response["body"]) == {key: NAME}
    response = await call("GET", query(key))
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"conversationName": NAME}


async def test_redis_holds_only_the_hash_of_the_key(redis_direct: redis.Redis) -> None:
    """The entry lives under aa:{conversation-name}:<sha256(key)>; the key itself appears in no Redis key."""
    key = new_key()
    await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": NAME})
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    assert await redis_direct.get(PREFIX + digest) == NAME.encode()
    assert [k async for k in redis_direct.scan_iter(match=f"*{key}*")] == []


async def test_entries_expire_after_the_configured_ttl(settings: Any, redis_direct: redis.Redis) -> None:
    """CONVERSATION_NAME_TTL_SECONDS is the entry's Redis expiry."""
    settings.CONVERSATION_NAME_TTL_SECONDS = 3600
    key = new_key()
    await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": NAME})
    ttl = await redis_direct.ttl(PREFIX + hashlib.sha256(key.encode()).hexdigest())
    assert 0 < ttl <= 3600


async def test_ttl_zero_keeps_entries_until_deleted(settings: Any, redis_direct: redis.Redis) -> None:
    """CONVERSATION_NAME_TTL_SECONDS=0 stores without expiry, as the sample does."""
    settings.CONVERSATION_NAME_TTL_SECONDS = 0
    key = new_key()
    await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": NAME})
    redis_key = PREFIX + hashlib.sha256(key.encode()).hexdigest()
    assert await redis_direct.ttl(redis_key) == -1  # exists, no expiry
    await redis_direct.delete(redis_key)


async def test_post_again_replaces_the_name() -> None:
    """The latest POST for a key wins."""
    key = new_key()
    for name in (NAME, NAME + "-2"):
        await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": name})
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME + "-2"}


async def test_get_unknown_key_answers_an_empty_name() -> None:
    """An unknown key is 200 with conversationName "", as the UI modules expect."""
    response = await call("GET", query(new_key()))
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"conversationName": ""}


async def test_delete_removes_then_reports_not_found() -> None:
    """DELETE answers Success for a stored key (which is then gone) and 404 Not found the second time."""
    key = new_key()
    await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": NAME})
    first = await call("DELETE", query(key))
    assert (first["status"], text(first)) == (200, "Success")
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": ""}
    second = await call("DELETE", query(key))
    assert (second["status"], text(second)) == (404, "Not found")


async def test_unicode_keys_and_names_round_trip() -> None:
    """Keys and names outside ASCII are stored and read back unchanged."""
    key, name = f"Zoë-☎-{uuid.uuid4().hex}", "projects/p/conversations/ünïcode"
    response = await call("POST", "/conversation-name",
                          body={"conversationIntegrationKey": key, "conversationName": name})
    assert json.loads(response["body"]) == {key: name}
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": name}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json", b"\xff\xfe", b"[]", b'"key"', b"",
        {"conversationName": NAME},
        {"conversationIntegrationKey": "k"},
        {"conversationIntegrationKey": "", "conversationName": NAME},
        {"conversationIntegrationKey": "k", "conversationName": ""},
        {"conversationIntegrationKey": 15550100, "conversationName": NAME},
        {"conversationIntegrationKey": "k", "conversationName": ["x"]},
        {"conversationIntegrationKey": "k" * 1025, "conversationName": NAME},
        {"conversationIntegrationKey": "k", "conversationName": "n" * 1025},
        {"conversationIntegrationKey": "\ud800", "conversationName": NAME},
        {"conversationIntegrationKey": "k", "conversationName": "n\udfff"},
        b'{"conversationIntegrationKey": "k", "conversationName": "n", "n": ' + b"1" * 5000 + b"}",
    ],
    ids=["malformed", "not-utf8", "array", "string", "empty", "no-key", "no-name", "empty-key", "empty-name",
         "number-key", "list-name", "key-too-long", "name-too-long", "lone-surrogate-key", "lone-surrogate-name",
         "integer-beyond-digit-limit"],
)
async def test_post_bad_input_is_400(body: Any, redis_direct: redis.Redis) -> None:
    """A POST that is not {key, name} as non-empty strings within bounds is 400 Bad request and stores nothing."""
    before = await stored_entries(redis_direct)
    response = await call("POST", "/conversation-name", body=body)
    assert (response["status"], text(response)) == (400, "Bad request")
    assert await stored_entries(redis_direct) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("path", ["/conversation-name", "/conversation-name?conversationIntegrationKey=",
                                  "/conversation-name?other=1"])
async def test_get_and_delete_without_a_key_are_400(method: str, path: str) -> None:
    """GET and DELETE need a non-empty conversationIntegrationKey."""
    response = await call(method, path)
    assert (response["status"], text(response)) == (400, "Bad request")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_other_methods_are_405(method: str) -> None:
    """Only GET, POST and DELETE exist."""
    assert (await call(method, query(new_key())))["status"] == 405


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_jwt_is_required(method: str) -> None:
    """Without a desktop JWT every method is 401 {"message": "Token is missing."}."""
    body = {"conversationIntegrationKey": "k", "conversationName": NAME} if method == "POST" else None
    response = await call(method, query(new_key()), token=None, body=body)
    assert response["status"] == 401
    assert json.loads(response["body"]) == {"message": "Token is missing."}


async def test_token_in_url_is_refused() -> None:
    """A token in the query string is refused; the key parameter itself is fine."""
    response = await call("GET", query(new_key()) + f"&token={tokens.issue_token(user='agent')}")
    assert response["status"] == 401


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_unreachable_redis_is_503(settings: Any, method: str) -> None:
    """Redis refusing connections: 503 with a JSON message, for every method."""
    settings.REDISHOST, settings.REDISPORT = "127.0.0.1", free_port()
    body = {"conversationIntegrationKey": new_key(), "conversationName": NAME} if method == "POST" else None
    response = await call(method, query(new_key()), body=body)
    assert response["status"] == 503
    assert "Redis" in json.loads(response["body"])["message"]


async def test_without_redishost_an_in_process_store_serves(settings: Any, redis_direct: redis.Redis) -> None:
    """Development without REDISHOST: POST, GET and DELETE work in-process, and nothing reaches Redis."""
    settings.REDISHOST = ""
    key = new_key()
    before = await stored_entries(redis_direct)
    assert (await call("POST", "/conversation-name",
                       body={"conversationIntegrationKey": key, "conversationName": NAME}))["status"] == 200
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME}
    assert text(await call("DELETE", query(key))) == "Success"
    assert (await call("DELETE", query(key)))["status"] == 404
    assert await stored_entries(redis_direct) == before


async def test_in_process_store_honours_the_ttl(settings: Any) -> None:
    """The development store forgets an entry once its TTL has passed."""
    settings.REDISHOST = ""
    settings.CONVERSATION_NAME_TTL_SECONDS = 1
    key = new_key()
    await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": NAME})
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME}
    await asyncio.sleep(1.2)  # past the expiry; waiting longer never makes this wrong
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": ""}



# --- quota: sizes and a write rate per token ---------------------------


@pytest.mark.parametrize(
    "name",
    ["n" * 1000, "not a conversation", "projects/p/conversations/", "projects/p/agents/a",
     "projects/p/conversations/" + "c" * 600],
    ids=["1KB-of-n", "free-text", "no-conversation-id", "other-resource", "over-512-characters"],
)
async def test_post_of_a_name_that_is_not_a_conversation_is_400(name: str, redis_direct: redis.Redis) -> None:
    """The value must be a conversation name (either form, at most 512 characters): anything else is 400 Bad request."""
    before = await stored_entries(redis_direct)
    response = await call("POST", "/conversation-name", body={"conversationIntegrationKey": new_key(),
                                                               "conversationName": name})
    assert (response["status"], text(response)) == (400, "Bad request")
    assert await stored_entries(redis_direct) == before


async def test_name_is_stored_as_given_not_normalised() -> None:
    """A name with locations is validated, but stored and answered exactly as the desktop sent it."""
    key = new_key()
    response = await call("POST", "/conversation-name", body={"conversationIntegrationKey": key,
                                                               "conversationName": NAME})
    assert json.loads(response["body"]) == {key: NAME}
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME}


async def test_key_is_capped_at_256_characters(redis_direct: redis.Redis) -> None:
    """A key of 256 characters is stored; 257 is 400 Bad request on POST, GET and DELETE."""
    at_limit, over = "k" * 255 + uuid.uuid4().hex[:1], "k" * 257
    response = await call("POST", "/conversation-name", body={"conversationIntegrationKey": at_limit,
                                                               "conversationName": NAME})
    assert response["status"] == 200
    response = await call("POST", "/conversation-name", body={"conversationIntegrationKey": over,
                                                               "conversationName": NAME})
    assert (response["status"], text(response)) == (400, "Bad request")
    for method in ("GET", "DELETE"):
        response = await call(method, query(over))
        assert (response["status"], text(response)) == (400, "Bad request")


async def test_writes_are_rate_limited_per_token(settings: Any, redis_direct: redis.Redis) -> None:
    """CONVERSATION_NAME_RATE_LIMIT POSTs per token and window; the next is 429 {"message"} with Retry-After,
    stores nothing, and another token (or a GET with the same one) is unaffected."""
    settings.CONVERSATION_NAME_RATE_LIMIT = (3, 60)
    token, other = tokens.issue_token(user="agent"), tokens.issue_token(user="agent")
    answered = []
    for _ in range(3):
        body = {"conversationIntegrationKey": new_key(), "conversationName": NAME}
        answered.append((await call("POST", "/conversation-name", body=body, token=token))["status"])
    assert answered == [200, 200, 200]
    before = await stored_entries(redis_direct)
    key = new_key()
    refused = await call("POST", "/conversation-name", body={"conversationIntegrationKey": key,
                                                              "conversationName": NAME}, token=token)
    assert refused["status"] == 429
    assert set(json.loads(refused["body"])) == {"message"}
    headers = {name.decode().lower(): value.decode() for name, value in refused["headers"]}
    assert headers["content-type"].startswith("application/json")
    assert 1 <= int(headers["retry-after"]) <= 60
    assert await stored_entries(redis_direct) == before
    assert (await call("GET", query(key), token=token))["status"] == 200
    assert (await call("POST", "/conversation-name", body={"conversationIntegrationKey": key,
                                                            "conversationName": NAME}, token=other))["status"] == 200


async def test_lookups_and_removals_are_rate_limited_per_token_apart_from_writes(
    settings: Any, redis_direct: redis.Redis
) -> None:
    """CONVERSATION_NAME_LOOKUP_RATE_LIMIT GETs and DELETEs together per token: the next is 429 {"message"}
    with Retry-After and removes nothing; another token, and writes with the same one, are unaffected."""
    settings.CONVERSATION_NAME_LOOKUP_RATE_LIMIT = (3, 60)
    settings.CONVERSATION_NAME_RATE_LIMIT = (100, 60)
    token, other = tokens.issue_token(user="agent"), tokens.issue_token(user="agent")
    kept = new_key()
    assert (await call("POST", "/conversation-name", body={"conversationIntegrationKey": kept,
                                                            "conversationName": NAME}, token=token))["status"] == 200
    answered = [(await call(method, query(new_key()), token=token))["status"] for method in ("GET", "DELETE", "GET")]
    assert answered == [200, 404, 200]
    for method in ("GET", "DELETE"):
        refused = await call(method, query(kept), token=token)
        assert refused["status"] == 429
        assert "lookups" in json.loads(refused["body"])["message"]
        headers = {name.decode().lower(): value.decode() for name, value in refused["headers"]}
        assert 1 <= int(headers["retry-after"]) <= 60
    assert (await call("POST", "/conversation-name", body={"conversationIntegrationKey": new_key(),
                                                            "conversationName": NAME}, token=token))["status"] == 200
    found = await call("GET", query(kept), token=other)
    assert (found["status"], json.loads(found["body"])) == (200, {"conversationName": NAME})


async def test_lookups_are_rate_limited_per_user_whatever_the_tokens(settings: Any) -> None:
    """CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT GETs and DELETEs per user: five tokens of one user share it
    (each far below its own limit), and the next lookup with any of them, or a sixth, is 429; another user is
    unaffected."""
    settings.CONVERSATION_NAME_LOOKUP_RATE_LIMIT = (100, 60)
    settings.CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT = (10, 60)
    user, other = f"agent-{uuid.uuid4().hex}", f"agent-{uuid.uuid4().hex}"
    five = [tokens.issue_token(user=user) for _ in range(5)]
    answered = [(await call(method, query(new_key()), token=token))["status"]
                for token in five for method in ("GET", "DELETE")]
    assert answered == [200, 404] * 5
    for token in (five[0], five[4], tokens.issue_token(user=user)):
        refused = await call("GET", query(new_key()), token=token)
        assert refused["status"] == 429
        assert json.loads(refused["body"])["message"].startswith("Too many conversation-name lookups for this user")
        headers = {name.decode().lower(): value.decode() for name, value in refused["headers"]}
        assert 1 <= int(headers["retry-after"]) <= 60
    assert (await call("GET", query(new_key()), token=tokens.issue_token(user=other)))["status"] == 200


async def test_lookups_are_rate_limited_per_client_address_whatever_the_users(settings: Any) -> None:
    """CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT GETs and DELETEs per client address (here X-Forwarded-For,
    behind one trusted proxy): users of their own each far below their limits share it; another address is
    unaffected."""
    settings.TRUSTED_PROXY_HOPS = 1
    settings.CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT = (6, 60)
    address, other = ("10." + ".".join(str(byte) for byte in os.urandom(3)) for _ in range(2))
    answered = []
    for number in range(6):
        token = tokens.issue_token(user=f"agent-{uuid.uuid4().hex}")
        answered.append((await call("GET", query(new_key()), token=token, forwarded_for=address))["status"])
    assert answered == [200] * 6
    refused = await call("DELETE", query(new_key()), token=tokens.issue_token(user=f"agent-{uuid.uuid4().hex}"),
                         forwarded_for=address)
    assert refused["status"] == 429
    assert "from this address" in json.loads(refused["body"])["message"]
    assert (await call("GET", query(new_key()), forwarded_for=other))["status"] == 200


def test_lookup_rate_default_is_documented() -> None:
    """The default lookup quota is the settings reference's: 1,200 a minute per token."""
    assert "CONVERSATION_NAME_LOOKUP_RATE_LIMIT" not in os.environ
    assert django_settings.CONVERSATION_NAME_LOOKUP_RATE_LIMIT == (1200, 60)
    assert "| `CONVERSATION_NAME_LOOKUP_RATE_LIMIT` | `1200/minute` |" in settings_page()


def test_lookup_rates_per_user_and_address_defaults_are_documented() -> None:
    """The defaults are the settings reference's: 2,400 lookups a minute per user, 6,000 per client address."""
    assert django_settings.CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT == (2400, 60)
    assert django_settings.CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT == (6000, 60)
    page = settings_page()
    assert "| `CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT` | `2400/minute` |" in page
    assert "| `CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT` | `6000/minute` |" in page


def test_write_rate_default_is_documented() -> None:
    """The default write quota is the settings reference's: 60 a minute per token."""
    assert "CONVERSATION_NAME_RATE_LIMIT" not in os.environ  # the run's settings hold the default
    assert django_settings.CONVERSATION_NAME_RATE_LIMIT == (60, 60)
    assert "| `CONVERSATION_NAME_RATE_LIMIT` | `60/minute` |" in settings_page()


# --- the deployment-wide bound on entries ---------------------------------------------------

INDEX = integration_keys.INDEX_KEY


async def post(key: str, name: str = NAME) -> dict[str, Any]:
    return await call("POST", "/conversation-name", body={"conversationIntegrationKey": key, "conversationName": name})


async def live_indexed(client: redis.Redis) -> int:
    """Entries the index counts now, under the earlier index name too (the tests share one Redis: other tests'
    entries count too)."""
    seconds, micros = await client.time()
    count = 0
    for index in (INDEX, integration_keys.LEGACY_INDEX_KEY):
        await client.zremrangebyscore(index, "-inf", seconds * 1000 + micros // 1000)
        count += await client.zcard(index)
    return count


async def test_new_keys_beyond_the_deployment_bound_are_507_and_stored_ones_may_change(
    settings: Any, redis_direct: redis.Redis
) -> None:
    """With room for two more entries: two new keys are stored, a third is 507 with a JSON message and stores
    nothing; replacing a stored key's name still works; a DELETE makes room again."""
    settings.CONVERSATION_NAME_TTL_SECONDS = 600
    settings.CONVERSATION_NAME_MAX_ENTRIES = await live_indexed(redis_direct) + 2
    first, second, third = new_key(), new_key(), new_key()
    assert (await post(first))["status"] == 200
    assert (await post(second))["status"] == 200
    before = await stored_entries(redis_direct)
    refused = await post(third)
    assert refused["status"] == 507
    assert json.loads(refused["body"]) == {"message": "The conversation name store is full: delete entries or "
                                                      "let them expire."}
    assert await stored_entries(redis_direct) == before
    assert json.loads((await call("GET", query(third)))["body"]) == {"conversationName": ""}
    assert (await post(second, NAME + "-2"))["status"] == 200
    assert json.loads((await call("GET", query(second)))["body"]) == {"conversationName": NAME + "-2"}
    assert text(await call("DELETE", query(first))) == "Success"
    assert (await post(third))["status"] == 200
    for key in (second, third):
        await call("DELETE", query(key))


async def test_expired_entries_leave_room(settings: Any, redis_direct: redis.Redis) -> None:
    """An entry past its TTL no longer counts against the bound."""
    settings.CONVERSATION_NAME_TTL_SECONDS = 1
    settings.CONVERSATION_NAME_MAX_ENTRIES = await live_indexed(redis_direct) + 1
    assert (await post(new_key()))["status"] == 200
    assert (await post(new_key()))["status"] == 507
    await asyncio.sleep(1.2)  # past the expiry; waiting longer never makes this wrong
    assert (await post(new_key()))["status"] == 200


async def test_the_index_holds_each_entry_once_with_its_expiry(settings: Any, redis_direct: redis.Redis) -> None:
    """The index names the entry's Redis key (a hash, never the integration key) with its expiry in ms."""
    settings.CONVERSATION_NAME_TTL_SECONDS = 600
    key = new_key()
    await post(key)
    await post(key, NAME + "-2")
    entry = PREFIX + hashlib.sha256(key.encode()).hexdigest()
    seconds, _ = await redis_direct.time()
    assert 0 < await redis_direct.zscore(INDEX, entry) - seconds * 1000 <= 600_000 + 1000
    assert [k async for k in redis_direct.zscan_iter(INDEX, match=f"*{key}*")] == []
    await call("DELETE", query(key))
    assert await redis_direct.zscore(INDEX, entry) is None


async def test_the_in_process_store_has_the_same_bound(settings: Any) -> None:
    settings.REDISHOST = ""
    settings.CONVERSATION_NAME_MAX_ENTRIES = 2
    integration_keys._memory._entries.clear()
    first, second = new_key(), new_key()
    assert [(await post(k))["status"] for k in (first, second, new_key())] == [200, 200, 507]
    assert (await post(first, NAME + "-2"))["status"] == 200
    assert text(await call("DELETE", query(first))) == "Success"
    assert (await post(new_key()))["status"] == 200
    integration_keys._memory._entries.clear()


# --- entries an earlier version stored, under the names before the hash tag -------------------------------


async def store_as_before(client: redis.Redis, key: str, name: str = NAME) -> str:
    """What an earlier version's POST left in Redis (no expiry): the entry and its index entry, untagged."""
    legacy = integration_keys.LEGACY_KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()
    await client.set(legacy, name)
    await client.zadd(integration_keys.LEGACY_INDEX_KEY, {legacy: "+inf"})
    return legacy


@STANDALONE_ONLY
async def test_an_entry_under_its_earlier_name_is_read_counted_and_deleted(redis_direct: redis.Redis) -> None:
    key = new_key()
    legacy = await store_as_before(redis_direct, key)
    before = await integration_keys.count()
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME}
    assert text(await call("DELETE", query(key))) == "Success"
    assert await redis_direct.exists(legacy) == 0
    assert await redis_direct.zscore(integration_keys.LEGACY_INDEX_KEY, legacy) is None
    assert await integration_keys.count() == before - 1
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": ""}


@STANDALONE_ONLY
async def test_writing_an_entry_moves_it_to_its_tagged_name(settings: Any, redis_direct: redis.Redis) -> None:
    """A POST of a key stored under its earlier name stores it under the new one, even with the store full (it
    is a stored key), and the earlier name and its index entry go."""
    key = new_key()
    legacy = await store_as_before(redis_direct, key)
    settings.CONVERSATION_NAME_MAX_ENTRIES = 1  # far fewer than the entries stored: only stored keys may change
    assert (await post(key, NAME + "-2"))["status"] == 200
    assert await redis_direct.exists(legacy) == 0
    assert await redis_direct.zscore(integration_keys.LEGACY_INDEX_KEY, legacy) is None
    assert await redis_direct.get(integration_keys.storage_key(key)) == (NAME + "-2").encode()
    assert json.loads((await call("GET", query(key)))["body"]) == {"conversationName": NAME + "-2"}
    await call("DELETE", query(key))


@STANDALONE_ONLY
async def test_entries_under_earlier_names_count_against_the_bound(settings: Any, redis_direct: redis.Redis) -> None:
    settings.CONVERSATION_NAME_TTL_SECONDS = 600
    settings.CONVERSATION_NAME_MAX_ENTRIES = await live_indexed(redis_direct) + 1
    old = new_key()
    await store_as_before(redis_direct, old)
    assert (await post(new_key()))["status"] == 507
    await call("DELETE", query(old))
    fresh = new_key()
    assert (await post(fresh))["status"] == 200
    await call("DELETE", query(fresh))
