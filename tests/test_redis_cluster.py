"""The service on a real Redis Cluster (``REDIS_CLUSTER``): six local redis-servers, three primaries each with a
replica (``testing.processes.redis_cluster``).

What is shared with a standalone Redis runs in its own modules over both (the ``redis_kind`` fixture:
tests/test_integration_keys.py, test_instances.py, test_presence.py); here is what only a cluster has: the
client's bound per node, scans of every primary, keys spread over every shard on purpose, scripts' keys in
one slot, and server processes started with ``REDIS_CLUSTER=true``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import uuid
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MaxConnectionsError, RedisError

from aa_site import admin_lockout, live_state
from connector import ratelimit, tokens
from connector.desktops import close_codes, instances, preauth, presence, sessions
from connector.desktops.engineio import store
from connector.desktops.polling import operators
from connector.http import integration_keys
from events import redis_client, redis_keys
from events.history import Offset
from testing import clients, processes
from tests import test_ratelimit


@pytest.fixture
def on_cluster(settings, redis_cluster: processes.RedisClusterAddress) -> processes.RedisClusterAddress:
    """The service's settings name the cluster's discovery endpoint, with ``REDIS_CLUSTER`` on."""
    settings.REDISHOST, settings.REDISPORT = redis_cluster.host, redis_cluster.port
    settings.REDIS_CLUSTER = True
    return redis_cluster



def one_on_each_primary(client: RedisCluster, make: Callable[[str], str]) -> list[str]:
    """``make(name)`` for made-up names until one key lands on each primary (in primary order)."""
    found: dict[str, str] = {}
    for number in itertools.count():
        key = make(f"{uuid.uuid4().hex[:6]}{number}")
        found.setdefault(client.get_node_from_key(key).name, key)
        if len(found) == len(client.get_primaries()):
            return [found[node.name] for node in client.get_primaries()]
    raise AssertionError("unreachable")


def names_on_each_primary(client: RedisCluster, key_of: Callable[[str], str]) -> list[str]:
    """Names (a sid, an instance id) whose ``key_of(name)`` lands on each primary."""
    made: dict[str, str] = {}

    def make(name: str) -> str:
        made[key_of(name)] = name
        return key_of(name)

    return [made[key] for key in one_on_each_primary(client, make)]


# --- the local cluster and the client ------------------------------------------------------


async def test_the_local_cluster_has_three_primaries_each_with_a_replica(
    direct: RedisCluster, redis_cluster: processes.RedisClusterAddress
) -> None:
    assert len(direct.get_primaries()) == 3
    assert len(direct.get_replicas()) == 3
    listed = {(node.host, node.port) for node in direct.get_nodes()}
    assert listed == {("127.0.0.1", node.port) for node in redis_cluster.nodes} or not redis_cluster.nodes
    for node in direct.get_nodes():
        assert (await direct.cluster_info(target_nodes=node))["cluster_state"] == "ok"


async def test_the_service_client_is_a_cluster_client_bounded_per_node(on_cluster) -> None:
    client = redis_client.get_redis()
    assert isinstance(client, redis_client.WaitingRedisCluster)
    assert await client.ping()
    assert {node.max_connections for node in client.get_nodes()} == {redis_client.MAX_CONNECTIONS}
    assert isinstance(redis_client.get_subscriber(), RedisCluster)
    assert redis_client.get_subscriber() is not client


async def test_a_burst_past_the_bound_per_node_waits_where_redis_py_alone_fails(
    on_cluster, monkeypatch, direct: RedisCluster
) -> None:
    """200 commands at once on one shard with 2 connections per node: redis-py's client raises
    ``MaxConnectionsError`` at the third; the service's waits for a free connection and runs them all."""
    monkeypatch.setattr(redis_client, "MAX_CONNECTIONS", 2)
    key = f"burst:{uuid.uuid4().hex}"
    plain = RedisCluster(host=on_cluster.host, port=on_cluster.port, max_connections=2)
    try:
        with pytest.raises(MaxConnectionsError):
            await asyncio.gather(*(plain.incr(key) for _ in range(200)))
    finally:
        await plain.aclose()
    key += ":waiting"  # (the commands gather left running above may still land on the first)
    client = redis_client.get_redis()
    results = await asyncio.gather(*(client.incr(key) for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert len(client.get_node_from_key(key)._connections) == 2
    await direct.delete(key)


async def test_an_unreachable_cluster_is_a_redis_error(on_cluster, settings) -> None:
    """redis-py raises ``RedisClusterException`` (no ``RedisError``) when no node answers; every caller survives
    a ``RedisError``, so the service's client raises one."""
    settings.REDISPORT = processes.free_port()
    with pytest.raises(RedisError):
        await redis_client.get_redis().ping()
    with pytest.raises(RedisError):
        await redis_client.subscriber_pubsub()
    # And the callers answer as when a standalone Redis is down: the rate limit fails open.
    assert await ratelimit.count(f"{ratelimit.KEY_PREFIX}down:{uuid.uuid4().hex}", 60, "test") is None


async def test_scan_iter_reads_every_primary(on_cluster, direct: RedisCluster) -> None:
    """redis-py's cluster ``scan_iter`` scans each primary to its end (SCAN is sent to every primary)."""
    prefix = f"scan-{uuid.uuid4().hex[:8]}:"
    keys = one_on_each_primary(direct, lambda name: f"{prefix}{name}")
    for key in keys:
        await direct.set(key, "1", ex=60)
    # Enough other keys that each primary's scan takes several calls of COUNT 10.
    async with direct.pipeline(transaction=False) as pipe:
        for number in range(300):
            pipe.set(f"{prefix}filler:{number}", "1", ex=60)
        await pipe.execute()
    found = {key.decode() async for key in redis_client.get_redis().scan_iter(match=f"{prefix}*", count=10)}
    assert set(keys) <= found
    assert len(found) == 303


async def test_the_subscriber_reads_shard_channels_of_every_primary(on_cluster, direct: RedisCluster) -> None:
    """``subscriber_pubsub`` on a cluster: SSUBSCRIBE to a shard channel on each primary, SPUBLISH to each from the
    service's client, and every message arrives (redis-py reads each from the primary owning its slot)."""
    channels = one_on_each_primary(direct, lambda name: f"shard-{uuid.uuid4().hex[:6]}:{{{name}}}")
    pubsub = await redis_client.subscriber_pubsub()
    try:
        await pubsub.ssubscribe(*channels)
        client = redis_client.get_redis()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        received: set[str] = set()
        while received != set(channels):
            assert loop.time() < deadline, received
            for channel in set(channels) - received:
                await client.spublish(channel, "event")
            message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None and message["type"] == "smessage":
                received.add(message["channel"].decode())
        assert len(pubsub.node_pubsub_mapping) == 3  # one connection to each primary
    finally:
        await pubsub.aclose()


# --- every multi-key script's keys in one slot ----------------------------------------------


def same_slot(keys: list[str]) -> bool:
    return len({redis_keys.key_slot(key.encode("utf-8")) for key in keys}) == 1


@pytest.mark.parametrize("conversation", [
    "projects/p/conversations/c", "projects/p/locations/global/conversations/c-1",
    "projects/p/conversations/a{b}c", "projects/p/conversations/a{}b", "projects/p/conversations/{}{x}",
])
def test_presence_keys_share_a_slot_with_the_companions_key(settings, conversation: str) -> None:
    for prefix in ("", "tenant-1:", "odd{prefix}:"):
        settings.PRESENCE_KEY_PREFIX = prefix
        keys = presence._keys(conversation)
        assert keys[0] == prefix + conversation  # the companions' name, unchanged
        assert same_slot(keys)
        assert len({presence.member_key(conversation), presence.member_key(conversation + "x")}) == 2


def test_script_keys_share_one_slot(settings) -> None:
    settings.REDIS_CLUSTER = True
    assert same_slot(integration_keys._script_keys("+1-555-0100"))
    for sid in ("AbC-d_e", secrets.token_urlsafe(15), "a}b", "{x}"):
        assert same_slot(list(store._keys(sid)))
        assert store._record_keys("pid") == []  # another slot: renewed apart on a cluster
    keys = [counter.key for counter in admin_lockout._counters(_login_request("10.0.0.1"), {"username": "admin"})]
    assert len(keys) == 2 and same_slot(keys)


def _login_request(address: str):
    from django.test import RequestFactory

    request = RequestFactory().post("/admin/login/", {"username": "admin"})
    request.axes_ip_address = address
    return request


def test_on_a_standalone_redis_the_scripts_keep_their_legacy_and_record_keys(settings) -> None:
    settings.REDIS_CLUSTER = False
    assert len(integration_keys._script_keys("+1-555-0100")) == 4
    assert store._record_keys("pid") == [sessions.key("pid")]


# --- rate limits, admin-login counters, integration keys ------------------------------------


async def test_the_rate_limit_window_on_every_shard(on_cluster, direct: RedisCluster) -> None:
    keys = one_on_each_primary(direct, lambda name: f"{ratelimit.KEY_PREFIX}test:{name}")
    for key in keys:
        counted = [await ratelimit.count(key, 60, "test") for _ in range(3)]
        assert [count for count, _ in counted] == [1, 2, 3]
        assert all(0 < left <= 60_000 for _, left in counted)
        assert 0 < await direct.ttl(key) <= 60


async def test_the_admin_login_counters_count_together_on_a_cluster(on_cluster, direct: RedisCluster) -> None:
    keys = [counter.key for counter in admin_lockout._counters(_login_request(f"10.0.{secrets.randbelow(250)}.9"),
                                                               {"username": f"admin-{uuid.uuid4().hex}"})]
    assert await admin_lockout._eval(admin_lockout._COUNT_SCRIPT, keys, 60_000) == [1, 1]
    assert await admin_lockout._eval(admin_lockout._COUNT_SCRIPT, keys, 60_000) == [2, 2]
    assert (await admin_lockout._eval(admin_lockout._READ_SCRIPT, keys))[0::2] == [2, 2]
    assert await admin_lockout._delete(keys) == 2


async def test_two_connectors_on_a_cluster_share_the_registration_limit(redis_cluster) -> None:
    """test_ratelimit's concurrent case, on server processes started with REDIS_CLUSTER=true."""
    settings = {"REGISTER_RATE_LIMIT": "10/minute", **test_ratelimit.CONNECTOR_SETTINGS}
    with processes.service_server(role="connector", redis=redis_cluster, **settings) as first, \
            processes.service_server(role="connector", redis=redis_cluster, **settings) as second:
        source = test_ratelimit.new_source()
        transport = httpx.AsyncHTTPTransport(local_address=source)
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(transport=transport, timeout=clients.CLIENT_TIMEOUT, limits=limits) as client:
            responses = await asyncio.gather(*(
                client.post(f"{server.http_url}/register", headers=test_ratelimit.DESKTOP)
                for server in (first, second) * 20
            ))
            ready = await client.get(f"{first.http_url}/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok", ready.text
        for server in (first, second):
            assert "(a Redis Cluster's discovery endpoint)" in server.log()
            assert "Traceback" not in server.log()
    assert sorted(response.status_code for response in responses) == [200] * 10 + [429] * 30


async def test_integration_keys_over_http_on_a_connector_process_on_a_cluster(
    redis_cluster, settings, direct: RedisCluster
) -> None:
    token = clients.server_token(settings, user="agent")
    integration_key = f"+1-555-0100-{uuid.uuid4().hex}"
    name = "projects/test-project/conversations/on-a-cluster"
    url = f"/conversation-name?conversationIntegrationKey={quote(integration_key, safe='')}"
    with processes.service_server(role="connector", redis=redis_cluster) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=clients.CLIENT_TIMEOUT,
                                     headers={"Authorization": token}) as client:
            stored = await client.post("/conversation-name",
                                       json={"conversationIntegrationKey": integration_key, "conversationName": name})
            assert stored.status_code == 200, stored.text
            assert await direct.get(integration_keys.storage_key(integration_key)) == name.encode()
            assert await direct.zscore(integration_keys.INDEX_KEY, integration_keys.storage_key(integration_key))
            assert (await client.get(url)).json() == {"conversationName": name}
            assert (await client.delete(url)).text == "Success"
            assert (await client.get(url)).json() == {"conversationName": ""}
        assert "Traceback" not in server.log()


# --- long-polling sessions -------------------------------------------------------------------


def _identity(user: str = "agent") -> str:
    return store.identity_field(tokens.DesktopIdentity(project="test-project", user=user, token_id="t",
                                                       expires_at=2_000_000_000))


START = Offset("a1b2c3d4e5f6", 0)


async def _connected_session(sid: str, pid: str, *conversations: str) -> None:
    """A polling session connected to "/" as a POST leaves it (its recovery record exists)."""
    await store.create(sid)
    sets = {"identity": _identity(), "connected": "1", "pid": pid,
            **{f"c:{name}": str(START) for name in conversations}}
    assert (await store.commit(sid, pid=pid, sets=sets, deletes=[], packets=["40"])).status == "ok"


async def test_a_polling_session_on_a_cluster_renews_its_recovery_record_in_another_slot(
    on_cluster, settings, direct: RedisCluster
) -> None:
    sid, pid = secrets.token_urlsafe(15), secrets.token_hex(8)
    record = sessions.key(pid)
    await direct.set(record, "{}", px=1000)
    await _connected_session(sid, pid, "projects/p/conversations/c")
    assert await direct.pttl(record) > 5_000  # the POST renewed it for the record's lifetime
    turn = await store.poll(sid, "lock", again=False)
    assert turn.status == "ok" and turn.state.pending == ["40"] and turn.state.joined == {
        "projects/p/conversations/c": START}
    await direct.pexpire(record, 1000)
    await store.finish(sid, "lock", read={"projects/p/conversations/c": (START, Offset(START.epoch, 3))}, pid=pid)
    assert await direct.pttl(record) > 5_000  # and the GET's answer too
    assert (await store.load(sid)).joined == {"projects/p/conversations/c": Offset(START.epoch, 3)}
    # Over the queue's budget: closed, the record left to live the recovery window.
    settings.SOCKETIO_POLLING_QUEUE_LIMIT = 2
    over = await store.commit(sid, pid=pid, sets={}, deletes=[], packets=["42", "42", "42"])
    assert over.status == "over_budget"
    assert 0 < await direct.pttl(record) <= settings.SOCKETIO_RECOVERY_SECONDS * 1000
    assert (await store.poll(sid, "lock-2", again=False)).status == "closed"
    assert await store.close(sid)
    await direct.delete(record)


async def test_a_connected_sessions_long_poll_holds_nothing_before_auth_on_a_cluster(on_cluster) -> None:
    sid = secrets.token_urlsafe(15)
    address = f"10.9.{secrets.randbelow(250)}.1"
    await store.create(sid)
    hold = await preauth.HOLDS.take(address, lifetime=5, session_key=store.session_key(sid))
    assert isinstance(hold, preauth.Hold) and hold.in_redis  # not connected yet: counted
    await preauth.HOLDS.release_now(hold)
    await store.commit(sid, pid=None, sets={"identity": _identity(), "connected": "1"}, deletes=[], packets=[])
    assert await preauth.HOLDS.take(address, lifetime=5, session_key=store.session_key(sid)) is True
    await store.close(sid)


# --- the admin's live view and its disconnects, across every primary ---------------------------


async def test_the_live_view_lists_instances_and_polling_desktops_from_every_shard(
    on_cluster, direct: RedisCluster
) -> None:
    run = uuid.uuid4().hex[:6]
    ids = names_on_each_primary(direct, lambda name: instances.record_key(f"{run}-{name}"))
    instance_ids = [f"{run}-{name}" for name in ids]
    for number, instance in enumerate(instance_ids):
        record = {"instance": instance, "host": f"host-{number}", "updated": 0,
                  "desktops_by_transport": {"socketio": 1},
                  "desktops": [{"connection": f"c{number}", "user": f"user-{number}", "transport": "socketio",
                                "since": 0, "conversations": [f"projects/p/conversations/{run}-{number}"]}]}
        await direct.set(instances.record_key(instance), json.dumps(record), ex=60)
    sids = names_on_each_primary(direct, store.session_key)
    for number, sid in enumerate(sids):
        await _connected_session(sid, secrets.token_hex(8), f"projects/p/conversations/{run}-polling-{number}")
    try:
        state = await live_state.snapshot()
        listed = {record["instance"] for record in state.instances}
        assert set(instance_ids) <= listed
        conversations = {view.name: view for view in state.conversations}
        for number in range(3):
            assert conversations[f"projects/p/conversations/{run}-{number}"].desktops[0]["user"] == f"user-{number}"
            polling = conversations[f"projects/p/conversations/{run}-polling-{number}"].desktops
            assert [desktop["transport"] for desktop in polling] == ["polling"]
        polling_ids = {desktop["connection"] for desktop in await operators.desktops()}
        assert {operators.connection_id(sid) for sid in sids} <= polling_ids
        # The operator's disconnect finds a session on any shard.
        assert await operators.disconnect(operators.connection_id(sids[-1]))
        assert (await store.poll(sids[-1], "lock", again=False)).status == "closed"
    finally:
        for sid in sids:
            await store.close(sid)
        for instance in instance_ids:
            await direct.delete(instances.record_key(instance))


class _Desktop:
    transport = "websocket"

    def __init__(self) -> None:
        self.joined: set[str] = set()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        if not self.closed.done():
            self.closed.set_result(code)


async def test_an_operators_disconnect_reaches_the_instance_through_the_cluster(on_cluster, settings) -> None:
    """The control channel is classic pub/sub: the cluster passes a message published on any node to all."""
    settings.INSTANCE_REPORT_SECONDS = 0.2
    registry = instances.Registry()
    desktop = _Desktop()
    registry.connected(desktop, "agent")
    connection = registry.record()["desktops"][0]["connection"]
    try:
        for _ in range(50):  # until the reporter has subscribed
            await instances.request_disconnect(presence.PROCESS_ID, connection)
            done, _ = await asyncio.wait([desktop.closed], timeout=0.1)
            if done:
                break
        assert desktop.closed.result() == close_codes.OPERATOR_DISCONNECT
    finally:
        registry.disconnected(desktop)
        await asyncio.sleep(0.3)


# --- settings that make no sense with a cluster ----------------------------------------------


def test_a_database_number_with_redis_cluster_stops_start_up(redis_cluster) -> None:
    done = processes.service_exit(role="connector", redis=None, REDIS_CLUSTER="true",
                                  REDIS_URL=f"redis://{redis_cluster.host}:{redis_cluster.port}/2")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "aa_site.E012" in done.stderr and "a Redis Cluster has only database 0" in done.stderr


def test_the_checks_on_cluster_settings(settings) -> None:
    from aa_site import checks

    settings.REDISHOST, settings.REDIS_DB, settings.REDIS_CLUSTER = "10.0.0.5", 0, True
    assert [problem.id for problem in checks.check_redis_connection()] == []
    settings.EVENT_KEY_PREFIX = "{aa}:"
    assert [problem.id for problem in checks.check_redis_connection()] == ["aa_site.W013"]
    settings.REDIS_CLUSTER = False  # a standalone Redis hashes nothing
    assert [problem.id for problem in checks.check_redis_connection()] == []



# --- a primary failing over ------------------------------------------------------------------------


async def test_after_a_primary_fails_over_commands_and_the_control_channel_come_back(settings) -> None:
    """Kill the primary that owns the control channel's slot: its replica takes over (2 s without an answer, then
    an election), the service's commands to that shard fail meanwhile and then succeed, and the instance's
    control subscription moves to the new primary, so an operator's disconnect reaches its desktop again."""
    with processes.redis_cluster(private=True) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        settings.INSTANCE_REPORT_SECONDS = 0.2
        direct = RedisCluster(host=cluster.host, port=cluster.port)
        await direct.initialize()
        doomed = direct.get_node_from_key(instances.control_channel())
        key = one_on_each_primary(direct, lambda name: f"{ratelimit.KEY_PREFIX}failover:{name}")[
            [node.name for node in direct.get_primaries()].index(doomed.name)]
        await direct.aclose()
        registry = instances.Registry()
        desktop = _Desktop()
        registry.connected(desktop, "agent")
        connection = registry.record()["desktops"][0]["connection"]
        try:
            assert await ratelimit.count(key, 60, "test") is not None
            await asyncio.sleep(0.5)  # the reporter has subscribed, on the doomed primary
            cluster.node(doomed.port).kill()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while await ratelimit.count(key, 60, "test") is None:  # Redis unavailable: fails open meanwhile
                assert loop.time() < deadline, "the shard did not come back"
                await asyncio.sleep(0.2)
            while not desktop.closed.done():
                assert loop.time() < deadline, "the control channel did not come back"
                await instances.request_disconnect(presence.PROCESS_ID, connection)
                await asyncio.wait([desktop.closed], timeout=0.2)
            assert desktop.closed.result() == close_codes.OPERATOR_DISCONNECT
        finally:
            registry.disconnected(desktop)
            await asyncio.sleep(0.3)
