"""``/metrics``: Prometheus text behind ``METRICS_TOKEN``, scraped from real server processes after real pushes.

The interceptor counts each push by kind and answer; the connector counts the
deliveries to its desktops, observes the push-to-desktop latency once per
event, and shows its connected desktops by transport; a long-polling desktop,
its requests spread over two processes, is counted once over both, and so are
its deliveries. Two processes sharing ``PROMETHEUS_MULTIPROC_DIR`` answer with
their sum.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from channels.testing import HttpCommunicator
from prometheus_client.parser import text_string_to_metric_families

from aa_site.asgi import application
from events import metrics
from interceptor import push_samples
from testing import clients, processes
from testing.clients import PlainDesktop, SocketIODesktop
from testing.nginx_proxy import Proxy, round_robin
from testing.processes import Server

TOKEN = "metrics-token-Wq3v9kT2xLr8bYp4Zs6mNc1dHf5gJa7e"
KIND = "new-message-event"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: Server, token: str = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {token}"},
                       timeout=clients.CLIENT_TIMEOUT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


def pushes(values, kind: str, outcome: str) -> float:
    return values.get(("aa_pushes_received_total", (("kind", kind), ("outcome", outcome))), 0.0)


def conversation() -> str:
    return f"projects/{processes.TEST_PROJECT}/conversations/metrics-{uuid.uuid4().hex[:12]}"


# --- the endpoint's access rules, in process -----------------------------------------------------


async def get_metrics(authorization: str | None = None) -> dict:
    headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return await HttpCommunicator(application, "GET", "/metrics", headers=headers).get_response(timeout=10)


async def test_metrics_are_off_without_a_token(settings) -> None:
    settings.METRICS_TOKEN = ""
    response = await get_metrics(f"Bearer {TOKEN}")
    assert response["status"] == 404
    assert b"aa_" not in response["body"]


@pytest.mark.parametrize("authorization", [None, "", "Bearer", f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"])
async def test_metrics_refuse_a_missing_or_wrong_token(settings, authorization: str | None) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = await get_metrics(authorization)
    assert response["status"] == 401
    assert dict(response["headers"])[b"WWW-Authenticate"] == b'Bearer realm="metrics"'
    assert b'"message"' in response["body"] and b"aa_pushes" not in response["body"]
    assert TOKEN.encode() not in response["body"]


async def test_metrics_with_the_token_list_every_metric(settings) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = await get_metrics(f"bearer {TOKEN}")
    assert response["status"] == 200
    names = {family.name for family in text_string_to_metric_families(response["body"].decode())}
    assert {"aa_pushes_received", "aa_push_redeliveries", "aa_event_deliveries", "aa_push_to_desktop_seconds",
            "aa_desktops_connected", "aa_redis_errors"} <= names


def test_short_metrics_token_stops_production_start_up(redis_server) -> None:
    result = processes.service_exit(role="interceptor", redis=redis_server, METRICS_TOKEN="short")
    assert result.returncode == 2
    assert "aa_site.E020" in result.stderr and "short" not in result.stderr.replace("shorter", "")


def test_publish_time_is_read_from_the_payload_without_its_data() -> None:
    """The key inside the notification text is escaped, so only the payload's own publish_time is read."""
    payload = ('{"conversation_name":"c","data":"{\\"publish_time\\":\\"1999-01-01T00:00:00Z\\"}",'
               '"publish_time":"2024-01-02T03:04:05.250Z","message_id":"1"}')
    assert metrics.publish_timestamp(payload) == 1704164645.25
    assert metrics.publish_timestamp('{"publish_time":null}') is None
    assert metrics.publish_timestamp('{"publish_time":"yesterday"}') is None


# --- real processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(redis_server) -> Iterator[dict[str, Server]]:
    with contextlib.ExitStack() as stack:
        yield {
            role: stack.enter_context(processes.service_server(role=role, redis=redis_server, METRICS_TOKEN=TOKEN))
            for role in ("connector", "interceptor")
        }


def test_a_real_scrape_without_the_token_is_refused(servers) -> None:
    for server in servers.values():
        answer = httpx.get(f"{server.http_url}/metrics", timeout=clients.CLIENT_TIMEOUT)
        assert answer.status_code == 401
        assert "aa_" not in answer.text


async def test_pushes_deliveries_latency_and_desktops_move(servers, settings) -> None:
    connector, interceptor = servers["connector"], servers["interceptor"]
    before_in, before_out = scrape(interceptor), scrape(connector)
    token = clients.server_token(settings, user="metrics-agent")
    name = conversation()
    socketio_desktop = SocketIODesktop("metrics")
    await socketio_desktop.connect(connector, token)
    plain = await PlainDesktop.connect(connector, token)
    try:
        await socketio_desktop.join(name)
        assert (await plain.join(name))["type"] == "joined"
        connected = scrape(connector)
        for transport in ("socketio", "websocket"):
            key = ("aa_desktops_connected", (("transport", transport),))
            assert connected[key] == before_out.get(key, 0.0) + 1
        body = push_samples.encode(push_samples.sample_push(KIND, name, message_id=f"m-{uuid.uuid4().hex}"))
        async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
            accepted = await client.post(f"{interceptor.http_url}/{KIND}", content=body)
            again = await client.post(f"{interceptor.http_url}/{KIND}", content=body)
            poison = await client.post(f"{interceptor.http_url}/{KIND}", content=b"{not json")
        assert (accepted.status_code, again.status_code, poison.status_code) == (204, 204, 200)
        assert (await plain.next_frame())["type"] == "event"
        await clients.wait_until(lambda: any(event == KIND for event, _ in socketio_desktop.events),
                                 what="the Socket.IO desktop's event")
        after_in, after_out = scrape(interceptor), scrape(connector)
    finally:
        await socketio_desktop.disconnect()
        await plain.close()
    assert pushes(after_in, KIND, "accepted") == pushes(before_in, KIND, "accepted") + 2
    assert pushes(after_in, KIND, "discarded") == pushes(before_in, KIND, "discarded") + 1
    redelivered = ("aa_push_redeliveries_total", (("kind", KIND),))
    assert after_in[redelivered] == before_in.get(redelivered, 0.0) + 1
    delivered = ("aa_event_deliveries_total", (("kind", KIND),))
    assert after_out[delivered] == before_out.get(delivered, 0.0) + 2  # one event, two desktops
    observed = ("aa_push_to_desktop_seconds_count", ())
    assert after_out[observed] == before_out.get(observed, 0.0) + 1  # once per event, not per desktop
    assert after_out[("aa_push_to_desktop_seconds_sum", ())] >= before_out.get(("aa_push_to_desktop_seconds_sum", ()), 0)
    # The interceptor delivers nothing; the connector receives no pushes.
    assert pushes(after_out, KIND, "accepted") == 0

    def desktops_gone() -> bool:
        now = scrape(connector)
        return all(now[("aa_desktops_connected", (("transport", t),))] == before_out.get(
            ("aa_desktops_connected", (("transport", t),)), 0.0) for t in ("socketio", "websocket"))

    await clients.wait_until(desktops_gone, what="the desktops to be counted out")


def test_a_push_that_finds_redis_down_counts_a_redis_error_and_an_unavailable_answer() -> None:
    with processes.redis_server(private=True) as redis, \
            processes.service_server(role="interceptor", redis=redis, METRICS_TOKEN=TOKEN) as interceptor:
        before = scrape(interceptor)
        redis_lib.Redis(host=redis.host, port=redis.port).shutdown(nosave=True)
        body = push_samples.encode(push_samples.sample_push(KIND, conversation()))
        answer = httpx.post(f"{interceptor.http_url}/{KIND}", content=body, timeout=clients.CLIENT_TIMEOUT)
        assert answer.status_code == 503
        after = scrape(interceptor)
    errors = ("aa_redis_errors_total", (("operation", "publish"),))
    assert after[errors] == before.get(errors, 0.0) + 1
    assert pushes(after, KIND, "unavailable") == pushes(before, KIND, "unavailable") + 1


def test_processes_sharing_a_multiprocess_directory_answer_with_their_sum(redis_server, tmp_path: Path) -> None:
    """Two interceptors with one PROMETHEUS_MULTIPROC_DIR: a push to each, and either one's scrape shows both."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    with processes.service_server(role="interceptor", redis=redis_server, METRICS_TOKEN=TOKEN,
                                 PROMETHEUS_MULTIPROC_DIR=str(directory)) as first, \
            processes.service_server(role="interceptor", redis=redis_server, METRICS_TOKEN=TOKEN,
                                    PROMETHEUS_MULTIPROC_DIR=str(directory)) as second:
        for server in (first, second):
            body = push_samples.encode(push_samples.sample_push("conversation-lifecycle-event", conversation()))
            answer = httpx.post(f"{server.http_url}/conversation-lifecycle-event", content=body, timeout=20)
            assert answer.status_code == 204
        for server in (first, second):
            assert pushes(scrape(server), "conversation-lifecycle-event", "accepted") == 2
    assert list(directory.glob("*.db"))  # the processes wrote their values there


# --- long-polling desktops, their requests spread over two processes ------------------------------


@pytest.fixture(scope="module")
def polling_connectors(redis_server) -> Iterator[tuple[Server, Server, Proxy]]:
    with processes.service_server(role="connector", redis=redis_server, METRICS_TOKEN=TOKEN) as first, \
            processes.service_server(role="connector", redis=redis_server, METRICS_TOKEN=TOKEN) as second, \
            round_robin([first.port, second.port]) as balancer:
        yield first, second, balancer


def summed(servers: tuple[Server, ...], key) -> float:
    return sum(scrape(server).get(key, 0.0) for server in servers)


async def test_polling_desktops_and_their_deliveries_are_counted_once_over_both_processes(
    servers, polling_connectors, settings
) -> None:
    """A python-socketio desktop on long-polling only, through round-robin nginx, beside a WebSocket desktop:
    the polling desktop is counted once over both processes (its waiting GET), and one event counts two
    deliveries in all, one per desktop, whichever process answered the poll."""
    first, second, balancer = polling_connectors
    both = (first, second)
    polling = ("aa_desktops_connected", (("transport", "polling"),))
    delivered = ("aa_event_deliveries_total", (("kind", KIND),))
    before_polling, before_delivered = summed(both, polling), summed(both, delivered)
    token = clients.server_token(settings, user="metrics-poller")
    name = conversation()
    poller, websocket = SocketIODesktop("poller"), SocketIODesktop("websocket")
    await poller.connect(balancer, token, transports=("polling",))
    await websocket.connect(first, token)
    try:
        assert list(await poller.join(name)) == [True, name]
        assert list(await websocket.join(name)) == [True, name]
        await clients.wait_until(lambda: summed(both, polling) == before_polling + 1,
                                 what="the polling desktop to be counted")
        body = push_samples.encode(push_samples.sample_push(KIND, name, message_id=f"m-{uuid.uuid4().hex}"))
        answer = httpx.post(f"{servers['interceptor'].http_url}/{KIND}", content=body, timeout=clients.CLIENT_TIMEOUT)
        assert answer.status_code == 204
        for desktop in (poller, websocket):
            await clients.wait_until(lambda: any(event == KIND for event, _ in desktop.events),
                                     what=f"the {desktop.name} desktop's event")
        assert summed(both, delivered) == before_delivered + 2
    finally:
        await poller.disconnect()
        await websocket.disconnect()
    await clients.wait_until(lambda: summed(both, polling) == before_polling, what="the polling desktop counted out")
