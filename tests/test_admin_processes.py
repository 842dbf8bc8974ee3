"""The operators' admin in real processes, on SQLite and on a real PostgreSQL, over HTTP and in headless Chromium.

Per database: ``manage.py migrate`` and ``createsuperuser --noinput`` as an
operator runs them, then two connector processes and an interceptor on one
Redis (a key prefix of their own). Desktops (Socket.IO and plain ``/ws/``)
connect to connector B; the operator logs in on connector A and sees them,
with the pushed event's ids but never its content, disconnects the ``/ws/``
desktop on B (close code 4410) and purges the conversation's events; a
long-polling desktop whose requests land on both is shown and disconnected too.
Chromium logs in through the real login form and takes the live view's screenshot.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from interceptor import push_samples
from testing import clients, processes
from testing.browser import chromium_page
from testing.clients import PlainDesktop, SocketIODesktop
from testing.nginx_proxy import round_robin
from testing.processes import Server

PASSWORD = "operator-password-Zx81LmQp"
SCREENSHOT = Path("/tmp/aa-admin-live-view.png")
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclass
class Cluster:
    admin: Server  # connector A
    desktops: Server  # connector B
    interceptor: Server
    username: str


def manage(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *arguments], cwd=processes.REPOSITORY, env=environment,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cluster(request, redis_server, tmp_path_factory) -> Iterator[Cluster]:
    if request.param == "postgresql":
        database = {"DATABASE_URL": request.getfixturevalue("postgres_url")}
    else:
        database = {"SQLITE_PATH": str(tmp_path_factory.mktemp("admin-db") / "admin.sqlite3")}
    settings = {**database, "EVENT_KEY_PREFIX": f"admin-{uuid.uuid4().hex[:8]}:", "INSTANCE_REPORT_SECONDS": "0.3",
                "ADMIN_SECURE_COOKIES": "false"}
    username = f"operator-{uuid.uuid4().hex[:6]}"
    environment = processes.server_environment(role="connector", redis=redis_server, **settings)
    migrated = manage(environment, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    created = manage({**environment, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, "createsuperuser", "--noinput",
                     "--username", username, "--email", "operator@example.com")
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    with contextlib.ExitStack() as stack:
        yield Cluster(
            admin=stack.enter_context(processes.service_server(role="connector", redis=redis_server, **settings)),
            desktops=stack.enter_context(processes.service_server(role="connector", redis=redis_server, **settings)),
            interceptor=stack.enter_context(processes.service_server(role="interceptor", redis=redis_server,
                                                                    **settings)),
            username=username,
        )


def logged_in(cluster: Cluster) -> httpx.Client:
    client = httpx.Client(base_url=cluster.admin.http_url, timeout=clients.CLIENT_TIMEOUT)
    form = client.get("/admin/login/?next=/admin/live/")
    assert form.status_code == 200
    token = CSRF_FIELD.search(form.text).group(1)
    answer = client.post("/admin/login/?next=/admin/live/",
                         data={"username": cluster.username, "password": PASSWORD, "csrfmiddlewaretoken": token,
                               "next": "/admin/live/"})
    assert answer.status_code == 302 and answer.headers["location"] == "/admin/live/", answer.text[:500]
    return client


def csrf_token(client: httpx.Client, path: str) -> str:
    return CSRF_FIELD.search(client.get(path).text).group(1)


def conversation() -> str:
    return f"projects/{processes.TEST_PROJECT}/conversations/live-{uuid.uuid4().hex[:10]}"


async def wait_for_page(client: httpx.Client, path: str, *texts: str) -> str:
    page = ""

    def shows_all() -> bool:
        nonlocal page
        page = client.get(path).text
        return all(text in page for text in texts)

    await clients.wait_until(shows_all, what=f"{path} to show {texts}")
    return page


def test_the_interceptor_serves_no_admin(cluster: Cluster) -> None:
    assert httpx.get(f"{cluster.interceptor.http_url}/admin/login/").status_code == 404


def test_a_wrong_password_is_refused(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.admin.http_url, timeout=clients.CLIENT_TIMEOUT) as client:
        token = CSRF_FIELD.search(client.get("/admin/login/").text).group(1)
        answer = client.post("/admin/login/", data={"username": cluster.username, "password": "wrong",
                                                    "csrfmiddlewaretoken": token})
        assert answer.status_code == 200 and "errornote" in answer.text
        assert client.get("/admin/live/").status_code == 302


async def test_live_view_disconnect_and_purge_across_instances(cluster: Cluster, settings) -> None:
    name = conversation()
    token = clients.server_token(settings, user="agent-ana")
    socketio_desktop = SocketIODesktop("ana")
    await socketio_desktop.connect(cluster.desktops, token)
    plain = await PlainDesktop.connect(cluster.desktops, token)
    client = logged_in(cluster)
    try:
        await socketio_desktop.join(name)
        assert (await plain.join(name))["type"] == "joined"
        message_id = f"live-{uuid.uuid4().hex[:8]}"
        envelope = push_samples.sample_push("new-message-event", name, message_id=message_id)
        pushed = httpx.post(f"{cluster.interceptor.http_url}/new-message-event",
                            content=push_samples.encode(envelope), timeout=clients.CLIENT_TIMEOUT)
        assert pushed.status_code == 204
        assert (await plain.next_frame())["type"] == "event"
        page = await wait_for_page(client, "/admin/live/", name, "socketio: 1", "websocket: 1", message_id)
        # The conversation lists a desktop once its instance's record, rewritten every INSTANCE_REPORT_SECONDS,
        # carries the join: the counts by transport can show before both rows do.
        await clients.wait_until(
            lambda: len(re.findall(r'data-connection="[0-9a-f]+"', client.get("/admin/live/").text)) == 2,
            what="both desktops under the conversation")
        page = client.get("/admin/live/").text
        assert "Test message." not in page  # the notification's content never reaches the admin
        assert "agent-ana" in page
        connections = re.findall(r'data-connection="([0-9a-f]+)"', page)
        assert len(connections) == 2
        instance = re.search(r'name="instance" value="([0-9a-f]+)"', page).group(1)
        detail = client.get("/admin/live/conversation/", params={"name": name}).text
        plain_connection = re.search(r'<td>websocket</td>\s*<td>agent-ana</td><td><code>([0-9a-f]+)</code>', detail)
        assert plain_connection is not None, detail
        answer = client.post("/admin/live/disconnect/", data={
            "instance": instance, "connection": plain_connection.group(1), "next_conversation": name,
            "csrfmiddlewaretoken": csrf_token(client, "/admin/live/")})
        assert answer.status_code == 302
        assert await plain.closed_with() == 4410
        answer = client.post("/admin/live/purge/", data={"name": name,
                                                         "csrfmiddlewaretoken": csrf_token(client, "/admin/live/")})
        assert answer.status_code == 302
        after = client.get(answer.headers["location"]).text
        assert "Purged 1 stored event(s)" in after and "No stored event." in after
        assert socketio_desktop.client.connected  # the other desktop stays
    finally:
        await socketio_desktop.disconnect()
        await plain.close()
        client.close()
    log = cluster.desktops.log()
    assert "Disconnecting desktop" in log and "Traceback" not in log and "Traceback" not in cluster.admin.log()


async def test_live_view_in_chromium(cluster: Cluster, settings) -> None:
    name = conversation()
    token = clients.server_token(settings, user="agent-bea")
    desktop = SocketIODesktop("bea")
    plain = await PlainDesktop.connect(cluster.desktops, clients.server_token(settings, user="agent-cid"))
    await desktop.connect(cluster.desktops, token)
    try:
        await desktop.join(name)
        await plain.join(name)
        for kind in ("conversation-lifecycle-event", "new-message-event", "human-agent-assistant-event"):
            pushed = httpx.post(f"{cluster.interceptor.http_url}/{kind}",
                                content=push_samples.encode(push_samples.sample_push(kind, name)), timeout=20)
            assert pushed.status_code == 204
        async with chromium_page() as browser:
            page = browser.page
            await page.goto(f"{cluster.admin.http_url}/admin/live/")
            await expect(page).to_have_url(re.compile(r"/admin/login/"))
            await page.fill("#id_username", cluster.username)
            await page.fill("#id_password", PASSWORD)
            await page.click("input[type=submit]")
            await expect(page).to_have_url(re.compile(r"/admin/live/$"))
            for _ in range(100):
                if name in await page.content():
                    break
                await page.wait_for_timeout(200)
                await page.reload()
            await expect(page.locator("h3", has_text=name)).to_be_visible()
            await expect(page.locator("#counters")).to_contain_text("desktops connected")
            styles = await page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
            assert styles not in ("", "rgba(0, 0, 0, 0)")  # the admin's CSS arrived
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert browser.problems() == []
    finally:
        await desktop.disconnect()
        await plain.close()
    assert SCREENSHOT.stat().st_size > 10_000


async def test_an_instance_leaves_the_view_with_its_last_desktop(cluster: Cluster, settings) -> None:
    desktop = await PlainDesktop.connect(cluster.desktops, clients.server_token(settings, user="agent-dee"))
    client = logged_in(cluster)
    try:
        await wait_for_page(client, "/admin/live/", "websocket: 1")
        await desktop.close()
        page = await wait_for_page(client, "/admin/live/", "No connector instance has desktops.")
        assert "agent-dee" not in page
    finally:
        await desktop.close()
        client.close()


async def test_a_polling_desktop_on_both_instances_is_shown_and_disconnected(cluster: Cluster, settings) -> None:
    """The npm socket.io-client on long-polling only, its requests spread over both connectors by round-robin
    nginx: the live view shows it (transport polling, its user, the instance that took its latest poll), and
    the operator's disconnect closes its session wherever its next poll lands; it reconnects and recovers."""
    name = conversation()
    token = clients.server_token(settings, user="agent-eve")
    client = logged_in(cluster)
    try:
        with round_robin([cluster.admin.port, cluster.desktops.port]) as balancer:
            async with clients.node_desktop(balancer, token=token, join=(name,), reconnect=True, transports="polling",
                                            timeout=120) as node:
                await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
                page = await wait_for_page(client, "/admin/live/", name, "polling: 1", "agent-eve")
                row = re.search(r'<td><code>([0-9a-f]{16})</code></td><td>[^<]*</td><td>polling</td>\s*'
                                r'<td>agent-eve</td><td><code>([0-9a-f]+)</code>', page)
                assert row is not None, page
                # Its instance is listed (no WebSocket desktop there: its record stays for its polling sessions).
                instance = re.search(rf'<tr><td><code>{row.group(1)}</code></td><td>([^<]+)</td><td>\d+</td>'
                                     rf'<td>connector</td>\s*<td>([^<]*)</td>', page)
                assert instance is not None and "polling: 1" in instance.group(2), page
                detail = client.get("/admin/live/conversation/", params={"name": name}).text
                assert f"<code>{row.group(2)}</code>" in detail
                answer = client.post("/admin/live/disconnect/", data={
                    "instance": row.group(1), "connection": row.group(2), "transport": "polling",
                    "csrfmiddlewaretoken": csrf_token(client, "/admin/live/")})
                assert answer.status_code == 302
                assert "its next poll closes it" in client.get(answer.headers["location"]).text
                await node.wait_for(lambda n: len(n.of_kind("connected")) == 2, what="the reconnection")
                assert [line["reason"] for line in node.of_kind("disconnect")] == ["transport close"]
                assert [line["recovered"] for line in node.of_kind("connected")] == [False, True]
                # A second click finds the old session gone.
                answer = client.post("/admin/live/disconnect/", data={
                    "instance": row.group(1), "connection": row.group(2), "transport": "polling",
                    "csrfmiddlewaretoken": csrf_token(client, "/admin/live/")})
                assert "is no longer connected" in client.get(answer.headers["location"]).text
    finally:
        client.close()
    logs = cluster.admin.log() + cluster.desktops.log()
    assert "Closing a long-polling session at an operator's request" in logs and "Traceback" not in logs
