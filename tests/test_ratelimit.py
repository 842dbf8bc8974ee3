"""The registration rate limit (connector/ratelimit.py) against real server processes and a real Redis.

Every request travels over loopback TCP to the image's server command.
Distinct clients are distinct source addresses (127.0.0.0/8 is all local on
Linux), so the server sees real peer addresses, not headers we trust blindly.
``AUTH_OPTION=Five9`` judges tokens without any network, so an accepted
registration is a real 200 with a JWT.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync
from django.core.handlers.asgi import ASGIRequest

from aa_site import env
from connector import ratelimit
from testing import clients, processes

FIVE9_SECRET = "five9-trust-token-for-rate-limit-tests"
DESKTOP = {"Authorization": f"Bearer {FIVE9_SECRET}"}
DESK_ORIGIN = "https://desk.example"
LIMIT = 3
CONNECTOR_SETTINGS = {
    "AUTH_OPTION": "Five9",
    "FIVE9_TRUST_TOKEN": FIVE9_SECRET,
    "CORS_ALLOWED_ORIGINS": DESK_ORIGIN,
}

_sources = itertools.count()


def new_source() -> str:
    """A loopback address no other test in this run has used as its client address."""
    number = next(_sources)
    return f"127.0.{1 + number // 250}.{2 + number % 250}"


def retry_after(response: httpx.Response) -> int:
    """The Retry-After header as whole seconds (it must be one)."""
    value = response.headers.get("Retry-After")
    assert value is not None and value.isdigit(), response.headers
    return int(value)


async def post(
    server: processes.Server,
    *,
    source: str,
    path: str = "/register",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> httpx.Response:
    """One request from ``source`` (bound as the TCP client address), as a desktop sends it."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=clients.CLIENT_TIMEOUT) as client:
        return await client.request(method, f"{server.http_url}{path}", headers={**DESKTOP, **(headers or {})})


async def statuses(server: processes.Server, count: int, *, source: str, **kwargs: object) -> list[int]:
    """The statuses of ``count`` requests made one after another."""
    return [(await post(server, source=source, **kwargs)).status_code for _ in range(count)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def redis_address() -> Iterator[processes.RedisAddress]:
    """A Redis for this module, without rate-limit keys left from an earlier run."""
    with processes.redis_server() as address:
        client = redis_sync.Redis(host=address.host, port=address.port)
        for key in client.scan_iter(match=f"{ratelimit.KEY_PREFIX}*"):
            client.delete(key)
        client.close()
        yield address


@pytest.fixture(scope="module")
def connector(redis_address: processes.RedisAddress) -> Iterator[processes.Server]:
    """A production-like connector allowing LIMIT registrations a minute per address, no trusted proxy."""
    with processes.service_server(
        role="connector", redis=redis_address, REGISTER_RATE_LIMIT=f"{LIMIT}/minute", **CONNECTOR_SETTINGS
    ) as server:
        yield server


@pytest.fixture(scope="module")
def behind_one_proxy(redis_address: processes.RedisAddress) -> Iterator[processes.Server]:
    """The same, configured as on Cloud Run: one trusted proxy appends to X-Forwarded-For."""
    with processes.service_server(
        role="connector",
        redis=redis_address,
        REGISTER_RATE_LIMIT=f"{LIMIT}/minute",
        TRUSTED_PROXY_HOPS="1",
        **CONNECTOR_SETTINGS,
    ) as server:
        yield server


# --- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30/minute", (30, 60)),
        ("5/10s", (5, 10)),
        ("100/h", (100, 3600)),
        ("1000/day", (1000, 86400)),
        (" 2 / 2 Seconds ", (2, 2)),
        ("", (30, 60)),
        ("0", None),
        ("off", None),
        ("OFF", None),
    ],
)
def test_rate_setting_accepts_documented_forms(monkeypatch: pytest.MonkeyPatch, value: str, expected: object) -> None:
    """N/unit and N/<k><unit> give (requests, seconds); empty means the default; 0 and off disable."""
    monkeypatch.setattr(env, "PROBLEMS", [])
    monkeypatch.setenv("REGISTER_RATE_LIMIT", value)
    assert env.rate("REGISTER_RATE_LIMIT", "30/minute") == expected
    assert env.PROBLEMS == []


@pytest.mark.parametrize("value", ["30/fortnight", "30", "0/minute", "-1/minute", "1.5/minute", "x/m", "3/0s", "1/2d"])
def test_rate_setting_records_a_problem_naming_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """A malformed rate (or a window beyond a day) is recorded against REGISTER_RATE_LIMIT."""
    monkeypatch.setattr(env, "PROBLEMS", [])
    monkeypatch.setenv("REGISTER_RATE_LIMIT", value)
    env.rate("REGISTER_RATE_LIMIT", "30/minute")
    assert [name for name, _ in env.PROBLEMS] == ["REGISTER_RATE_LIMIT"]
    assert repr(value) in env.PROBLEMS[0][1]


@pytest.mark.parametrize(("name", "value"), [("REGISTER_RATE_LIMIT", "30/fortnight"), ("TRUSTED_PROXY_HOPS", "-1")])
def test_malformed_setting_stops_start_up_naming_it(
    redis_address: processes.RedisAddress, name: str, value: str
) -> None:
    """The server exits 2 before serving, naming the bad setting."""
    result = processes.service_exit(role="connector", redis=redis_address, **{**CONNECTOR_SETTINGS, name: value})
    assert result.returncode == 2, result.stderr
    assert name in result.stderr and value in result.stderr


# --- the limit --------------------------------------------------------------------------


async def test_limit_reached_answers_429_with_retry_after(connector: processes.Server) -> None:
    """LIMIT registrations succeed; the next is 429 {"message"} with Retry-After within the window."""
    source = new_source()
    assert await statuses(connector, LIMIT, source=source) == [200] * LIMIT
    refused = await post(connector, source=source)
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("application/json")
    assert set(refused.json()) == {"message"} and refused.json()["message"]
    assert 1 <= retry_after(refused) <= 60


async def test_other_addresses_are_unaffected(connector: processes.Server) -> None:
    """One address at its limit does not limit another."""
    limited, other = new_source(), new_source()
    assert await statuses(connector, LIMIT + 1, source=limited) == [200] * LIMIT + [429]
    assert (await post(connector, source=other)).status_code == 200


async def test_register_and_register_app_share_one_budget(connector: processes.Server) -> None:
    """/register-app (401 here: no APP_AUTH_OPTION) counts against the same budget as /register."""
    source = new_source()
    assert await statuses(connector, LIMIT - 1, source=source) == [200] * (LIMIT - 1)
    assert (await post(connector, source=source, path="/register-app")).status_code == 401
    assert (await post(connector, source=source)).status_code == 429
    assert (await post(connector, source=source, path="/register-app")).status_code == 429


async def test_rejected_registrations_count(connector: processes.Server) -> None:
    """Tokens the provider refuses use up the budget too: the limit is what stops guessing."""
    source = new_source()
    wrong = {"Authorization": "Bearer guessed-token"}
    assert await statuses(connector, LIMIT, source=source, headers=wrong) == [401] * LIMIT
    assert (await post(connector, source=source)).status_code == 429


async def test_other_methods_do_not_use_the_budget(connector: processes.Server) -> None:
    """GET /register is refused (405) before it is counted."""
    source = new_source()
    assert await statuses(connector, LIMIT + 2, source=source, method="GET") == [405] * (LIMIT + 2)
    assert await statuses(connector, LIMIT, source=source) == [200] * LIMIT


async def test_refused_requests_do_not_prolong_the_window(
    connector: processes.Server, redis_address: processes.RedisAddress
) -> None:
    """Hammering while limited counts in Redis but never moves the window's end, nor raises Retry-After."""
    source = new_source()
    key = f"{ratelimit.KEY_PREFIX}register:{source}"
    client = redis_sync.Redis(host=redis_address.host, port=redis_address.port)
    try:
        await statuses(connector, LIMIT, source=source)
        # Half the window already gone: a limiter that restarted the window would put it back to 60 s.
        client.pexpire(key, 30_000)
        waits = [retry_after(await post(connector, source=source)) for _ in range(5)]
        assert waits == sorted(waits, reverse=True) and waits[0] <= 30, waits
        assert int(client.get(key)) == LIMIT + 5
        assert 0 < client.pttl(key) <= 30_000
    finally:
        client.close()


async def test_cross_origin_429_lets_the_desktop_read_retry_after(connector: processes.Server) -> None:
    """A listed desktop origin gets CORS headers on the 429, with Retry-After exposed to its script."""
    source = new_source()
    origin = {"Origin": DESK_ORIGIN}
    await statuses(connector, LIMIT, source=source, headers=origin)
    refused = await post(connector, source=source, headers=origin)
    assert refused.status_code == 429
    assert refused.headers.get("Access-Control-Allow-Origin") == DESK_ORIGIN
    assert "retry-after" in refused.headers.get("Access-Control-Expose-Headers", "").lower()


async def test_window_expiry_restores_the_budget(redis_address: processes.RedisAddress) -> None:
    """After Retry-After seconds the address may register again."""
    with processes.service_server(
        role="connector", redis=redis_address, REGISTER_RATE_LIMIT="2/2s", **CONNECTOR_SETTINGS
    ) as server:
        source = new_source()
        assert await statuses(server, 2, source=source) == [200, 200]
        refused = await post(server, source=source)
        assert refused.status_code == 429
        await asyncio.sleep(retry_after(refused))
        # The window has ended by now; polling only guards against a slow clock tick and
        # cannot prolong it (refused requests never move the expiry).
        for _ in range(int(clients.CLIENT_TIMEOUT * 10)):
            response = await post(server, source=source)
            if response.status_code == 200:
                break
            assert response.status_code == 429
            await asyncio.sleep(0.1)
        assert response.status_code == 200


async def test_limit_is_shared_by_instances_on_one_redis(redis_address: processes.RedisAddress) -> None:
    """Requests split across two connector processes count together."""
    settings = {"REGISTER_RATE_LIMIT": "4/minute", **CONNECTOR_SETTINGS}
    with processes.service_server(role="connector", redis=redis_address, **settings) as first, processes.service_server(
        role="connector", redis=redis_address, **settings
    ) as second:
        source = new_source()
        answered = [(await post(server, source=source)).status_code for server in (first, second, first, second)]
        assert answered == [200] * 4
        assert (await post(first, source=source)).status_code == 429
        assert (await post(second, source=source)).status_code == 429


# --- the client address -----------------------------------------------------------------


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(connector: processes.Server) -> None:
    """With TRUSTED_PROXY_HOPS=0 a client cannot escape the limit by writing X-Forwarded-For."""
    source = new_source()
    answered = [
        (await post(connector, source=source, headers={"X-Forwarded-For": f"198.51.100.{n}"})).status_code
        for n in range(LIMIT + 2)
    ]
    assert answered == [200] * LIMIT + [429, 429]


async def test_one_trusted_proxy_counts_the_entry_it_appended(behind_one_proxy: processes.Server) -> None:
    """With TRUSTED_PROXY_HOPS=1 the right-most entry is the client; what the client wrote left of it is not."""
    source = new_source()  # the proxy: one peer address for everyone

    def forwarded(client_wrote: str, proxy_saw: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"{client_wrote}, {proxy_saw}"}

    answered = [
        (await post(behind_one_proxy, source=source, headers=forwarded(f"10.0.0.{n}", "203.0.113.9"))).status_code
        for n in range(LIMIT + 1)
    ]
    assert answered == [200] * LIMIT + [429]
    other_client = await post(behind_one_proxy, source=source, headers=forwarded("10.0.0.1", "203.0.113.10"))
    assert other_client.status_code == 200


async def test_one_trusted_proxy_reads_repeated_forwarded_headers_as_one_list(
    behind_one_proxy: processes.Server,
) -> None:
    """A client's own X-Forwarded-For line before the proxy's does not change which entry is counted."""
    source = new_source()
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=clients.CLIENT_TIMEOUT) as client:
        for n in range(LIMIT):
            client_line, proxy_line = ("X-Forwarded-For", f"10.1.0.{n}"), ("X-Forwarded-For", "203.0.113.20")
            headers = [*DESKTOP.items(), client_line, proxy_line]
            response = await client.post(f"{behind_one_proxy.http_url}/register", headers=headers)
            assert response.status_code == 200
    response = await post(behind_one_proxy, source=source, headers={"X-Forwarded-For": "203.0.113.20"})
    assert response.status_code == 429


async def test_ipv6_clients_are_counted_per_64(behind_one_proxy: processes.Server) -> None:
    """Addresses within one /64 (one subscriber's prefix) share a budget; another /64 has its own."""
    source = new_source()
    answered = [
        (await post(behind_one_proxy, source=source, headers={"X-Forwarded-For": f"2001:db8:5:6::{n:x}"})).status_code
        for n in range(1, LIMIT + 2)
    ]
    assert answered == [200] * LIMIT + [429]
    other = await post(behind_one_proxy, source=source, headers={"X-Forwarded-For": "2001:db8:5:7::1"})
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("forwarded_for", "hops", "expected"),
    [
        ("198.51.100.1", 0, "peer"),
        ("198.51.100.1, 203.0.113.1", 1, "203.0.113.1"),
        ("198.51.100.1, 203.0.113.1, 192.0.2.1", 2, "203.0.113.1"),
        ("203.0.113.1", 2, "203.0.113.1"),  # shorter than the proxy chain: the outermost proxy's entry
        ("", 1, "peer"),
        (" , ", 1, "peer"),
    ],
)
def test_forwarded_client_takes_the_entry_the_outermost_trusted_proxy_wrote(
    forwarded_for: str, hops: int, expected: str
) -> None:
    """The client is the hops-th X-Forwarded-For entry from the right; without hops or entries, the peer."""
    assert ratelimit.forwarded_client(forwarded_for, hops, "peer") == expected


@pytest.mark.parametrize(
    ("headers", "client", "expected"),
    [
        ([], ("198.51.100.7", 5000), "198.51.100.7"),
        ([(b"x-forwarded-for", b"10.0.0.1, 203.0.113.9")], ("198.51.100.7", 5000), "203.0.113.9"),
        # Repeated headers are one list, as Django joins them into META.
        ([(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"2001:db8:1:2::5")], None, "2001:db8:1:2::/64"),
        ([], None, "unknown"),
    ],
)
def test_an_asgi_scope_is_counted_against_the_address_its_request_would_be(
    settings, headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None, expected: str
) -> None:
    """``scope_client_address`` (handshakes ahead of Django) agrees with ``client_address`` on the same request."""
    settings.TRUSTED_PROXY_HOPS = 1
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": headers, "client": client}
    assert ratelimit.scope_client_address(scope) == expected
    assert ratelimit.client_address(ASGIRequest(scope, io.BytesIO())) == expected


# --- without Redis ----------------------------------------------------------------------


async def test_unreachable_redis_lets_registrations_through_with_a_warning() -> None:
    """Fail open: Redis down means no limit (the identity provider still judges), and a WARNING says so."""
    closed = processes.RedisAddress("127.0.0.1", processes.free_port())
    with processes.service_server(
        role="connector", redis=closed, REGISTER_RATE_LIMIT="1/minute", **CONNECTOR_SETTINGS
    ) as server:
        source = new_source()
        assert await statuses(server, 3, source=source) == [200, 200, 200]
        assert (await post(server, source=source, headers={"Authorization": "Bearer wrong"})).status_code == 401
        warnings = [line for line in server.log().splitlines() if "rate limit not enforced" in line]
    assert warnings and all(" WARNING connector.ratelimit " in line for line in warnings), warnings


async def test_development_mode_without_redis_limits_in_process() -> None:
    """Without REDISHOST (development mode) the same limit is kept in the process."""
    with processes.service_server(
        role="connector", redis=None, DEVELOPMENT_MODE="true", AUTH_OPTION="Skip", REGISTER_RATE_LIMIT="2/minute"
    ) as server:
        source = new_source()
        assert await statuses(server, 2, source=source) == [200, 200]
        refused = await post(server, source=source)
        assert refused.status_code == 429 and 1 <= retry_after(refused) <= 60
        assert (await post(server, source=new_source())).status_code == 200


# --- defaults ---------------------------------------------------------------------------


async def test_default_is_30_a_minute(redis_address: processes.RedisAddress) -> None:
    """An empty REGISTER_RATE_LIMIT means 30 registrations a minute per address."""
    with processes.service_server(
        role="connector", redis=redis_address, REGISTER_RATE_LIMIT="", **CONNECTOR_SETTINGS
    ) as server:
        source = new_source()
        assert await statuses(server, 31, source=source) == [200] * 30 + [429]


@pytest.mark.parametrize("value", ["0", "off"])
async def test_zero_or_off_disables_the_limit(redis_address: processes.RedisAddress, value: str) -> None:
    """REGISTER_RATE_LIMIT=0 or off: no 429, however many registrations."""
    with processes.service_server(
        role="connector", redis=redis_address, REGISTER_RATE_LIMIT=value, **CONNECTOR_SETTINGS
    ) as server:
        assert await statuses(server, 35, source=new_source()) == [200] * 35



def test_image_leaves_the_client_address_to_the_limiter() -> None:
    """The Dockerfile trusts Cloud Run's one proxy and does not run its server with --proxy-headers.

    --proxy-headers (uvicorn's and daphne's) would make the ASGI client address the left-most
    X-Forwarded-For entry, which the client writes; with TRUSTED_PROXY_HOPS=0
    that would let any client pick its own rate-limit bucket. (aa_site.serve_uvicorn turns
    uvicorn's proxy_headers off; test_forwarded_for_is_ignored_without_a_trusted_proxy checks it.)
    """
    dockerfile = (processes.REPOSITORY / "Dockerfile").read_text()
    command = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    # The test servers run this module (tests/test_dockerfile.py), so the option would have the same effect.
    assert f"-m {processes.SERVE_MODULES[processes.IMAGE_SERVER]} " in command and "--proxy-headers" not in command
    assert "TRUSTED_PROXY_HOPS=1" in dockerfile


async def test_concurrent_requests_to_two_instances_never_exceed_the_limit(
    redis_address: processes.RedisAddress,
) -> None:
    """40 registrations from one address fired at once, split across two processes: exactly the limit pass.

    A read-then-write counter (GET, compare, SET) would let concurrent requests on both instances read the
    same count and pass together; the window's single Lua script cannot.
    """
    settings = {"REGISTER_RATE_LIMIT": "10/minute", **CONNECTOR_SETTINGS}
    with processes.service_server(role="connector", redis=redis_address, **settings) as first, processes.service_server(
        role="connector", redis=redis_address, **settings
    ) as second:
        source = new_source()
        transport = httpx.AsyncHTTPTransport(local_address=source)
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(transport=transport, timeout=clients.CLIENT_TIMEOUT, limits=limits) as client:
            responses = await asyncio.gather(*(
                client.post(f"{server.http_url}/register", headers=DESKTOP) for server in (first, second) * 20
            ))
    answered = sorted(response.status_code for response in responses)
    assert answered == [200] * 10 + [429] * 30
