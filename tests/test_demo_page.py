"""The demo page at ``GET /``: its HTTP response, and the page itself in a real headless Chromium.

The browser tests drive Debian's chromium through Playwright against real
server processes (``SERVICE_ROLE=all``) on the test Redis: the page registers,
connects to ``/ws/``, joins, and must show events pushed by the test and by
its own development-mode button. ``testing/browser.py`` fails (never skips)
when chromium is missing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from channels.testing import HttpCommunicator
from playwright.async_api import Page, expect

from aa_site.asgi import application
from connector.http import demo
from interceptor import push_samples
from testing import clients, processes
from testing.browser import WAIT_MS, BrowserPage, chromium_page
from testing.clients import Push
from testing.processes import Server

SCREENSHOT = "/tmp/aa-demo-screenshot.png"
RESPONSE_TIMEOUT = 10.0
ACK_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SAMPLE_MESSAGE_ID = re.compile(r"^demo-\d+-[0-9a-f]{8}$")
TAG = re.compile(r"<(script|style)\b([^>]*)>", re.IGNORECASE)


# --- the HTTP response, in process ------------------------------------------------------


async def get_page(path: str = "/", method: str = "GET") -> dict:
    communicator = HttpCommunicator(application, method, path)
    return await communicator.get_response(timeout=RESPONSE_TIMEOUT)


def header(response: dict, name: str) -> str:
    values = [value.decode("latin-1") for key, value in response["headers"] if key.decode("latin-1").lower() == name]
    assert len(values) == 1, (name, values)
    return values[0]


def policy(response: dict) -> dict[str, list[str]]:
    """The Content-Security-Policy header as directive -> sources."""
    directives: dict[str, list[str]] = {}
    for part in header(response, "content-security-policy").split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


async def test_page_is_html_under_a_strict_content_security_policy_with_a_nonce():
    """GET / is UTF-8 HTML whose CSP allows only this origin and the script/style blocks carrying its nonce."""
    response = await get_page()
    assert response["status"] == 200
    assert header(response, "content-type") == "text/html; charset=utf-8"
    directives = policy(response)
    nonce_source = directives["script-src"]
    assert len(nonce_source) == 1 and nonce_source[0].startswith("'nonce-"), directives
    nonce = nonce_source[0].removeprefix("'nonce-").removesuffix("'")
    assert directives["default-src"] == ["'none'"]
    assert directives["style-src"] == nonce_source
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in header(response, "content-security-policy")
    body = response["body"].decode("utf-8")
    tags = TAG.findall(body)
    assert {kind.lower() for kind, _ in tags} == {"script", "style"}
    for kind, attributes in tags:
        assert attributes.strip() == f'nonce="{nonce}"', (kind, attributes)
    assert header(response, "cache-control") == "no-store"


async def test_each_response_carries_a_fresh_nonce():
    """Two GETs get different nonces, each used in its own page (a nonce served twice protects nothing)."""
    nonces = []
    for _ in range(2):
        response = await get_page()
        nonce = policy(response)["script-src"][0].removeprefix("'nonce-").removesuffix("'")
        assert f'nonce="{nonce}"' in response["body"].decode("utf-8")
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


async def test_page_refers_to_nothing_outside_its_own_origin():
    """No http(s) URL, no external script/style/font/image: the page works offline."""
    body = (await get_page())["body"].decode("utf-8")
    assert "http://" not in body.lower() and "https://" not in body.lower()
    assert "url(" not in body and "@import" not in body and "import(" not in body
    references = re.findall(r"""\b(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""", body, re.IGNORECASE)
    assert references == ["data:,"], references  # the empty favicon only


async def test_development_page_has_the_push_sample_button_and_script():
    """In development mode with both roles, the page offers the sample push to /new-message-event."""
    body = (await get_page())["body"].decode("utf-8")
    assert 'id="push-sample"' in body
    assert "/new-message-event" in body


async def test_production_page_has_no_push_sample_markup_or_script(production_settings):
    """Outside development mode neither the button nor the code that pushes is in the page."""
    body = (await get_page())["body"].decode("utf-8")
    assert "push-sample" not in body
    assert "new-message-event" not in body
    assert 'id="register"' in body  # the rest of the page is still there


async def test_connector_only_development_page_has_no_push_sample(settings):
    """Without the interceptor role in this process the push could not land on this origin: no button."""
    settings.SERVICE_ROLE = "connector"
    body = (await get_page())["body"].decode("utf-8")
    assert "push-sample" not in body


async def test_page_answers_only_get():
    """POST / is 405: the page is read-only."""
    response = await get_page(method="POST")
    assert response["status"] == 405


async def test_page_files_are_read_once_per_process():
    """Serving the page twice reads the files from disk only the first time."""
    demo.page_parts.cache_clear()
    await get_page()
    await get_page()
    info = demo.page_parts.cache_info()
    assert (info.misses, info.hits) == (1, 1)


# --- real servers and a real browser ---------------------------------------------------------


@pytest.fixture(scope="module")
def development_server(redis_server: processes.RedisAddress) -> Iterator[Server]:
    """Both roles, development mode: anyone may register, the sample push button is on."""
    with processes.service_server(
        role="all", redis=redis_server, DEVELOPMENT_MODE="true", AUTH_OPTION="Skip", CORS_ALLOWED_ORIGINS="*"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def production_server(redis_server: processes.RedisAddress) -> Iterator[Server]:
    """Both roles, production mode, no identity provider configured."""
    with processes.service_server(role="all", redis=redis_server) as running:
        yield running


def new_message_push(*, conversation_suffix: str, message_suffix: str = "") -> Push:
    """The new-message-event fixture, in a conversation of this test's own."""
    pushes = clients.valid_pushes(conversation_suffix=conversation_suffix, message_suffix=message_suffix)
    return next(push for push in pushes if push.event == "new-message-event")


def assert_only_own_origin(recorded: BrowserPage, server: Server) -> None:
    """Every request the page made went to the server under test (the page needs no other origin)."""
    own = (f"{server.http_url}/", f"ws://127.0.0.1:{server.port}/", "data:")
    assert recorded.requests, "the page made no requests at all"
    assert [url for url in recorded.requests if not url.startswith(own)] == []


async def register_and_connect(page: Page, server: Server, *, user: str) -> None:
    """Open the page, register through the form, connect, and wait until authenticated."""
    await page.goto(f"{server.http_url}/")
    await expect(page.locator("#status")).to_contain_text("Not registered", timeout=WAIT_MS)
    await page.fill("#provider-token", "any-token-Skip-accepts-it")
    await page.fill("#agent-user", user)
    await page.click("#register")
    await expect(page.locator("#jwt-user")).to_have_text(user, timeout=WAIT_MS)
    await page.click("#connect")
    await expect(page.locator("#status")).to_have_text(
        f"Connected as {user}; joined 0 conversations.", timeout=WAIT_MS
    )


async def join(page: Page, name: str, *, expect_joined: list[str]) -> None:
    """Type ``name``, press Join, and wait for the joined list the server's replies make."""
    await page.fill("#conversation", name)
    await page.click("#join")
    await expect(page.locator("#joined .conversation-name")).to_have_text(expect_joined, timeout=WAIT_MS)


async def test_demo_page_registers_connects_joins_and_shows_pushed_events(development_server):
    """The whole tour: register, connect, join, then a pushed fixture and the sample button's push both appear."""
    server = development_server
    fixture = new_message_push(conversation_suffix=uuid.uuid4().hex[:8])
    async with chromium_page() as recorded:
        page = recorded.page
        await register_and_connect(page, server, user="demo-agent")
        await expect(page.locator("#jwt-project")).to_have_text(processes.TEST_PROJECT)
        await expect(page.locator("#jwt-expiry")).to_have_text(
            re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z \(in \d+ min\)$")
        )
        await join(page, fixture.published_as, expect_joined=[fixture.conversation])

        # (a) Pub/Sub's push, made by the test.
        async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
            response = await clients.push(client, server, fixture)
        assert response.status_code == 204, response.text
        await expect(page.locator("#event-count")).to_have_text("1", timeout=WAIT_MS)
        card = page.locator("li.event").first
        await expect(card.locator(".event-name")).to_have_text("new-message-event")
        await expect(card.locator(".event-conversation")).to_have_text(fixture.conversation)
        await expect(card.locator('[data-field="message_id"]')).to_have_text(fixture.message_id)
        await expect(card.locator('[data-field="publish_time"]')).to_have_text(fixture.publish_time)
        await expect(card.locator('[data-field="ack_time"]')).to_have_text(ACK_TIME)
        pretty = json.dumps(json.loads(fixture.data), indent=2, ensure_ascii=False)
        await expect(card.locator(".event-data")).to_have_text(pretty)

        # (b) the page's own development-mode button.
        await page.click("#push-sample")
        await expect(page.locator("#event-count")).to_have_text("2", timeout=WAIT_MS)
        newest = page.locator("li.event").first
        await expect(newest.locator(".event-name")).to_have_text("new-message-event")
        await expect(newest.locator(".event-conversation")).to_have_text(fixture.conversation)
        await expect(newest.locator('[data-field="message_id"]')).to_have_text(SAMPLE_MESSAGE_ID)
        await expect(newest.locator(".event-data")).to_contain_text("Sample message from the demo page")
        sample_id = await newest.locator('[data-field="message_id"]').text_content()
        await expect(page.locator("#push-result")).to_contain_text(f"Pushed messageId {sample_id} (HTTP 204)")
        # Newest first: the fixture's card is now second.
        await expect(page.locator("li.event").nth(1).locator('[data-field="message_id"]')).to_have_text(
            fixture.message_id
        )
        await expect(page.locator("#error")).to_be_hidden()

        await page.screenshot(path=SCREENSHOT, full_page=True)
        assert recorded.problems() == []
        assert_only_own_origin(recorded, server)


async def test_demo_page_pushes_a_fresh_message_id_each_time(development_server):
    """Two clicks make two events with different messageIds (a redelivery filter would drop a repeat)."""
    async with chromium_page() as recorded:
        page = recorded.page
        await register_and_connect(page, development_server, user="clicker")
        conversation = f"projects/{processes.TEST_PROJECT}/conversations/DEMO-{uuid.uuid4().hex[:8]}"
        await join(page, conversation, expect_joined=[conversation])
        for count in ("1", "2"):
            await page.click("#push-sample")
            await expect(page.locator("#event-count")).to_have_text(count, timeout=WAIT_MS)
        ids = await page.locator('li.event [data-field="message_id"]').all_text_contents()
        assert len(set(ids)) == 2 and all(SAMPLE_MESSAGE_ID.match(value) for value in ids), ids
        assert recorded.problems() == []


async def test_demo_page_stops_showing_a_conversation_after_leaving_it(development_server):
    """After Leave, a push to that conversation is not shown, while one to a still-joined conversation is."""
    left = new_message_push(conversation_suffix=uuid.uuid4().hex[:8], message_suffix="-left")
    kept = new_message_push(conversation_suffix=uuid.uuid4().hex[:8], message_suffix="-kept")
    async with chromium_page() as recorded:
        page = recorded.page
        await register_and_connect(page, development_server, user="leaver")
        await join(page, left.published_as, expect_joined=[left.conversation])
        await join(page, kept.conversation, expect_joined=[left.conversation, kept.conversation])
        await page.fill("#conversation", left.published_as)  # either form leaves
        await page.click("#leave")
        await expect(page.locator("#joined .conversation-name")).to_have_text([kept.conversation], timeout=WAIT_MS)

        # The left conversation's push goes first, so it would be shown by the time the kept one is.
        await clients.push_all(development_server, [left, kept])
        await expect(page.locator("#event-count")).to_have_text("1", timeout=WAIT_MS)
        await expect(page.locator('li.event [data-field="message_id"]')).to_have_text([kept.message_id])
        assert recorded.problems() == []


async def test_demo_page_shows_server_errors_for_a_bad_conversation_name(development_server):
    """The server's invalid_conversation error appears in the error line; nothing is joined."""
    async with chromium_page() as recorded:
        page = recorded.page
        await register_and_connect(page, development_server, user="typo")
        await page.fill("#conversation", "conversations/missing-project")
        await page.click("#join")
        await expect(page.locator("#error")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#error-text")).to_contain_text("invalid_conversation")
        await expect(page.locator("#error-text")).to_contain_text("projects/P/conversations/C")
        await expect(page.locator("#joined .conversation-name")).to_have_count(0)
        assert recorded.problems() == []


async def test_demo_page_inserts_names_and_event_data_as_text_never_markup(development_server):
    """Markup in the user name, the conversation name, the messageId and the notification stays literal text."""
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/<b>bold<i>{uuid.uuid4().hex[:8]}"
    content = '<img src=x onerror="document.title=1"><script>document.title=2</script>'
    notification = json.dumps({"conversation": conversation, "type": "NEW_MESSAGE",
                               "newMessagePayload": {"content": content}})
    envelope = push_samples.push_envelope(json.loads(notification), message_id="<em>42</em>",
                                          publish_time="2026-11-20T14:03:07.412Z")
    async with chromium_page() as recorded:
        page = recorded.page
        await register_and_connect(page, development_server, user="<u>agent</u>")
        await join(page, conversation, expect_joined=[conversation])
        async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
            response = await client.post(f"{development_server.http_url}/new-message-event", json=envelope)
        assert response.status_code == 204, response.text
        await expect(page.locator("#event-count")).to_have_text("1", timeout=WAIT_MS)

        card = page.locator("li.event").first
        await expect(card.locator('[data-field="message_id"]')).to_have_text("<em>42</em>")
        await expect(card.locator(".event-data")).to_contain_text("<img src=x onerror=")
        await expect(card.locator(".event-data")).to_contain_text("<script>document.title=2</script>")
        await expect(page.locator("#jwt-user")).to_have_text("<u>agent</u>")
        for markup in ("#events img", "#events script", "#events em", "#events b", "#joined b", "#registration u",
                       "#status u"):
            await expect(page.locator(markup)).to_have_count(0)
        assert await page.title() == "Agent Assist backend: demo"
        assert recorded.problems() == []


async def test_production_server_serves_the_page_without_push_markup(production_server):
    """Over real HTTP from a production-mode process: HTML, the CSP header, and no push button or push code."""
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        response = await client.get(f"{production_server.http_url}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'nonce-" in response.headers["content-security-policy"]
    assert "push-sample" not in response.text and "new-message-event" not in response.text


async def test_production_page_in_chromium_has_no_push_button_and_shows_registration_errors(production_server):
    """In production mode the button is absent; with no AUTH_OPTION, Register shows the server's 401 message."""
    async with chromium_page() as recorded:
        page = recorded.page
        await page.goto(f"{production_server.http_url}/")
        await expect(page.locator("#status")).to_contain_text("Not registered", timeout=WAIT_MS)
        await expect(page.locator("#push-sample")).to_have_count(0)
        await expect(page.locator("#connect")).to_be_disabled()
        await page.fill("#provider-token", "some-provider-token")
        await page.click("#register")
        await expect(page.locator("#error-text")).to_have_text(
            "Registration refused (HTTP 401): Registration is disabled: AUTH_OPTION is not set.", timeout=WAIT_MS
        )
        await expect(page.locator("#registration")).to_be_hidden()
        # Chromium's own console line for any 4xx fetch; nothing else may be logged.
        assert recorded.problems() == [
            "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
        ]
        assert_only_own_origin(recorded, production_server)


@pytest.fixture(scope="module")
def server_for_other_origins(redis_server: processes.RedisAddress) -> Iterator[Server]:
    """Development mode, but WebSockets allowed only from a desktop origin that is not this page's."""
    with processes.service_server(
        role="all", redis=redis_server, DEVELOPMENT_MODE="true", AUTH_OPTION="Skip",
        CORS_ALLOWED_ORIGINS="https://desktop.invalid",
    ) as running:
        yield running


async def test_demo_page_explains_a_refused_websocket_handshake(server_for_other_origins):
    """When the page's own origin is not in CORS_ALLOWED_ORIGINS, Connect fails with a message naming the setting."""
    server = server_for_other_origins
    async with chromium_page() as recorded:
        page = recorded.page
        await page.goto(f"{server.http_url}/")
        await page.fill("#provider-token", "any-token")
        await page.click("#register")
        await expect(page.locator("#registration")).to_be_visible(timeout=WAIT_MS)
        await page.click("#connect")
        await expect(page.locator("#error-text")).to_contain_text(
            f"This page's origin ({server.http_url}) must be in CORS_ALLOWED_ORIGINS", timeout=WAIT_MS
        )
        await expect(page.locator("#status")).to_have_text("Registered as (no user name). Not connected.")
        await expect(page.locator("#connect")).to_be_enabled()
        # Chromium's own console line for the refused handshake (the server answers 403); nothing else.
        assert len(recorded.problems()) == 1 and "403" in recorded.problems()[0], recorded.problems()
