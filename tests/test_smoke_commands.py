"""The smoke-test commands against real server processes: ``issue_token`` and ``send_test_event`` together.

A desktop registers nothing: it connects with a token from ``manage.py issue_token``,
joins a conversation, and receives the event ``manage.py send_test_event`` pushes to
the interceptor, as an operator would check a fresh deployment.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from interceptor import push_samples
from testing import fake_google_certs, processes
from testing.clients import SocketIODesktop, wait_until
from testing.commands import assert_clean_failure, manage
from testing.fake_google_certs import SERVICE_ACCOUNT, FakeGoogleCerts, pubsub_claims
from testing.signed_pushes import GOOGLE_KEY

TOKEN_ENVIRONMENT = {"GCP_PROJECT_ID": processes.TEST_PROJECT, "JWT_SECRET_KEY": processes.TEST_JWT_SECRET}


@pytest.fixture(scope="module")
def interceptor(redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    with processes.service_server(role="interceptor", redis=redis_server) as running:
        yield running


@pytest.fixture(scope="module")
def connector(redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    with processes.service_server(role="connector", redis=redis_server) as running:
        yield running


async def run_manage(*arguments: str, env: dict[str, str] | None = None):
    """``testing.commands.manage`` off the event loop, so the desktop keeps receiving meanwhile."""
    return await asyncio.to_thread(manage, *arguments, env=env)


@pytest.mark.parametrize("kind", push_samples.EVENT_KINDS)
async def test_issued_token_connects_and_the_test_event_reaches_the_desktop(
    interceptor: processes.Server, connector: processes.Server, kind: str
) -> None:
    """Each of the four kinds: 204 printed, and the desktop gets exactly that event for that conversation."""
    issued = await run_manage("issue_token", "--user", "smoke", "--minutes", "5", env=TOKEN_ENVIRONMENT)
    assert issued.returncode == 0, issued.stderr
    conversation = f"projects/{processes.TEST_PROJECT}/locations/global/conversations/SMOKE-{uuid.uuid4().hex[:8]}"
    desktop = SocketIODesktop()
    await desktop.connect(connector, issued.stdout.strip())
    try:
        ack = await desktop.join(conversation)
        assert ack[0] is True, ack
        sent = await run_manage("send_test_event", interceptor.http_url, "--kind", kind,
                                "--conversation", conversation, "--message-id", f"smoke-{kind}")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith(f"HTTP 204 from POST {interceptor.http_url}/{kind}")
        await wait_until(lambda: len(desktop.events) >= 1, what=f"the {kind} event")
        ((name, payload),) = desktop.events
        assert name == kind
        assert payload["message_id"] == f"smoke-{kind}"
        assert payload["conversation_name"] == ack[1]
        assert json.loads(payload["data"])["conversation"] == conversation
        if kind == push_samples.NEW_RECOGNITION_RESULT_EVENT:
            assert payload["participant_role"] == "END_USER"
    finally:
        await desktop.disconnect()


def test_refusals_exit_non_zero_with_the_answer_and_no_traceback(interceptor: processes.Server) -> None:
    """A bad conversation name is refused locally; an unreachable interceptor names the URL."""
    bad = manage("send_test_event", interceptor.http_url, "--conversation", "conversations/C")
    assert_clean_failure(bad, mentions="is not a conversation name")
    nowhere = f"http://127.0.0.1:{processes.free_port()}"
    unreachable = manage("send_test_event", nowhere, "--conversation", "projects/p/conversations/c")
    assert_clean_failure(unreachable, mentions=f"POST {nowhere}/new-message-event failed")


# --- with authenticated push ------------------------------------------------------------------


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogleCerts]:
    with fake_google_certs.serve(GOOGLE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def authenticated_interceptor(redis_server, google: FakeGoogleCerts) -> Iterator[processes.Server]:
    with processes.service_server(role="interceptor", redis=redis_server, PUSH_AUTH_SERVICE_ACCOUNT=SERVICE_ACCOUNT,
                                 PUSH_AUTH_CERTS_URL=google.url) as running:
        yield running


def test_oidc_token_from_a_file_or_the_command_line_is_sent(authenticated_interceptor: processes.Server,
                                                            tmp_path: Path) -> None:
    """Without a token the interceptor's 401 is printed and the exit is non-zero; with one it is 204."""
    server = authenticated_interceptor
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/AUTH-{uuid.uuid4().hex[:8]}"
    token = GOOGLE_KEY.sign(pubsub_claims(audience=f"{server.http_url}/new-message-event"))
    refused = manage("send_test_event", server.http_url, "--conversation", conversation)
    assert_clean_failure(refused, mentions="HTTP 401")
    assert refused.stdout.startswith("HTTP 401") and '"message"' in refused.stdout
    path = tmp_path / "token"
    path.write_text(token + "\n")
    from_file = manage("send_test_event", server.http_url, "--conversation", conversation, "--token-file", str(path))
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    assert token not in from_file.stdout + from_file.stderr
    given = manage("send_test_event", server.http_url, "--conversation", conversation, "--token", token)
    assert given.returncode == 0, given.stdout + given.stderr
    assert token not in given.stdout + given.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert_clean_failure(manage("send_test_event", server.http_url, "--conversation", conversation,
                                "--token-file", str(empty)), mentions="is empty")
