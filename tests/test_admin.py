"""The operators' admin with Django's test client, in process: staff login, the live view, purge, disconnect's input.

The live view reads the test's real Redis (its own key prefix); events are
published through ``events.publish`` as the interceptor does. The admin's
users live in pytest-django's test database (SQLite); ``tests/test_admin_processes.py``
runs the same pages in real processes on SQLite and PostgreSQL, and in Chromium.
"""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core import signals
from django.db import close_old_connections
from django.test import Client

from connector.desktops import instances
from connector.http import integration_keys
from events import history, redis_client
from events.publish import publish

pytestmark = pytest.mark.django_db
PASSWORD = "operator-password-0123456789"
CONTENT = "Very private words of a customer."


@pytest.fixture(autouse=True)
def restore_request_signals():
    """Django's test client connects ``close_old_connections`` to ``request_started`` and ``request_finished``
    after each request, whether it was connected or not; ``aa_site.apps`` keeps it off (other tests check
    that), so put it back."""
    yield
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)


@pytest.fixture
def operator(staff) -> Client:
    client = Client()
    assert client.login(username="operator", password=PASSWORD)
    return client


def conversation() -> str:
    return f"projects/test-project/conversations/admin-{uuid.uuid4().hex[:10]}"


def publish_event(name: str, message_id: str) -> None:
    payload = {"conversation_name": name, "data": json.dumps({"text": CONTENT}), "data_type": "new-message-event",
               "ack_time": "2026-01-01T00:00:00Z", "publish_time": "2026-01-01T00:00:00.123Z", "message_id": message_id}
    async_to_sync(publish)(conversation_name=name, event="new-message-event", payload=payload, message_id=message_id)


def test_pages_ask_for_a_staff_login() -> None:
    for path in ("/admin/", "/admin/live/", "/admin/live/conversation/?name=x"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path


def test_a_user_who_is_not_staff_cannot_log_in(django_user_model) -> None:
    django_user_model.objects.create_user("agent", password=PASSWORD)
    client = Client()
    response = client.post("/admin/login/?next=/admin/live/", {"username": "agent", "password": PASSWORD})
    assert response.status_code == 200  # the form again, with its error
    assert client.get("/admin/live/").status_code == 302


def test_login_form_refuses_a_post_without_its_csrf_token(staff) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/admin/login/", {"username": "operator", "password": PASSWORD})
    assert response.status_code == 403


@pytest.mark.usefixtures("redis_kind")  # on a standalone Redis and on a cluster
def test_live_view_shows_counters_and_stored_events_but_no_content(operator: Client) -> None:
    name = conversation()
    publish_event(name, "admin-m-1")
    async_to_sync(integration_keys.put)("+15551230000", name)
    response = operator.get("/admin/live/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Counters" in page and "integration keys" in page
    state = response.context["state"]
    assert state.counters["events_accepted"] >= 1
    assert state.counters["integration_keys"] >= 1
    assert state.counters["conversations_stored"] not in (0, "0")
    detail = operator.get("/admin/live/conversation/", {"name": name}).content.decode()
    assert "admin-m-1" in detail and "new-message-event" in detail and "2026-01-01T00:00:00.123Z" in detail
    assert CONTENT not in detail and CONTENT not in page
    assert "+15551230000" not in page


@pytest.mark.usefixtures("redis_kind")  # on a standalone Redis and on a cluster
def test_live_view_lists_the_desktops_each_instance_reports(operator: Client, settings) -> None:
    """A record as a connector process writes it (``connector.desktops.instances``), grouped by conversation."""
    name = conversation()
    record = {"instance": "abc123", "host": "host-1", "pid": 7, "role": "connector", "started": 0, "updated": 0,
              "desktops_by_transport": {"socketio": 1, "websocket": 1}, "truncated": False,
              "desktops": [{"connection": "c0ffee01", "user": "ana", "transport": "socketio", "since": 1,
                            "conversations": [name]},
                           {"connection": "c0ffee02", "user": "bob", "transport": "websocket", "since": 1,
                            "conversations": [name]}]}

    async def write() -> None:
        await redis_client.get_redis().set(instances.record_key("abc123"), json.dumps(record), ex=30)

    async_to_sync(write)()
    response = operator.get("/admin/live/")
    page = response.content.decode()
    assert name in page and "c0ffee01" in page and "c0ffee02" in page and "host-1" in page
    (shown,) = [view for view in response.context["state"].conversations if view.name == name]
    assert shown.by_transport == {"socketio": 1, "websocket": 1}
    assert response.context["state"].counters["desktops_by_transport"] == {"socketio": 1, "websocket": 1}


@pytest.mark.usefixtures("redis_kind")  # on a standalone Redis and on a cluster
def test_purge_deletes_the_stored_events_and_later_replays_say_so(operator: Client) -> None:
    name = conversation()
    publish_event(name, "admin-p-1")
    publish_event(name, "admin-p-2")
    assert operator.get("/admin/live/purge/", {"name": name}).status_code == 405
    response = operator.post("/admin/live/purge/", {"name": name}, follow=True)
    assert response.status_code == 200
    assert "Purged 2 stored event(s)" in response.content.decode()
    assert async_to_sync(history.recent_events)(name, 10) == []

    async def replay_from_start() -> history.Replay:
        return await history.get_history().read({name: 0}, epoch=None)

    replay = async_to_sync(replay_from_start)()
    assert replay.events == [] and replay.complete is False


def test_purge_refuses_a_name_that_is_not_a_conversation(operator: Client) -> None:
    response = operator.post("/admin/live/purge/", {"name": "projects/x/other/y"}, follow=True)
    assert "onversation name must look like projects/P/conversations/C" in response.content.decode()
    assert response.redirect_chain[-1][0] == "/admin/live/"


@pytest.mark.parametrize("fields", [{}, {"instance": "abc", "connection": ""}, {"instance": "a b", "connection": "c"},
                                    {"instance": "x" * 65, "connection": "c"}])
def test_disconnect_refuses_ids_that_are_not_ids(operator: Client, fields: dict) -> None:
    response = operator.post("/admin/live/disconnect/", fields, follow=True)
    assert "Name an instance and a connection" in response.content.decode()


@pytest.mark.usefixtures("redis_kind")  # on a standalone Redis and on a cluster
def test_disconnect_publishes_the_control_message(operator: Client) -> None:
    received = []

    async def listen_and_ask() -> None:
        pubsub = await redis_client.subscriber_pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(instances.control_channel())
        await instances.request_disconnect("abc123", "c0ffee01")
        message = None
        for _ in range(50):  # the subscribe confirmation comes first, and reads as None
            message = message or await pubsub.get_message(timeout=0.2)
        received.append(json.loads(message["data"]))
        await pubsub.aclose()

    async_to_sync(listen_and_ask)()
    assert received == [{"action": "disconnect", "instance": "abc123", "connection": "c0ffee01"}]
    response = operator.post("/admin/live/disconnect/", {"instance": "abc123", "connection": "c0ffee01"}, follow=True)
    assert "Asked instance abc123 to disconnect desktop c0ffee01" in response.content.decode()


def test_admin_static_files_are_served(operator: Client) -> None:
    css = Client().get("/admin/static/admin/css/base.css")
    assert css.status_code == 200 and css["Content-Type"] == "text/css"
    assert Client().get("/admin/static/admin/css/base.css", HTTP_IF_NONE_MATCH=css["ETag"]).status_code == 304
    assert Client().get("/admin/static/../settings.py").status_code == 404
    assert Client().get("/admin/static/admin/css/nothing.css").status_code == 404


def test_other_paths_carry_no_session_or_cookies() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert not response.cookies and "Cookie" not in response.get("Vary", "")
