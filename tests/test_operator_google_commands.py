"""``manage.py configure_conversation_profile`` and ``create_push_subscriptions`` through the real client
libraries (REST transport), against ``testing/fake_operator_apis.py`` on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployment.plan import PUBSUB_NAMES
from interceptor.push_samples import EVENT_KINDS
from testing import fake_operator_apis, fake_secret_manager
from testing.commands import assert_clean_failure, manage
from testing.fake_operator_apis import FakeOperatorApis

PROJECT = "acme-cx"
PROFILE = f"projects/{PROJECT}/locations/global/conversationProfiles/CP-1"
INTERCEPTOR = "https://cloud-pubsub-interceptor-abc123-ew.a.run.app"
INVOKER = f"cloud-run-pubsub-invoker@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOperatorApis]:
    with fake_operator_apis.serve() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeOperatorApis) -> FakeOperatorApis:
    fake_server.profiles.clear()
    fake_server.topics.clear()
    fake_server.subscriptions.clear()
    fake_server.received.clear()
    fake_server.forced_status = None
    fake_server.profiles[PROFILE] = {
        "name": PROFILE, "displayName": "Agent Assist", "languageCode": "en-US",
        "humanAgentAssistantConfig": {"notificationConfig": {"topic": "projects/acme-cx/topics/old", "messageFormat": "PROTO"},
                                      "humanAgentSuggestionConfig": {"featureConfigs": [{"suggestionFeature": {"type": "ARTICLE_SUGGESTION"}}]}},
    }
    return fake_server


@pytest.fixture
def env(fake: FakeOperatorApis, tmp_path: Path) -> dict[str, str]:
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(fake_secret_manager.write_credentials(tmp_path)),
            "DIALOGFLOW_API_ROOT": fake.url, "PUBSUB_API_ENDPOINT": fake.url, "GCP_PROJECT_ID": PROJECT}


def topic(kind: str) -> str:
    return f"projects/{PROJECT}/topics/{PUBSUB_NAMES[kind][0]}"


def test_profile_gets_the_four_topics_in_json_and_keeps_the_rest(fake, env) -> None:
    result = manage("configure_conversation_profile", "--conversation-profile=CP-1", f"--project={PROJECT}",
                    *(f"--{kind}-topic={topic(kind)}" for kind in EVENT_KINDS), "--message-format=JSON", env=env)
    assert result.returncode == 0, result.stderr
    profile = fake.profiles[PROFILE]
    assert profile["humanAgentAssistantConfig"]["notificationConfig"] == {
        "topic": topic("human-agent-assistant-event"), "messageFormat": "JSON"}
    assert profile["newMessageEventNotificationConfig"] == {"topic": topic("new-message-event"), "messageFormat": "JSON"}
    assert profile["notificationConfig"] == {"topic": topic("conversation-lifecycle-event"), "messageFormat": "JSON"}
    assert profile["newRecognitionResultNotificationConfig"] == {
        "topic": topic("new-recognition-result-notification-event"), "messageFormat": "JSON"}
    # What the mask did not name stays.
    assert profile["humanAgentAssistantConfig"]["humanAgentSuggestionConfig"]["featureConfigs"]
    assert profile["languageCode"] == "en-US"
    assert "old PROTO -> " in result.stdout
    again = manage("configure_conversation_profile", "--conversation-profile", PROFILE, env=env)
    assert again.returncode == 0 and "already publishes" in again.stdout, again.stderr


@pytest.mark.parametrize("arguments, reason", [
    (("--conversation-profile=CP-1", "--message-format=PROTO"), "reads JSON notifications only"),
    (("--conversation-profile=bad/name",), "is not a profile id"),
    (("--conversation-profile=CP-1", "--new-message-event-topic=aa-topic"), "is not projects/PROJECT/topics/TOPIC"),
    (("--conversation-profile=CP-404",), "Dialogflow refused: 404 NotFound: Conversation profile"),
])
def test_profile_errors_are_clean(fake, env, arguments, reason) -> None:
    assert_clean_failure(manage("configure_conversation_profile", *arguments, env=env), mentions=reason)


def test_profile_refused_credentials_are_clean(fake, env) -> None:
    fake.forced_status = 403
    assert_clean_failure(manage("configure_conversation_profile", "--conversation-profile=CP-1", env=env),
                         mentions="Dialogflow refused: 403")


def test_topics_and_oidc_push_subscriptions_are_created_once(fake, env) -> None:
    result = manage("create_push_subscriptions", f"--interceptor-url={INTERCEPTOR}/", env=env)
    assert result.returncode == 0, result.stderr
    assert fake.topics == {topic(kind) for kind in EVENT_KINDS}
    for kind in EVENT_KINDS:
        subscription = fake.subscriptions[f"projects/{PROJECT}/subscriptions/{PUBSUB_NAMES[kind][1]}"]
        assert subscription["topic"] == topic(kind)
        assert subscription["pushConfig"] == {"pushEndpoint": f"{INTERCEPTOR}/{kind}",
                                              "oidcToken": {"serviceAccountEmail": INVOKER}}
        assert subscription["expirationPolicy"] == {}
    again = manage("create_push_subscriptions", f"--interceptor-url={INTERCEPTOR}", env=env)
    assert again.returncode == 0, again.stderr
    assert "Created" not in again.stdout and again.stdout.count("exists and pushes to") == len(EVENT_KINDS)


def test_a_subscription_pushing_elsewhere_is_updated(fake, env) -> None:
    assert manage("create_push_subscriptions", "--interceptor-url=https://old.example", env=env).returncode == 0
    result = manage("create_push_subscriptions", f"--interceptor-url={INTERCEPTOR}", "--audience=aa-pushes", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Updated") == len(EVENT_KINDS)
    for subscription in fake.subscriptions.values():
        assert subscription["pushConfig"]["oidcToken"] == {"serviceAccountEmail": INVOKER, "audience": "aa-pushes"}
        assert subscription["pushConfig"]["pushEndpoint"].startswith(INTERCEPTOR)


def test_subscriptions_dry_run_calls_nothing(fake, env) -> None:
    result = manage("create_push_subscriptions", f"--interceptor-url={INTERCEPTOR}", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Would ensure") == len(EVENT_KINDS) and not fake.received


@pytest.mark.parametrize("arguments, reason", [
    (("--interceptor-url=http://interceptor.example",), "must be https"),
    (("--interceptor-url=https://x.example/path?q=1",), "is not a service URL"),
    (("--interceptor-url", INTERCEPTOR, "--invoker-account=someone@example.com"), "is not a service account email"),
])
def test_subscription_errors_are_clean(fake, env, arguments, reason) -> None:
    assert_clean_failure(manage("create_push_subscriptions", *arguments, env=env), mentions=reason)


def test_subscriptions_refused_are_clean(fake, env) -> None:
    fake.forced_status = 403
    assert_clean_failure(manage("create_push_subscriptions", f"--interceptor-url={INTERCEPTOR}", env=env),
                         mentions="Pub/Sub refused: 403")


@pytest.mark.parametrize("command", ["configure_conversation_profile", "create_push_subscriptions"])
def test_help(command) -> None:
    result = manage(command, "--help")
    assert result.returncode == 0 and "--dry-run" in result.stdout, result.stderr


def test_profile_dry_run_prints_the_request_without_credentials_or_calls(fake, tmp_path: Path) -> None:
    """No credentials anywhere (no key file, an empty HOME for gcloud's): the PATCH it would send, nothing sent."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "", "HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
           "DIALOGFLOW_API_ROOT": fake.url, "GCP_PROJECT_ID": PROJECT}
    result = manage("configure_conversation_profile", "--conversation-profile=CP-1", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert fake.received == []
    request_line, body = result.stdout.split("\n", 2)[1:]
    masks = ("human_agent_assistant_config.notification_config,new_message_event_notification_config,"
             "notification_config,new_recognition_result_notification_config")
    assert request_line == f"PATCH {fake.url}/v2/{PROFILE}?updateMask={masks}"
    json_format = {kind: {"topic": topic(kind), "messageFormat": "JSON"} for kind in EVENT_KINDS}
    assert json.loads(body) == {
        "humanAgentAssistantConfig": {"notificationConfig": json_format["human-agent-assistant-event"]},
        "newMessageEventNotificationConfig": json_format["new-message-event"],
        "notificationConfig": json_format["conversation-lifecycle-event"],
        "newRecognitionResultNotificationConfig": json_format["new-recognition-result-notification-event"],
    }
