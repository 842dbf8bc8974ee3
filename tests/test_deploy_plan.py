"""``manage.py deploy_plan``: the plan agrees with ``deploy/*.yaml``, prints as valid bash, and runs through gcloud.

``--execute`` runs against ``tests/fake_gcloud.py`` placed first on ``PATH`` (it
records every call) and the local fake Secret Manager for the
``create_jwt_secret`` step: nothing reaches the cloud.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from aa_site import deployment
from aa_site.deployment import Options, Step
from interceptor.push_samples import EVENT_KINDS
from tests import fake_gcloud, fake_operator_apis, fake_secret_manager
from tests.commands import assert_clean_failure, manage
from tests.fake_operator_apis import FakeOperatorApis
from tests.fake_secret_manager import FakeSecretManager

PROJECT = "acme-cx"
REGION = "europe-west1"
OPTIONS = Options(project=PROJECT, region=REGION, admin_account="ops@acme.example", auth_option="Salesforce",
                  provider_settings={"SALESFORCE_ORGANIZATION_ID": "00D000000000001EAA"},
                  allowed_origins=("https://acme.lightning.force.com",), conversation_profile="CP-1")
FLAGS = ("--project", PROJECT, "--region", REGION, "--auth-option", "Salesforce",
         "--env", "SALESFORCE_ORGANIZATION_ID=00D000000000001EAA", "--allowed-origins",
         "https://acme.lightning.force.com", "--conversation-profile", "CP-1")


def commands(steps: list[Step], *prefix: str) -> list[tuple[str, ...]]:
    """The argv of every command step that starts with ``prefix``."""
    return [step.argv for step in steps if step.argv[: len(prefix)] == prefix]


def flag(argv: tuple[str, ...], name: str) -> str:
    """The value of ``--name=value`` in ``argv``."""
    (value,) = [argument.split("=", 1)[1] for argument in argv if argument.startswith(f"--{name}=")]
    return value


def service_files(steps: list[Step]) -> dict[str, dict[str, Any]]:
    """The rendered service files, parsed, by file name."""
    return {step.path: yaml.safe_load(step.content) for step in steps if step.path is not None}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry["value"] for entry in container["env"]}


def test_service_files_agree_with_the_commands_around_them() -> None:
    """Names, accounts, image, connector, secret and push identity in the YAML are those the plan creates."""
    steps = deployment.build_plan(OPTIONS)
    files = service_files(steps)
    replaced = [argv[4] for argv in commands(steps, "gcloud", "run", "services", "replace")]
    assert replaced == list(files) == ["ui-connector.service.yaml", "cloud-pubsub-interceptor.service.yaml"]
    connector, interceptor = files["ui-connector.service.yaml"], files["cloud-pubsub-interceptor.service.yaml"]
    created_accounts = {argv[4] for argv in commands(steps, "gcloud", "iam", "service-accounts", "create")}
    (image,) = [flag(argv, "tag") for argv in commands(steps, "gcloud", "builds", "submit")]
    (vpc,) = [argv[6] for argv in commands(steps, "gcloud", "compute", "networks", "vpc-access")]
    (secret_step,) = commands(steps, "python", "manage.py", "create_jwt_secret")
    for service, role in ((connector, "connector"), (interceptor, "interceptor")):
        template = service["spec"]["template"]
        account = template["spec"]["serviceAccountName"]
        assert account.endswith(f"@{PROJECT}.iam.gserviceaccount.com")
        assert account.split("@")[0] in created_accounts
        (container,) = template["spec"]["containers"]
        assert container["image"] == image
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert template["metadata"]["annotations"]["run.googleapis.com/vpc-access-connector"] == vpc
        assert service["metadata"]["labels"]["cloud.googleapis.com/location"] == REGION
        environment = env_of(service)
        assert environment["SERVICE_ROLE"] == role
        assert (environment["GCP_PROJECT_ID"], environment["SERVICE_REGION"]) == (PROJECT, REGION)
        assert (environment["REDISHOST"], environment["REDISPORT"]) == ("${REDIS_HOST}", "${REDIS_PORT}")
    # The connector: public, long requests, the secret mounted where JWT_SECRET_KEY_FILE looks.
    assert connector["metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"
    assert connector["spec"]["template"]["spec"]["timeoutSeconds"] == 3600
    (jwt_volume, *redis_volumes) = connector["spec"]["template"]["spec"]["volumes"]
    (jwt_mount, *_) = connector["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert jwt_volume["secret"]["secretName"] == flag(secret_step, "secret")
    assert f"{jwt_mount['mountPath']}/{jwt_volume['secret']['items'][0]['path']}" == "/secret/jwt_secret_key"
    accessors = {(argv[3], flag(argv, "member"))
                 for argv in commands(steps, "gcloud", "secrets", "add-iam-policy-binding")}
    connector_member = f"serviceAccount:{connector['spec']['template']['spec']['serviceAccountName']}"
    interceptor_member = f"serviceAccount:{interceptor['spec']['template']['spec']['serviceAccountName']}"
    assert (jwt_volume["secret"]["secretName"], connector_member) in accessors
    assert (jwt_volume["secret"]["secretName"], interceptor_member) not in accessors
    # Both services reach Memorystore over TLS with AUTH: the CA and the AUTH string are mounted secret files,
    # each filled by the plan from the instance and readable by the account that mounts it.
    (created,) = commands(steps, "gcloud", "redis", "instances", "create")
    assert {"--transit-encryption-mode=SERVER_AUTHENTICATION", "--enable-auth"} <= set(created)
    filled = {step.argv[4]: step.stdin_from for step in steps if step.stdin_from}
    assert filled[OPTIONS.redis_auth_secret][3] == "get-auth-string"
    assert "--format=value(serverCaCerts[0].cert)" in filled[OPTIONS.redis_ca_secret]
    for service, member in ((connector, connector_member), (interceptor, interceptor_member)):
        template = service["spec"]["template"]["spec"]
        secrets = {volume["name"]: volume["secret"] for volume in template["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in template["containers"][0]["volumeMounts"]}
        files = {f"{mounts[name]}/{secret['items'][0]['path']}": secret["secretName"] for name, secret in secrets.items()}
        environment = env_of(service)
        assert files[environment["REDIS_TLS_CA_FILE"]] == OPTIONS.redis_ca_secret
        assert files[environment["REDIS_AUTH_STRING_FILE"]] == OPTIONS.redis_auth_secret
        for secret in files.values():
            assert (secret, member) in accessors, (secret, member)
    assert env_of(connector)["AUTH_OPTION"] == "Salesforce"
    assert env_of(connector)["SALESFORCE_ORGANIZATION_ID"] == "00D000000000001EAA"
    assert env_of(connector)["CORS_ALLOWED_ORIGINS"] == "https://acme.lightning.force.com"
    # The interceptor: internal, and it checks the token of the account the subscriptions push as.
    assert interceptor["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    push_accounts = {flag(argv, "push-auth-service-account")
                     for argv in commands(steps, "gcloud", "pubsub", "subscriptions", "create")}
    assert push_accounts == {env_of(interceptor)["PUSH_AUTH_SERVICE_ACCOUNT"]}
    invokers = [argv for argv in commands(steps, "gcloud", "run", "services", "add-iam-policy-binding")
                if argv[4] == interceptor["metadata"]["name"]]
    assert [flag(argv, "member") for argv in invokers] == [f"serviceAccount:{account}" for account in push_accounts]


def test_one_topic_and_one_push_subscription_per_event_kind() -> None:
    """Each of the four endpoints gets a topic, the profile names that topic, and a subscription pushes to it."""
    steps = deployment.build_plan(OPTIONS)
    topics = [argv[4] for argv in commands(steps, "gcloud", "pubsub", "topics", "create")]
    subscriptions = commands(steps, "gcloud", "pubsub", "subscriptions", "create")
    (profile,) = commands(steps, "python", "manage.py", "configure_conversation_profile")
    assert len(topics) == len(subscriptions) == len(EVENT_KINDS) == len(set(topics))
    for kind, topic, subscription in zip(EVENT_KINDS, topics, subscriptions):
        assert flag(subscription, "topic") == topic
        assert flag(subscription, "push-endpoint") == f"${{INTERCEPTOR_URL}}/{kind}"
        assert flag(profile, f"{kind}-topic") == f"projects/{PROJECT}/topics/{topic}"
    assert "--message-format=JSON" in profile


def test_every_reference_is_captured_by_an_earlier_step() -> None:
    """${NAME} appears only after the step that captures NAME, and the templates leave nothing else unfilled."""
    captured: set[str] = set()
    for step in deployment.build_plan(OPTIONS):
        used = deployment.references(step.content or " ".join(step.argv))
        assert used <= captured, (step.title, used - captured)
        if step.capture:
            captured.add(step.capture)


def test_least_privilege_roles_per_account() -> None:
    """Project roles: the administrator's list, Dialogflow for the connector, none for the interceptor."""
    steps = deployment.build_plan(OPTIONS)
    granted: dict[str, list[str]] = {}
    for argv in commands(steps, "gcloud", "projects", "add-iam-policy-binding"):
        granted.setdefault(flag(argv, "member"), []).append(flag(argv, "role"))
    assert granted == {
        "user:ops@acme.example": list(deployment.ADMINISTRATOR_ROLES),
        f"serviceAccount:ui-connector@{PROJECT}.iam.gserviceaccount.com": ["roles/dialogflow.agentAssistClient"],
    }
    (token_creator,) = commands(steps, "gcloud", "iam", "service-accounts", "add-iam-policy-binding")
    assert flag(token_creator, "role") == "roles/iam.serviceAccountTokenCreator"
    pubsub_agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert flag(token_creator, "member") == pubsub_agent


def test_printed_plan_is_a_bash_script_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """bash -n accepts the output; the service files are heredocs; no administrator steps without the flag."""
    call_command("deploy_plan", *FLAGS)
    script = capsys.readouterr().out
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert "cat > ui-connector.service.yaml <<EOF" in script
    assert 'REDIS_HOST=$(gcloud redis instances describe aa-redis' in script
    assert "user:" not in script


@pytest.mark.parametrize("arguments, reason", [
    (("--project", PROJECT), "no region"),
    (("--region", REGION, "--project", ""), "no project"),
    ((*FLAGS, "--auth-option", "Skip"), "development only"),
    ((*FLAGS, "--allowed-origins", "*"), "may not contain '*'"),
    ((*FLAGS, "--env", "NOTE=$(rm -rf /)"), "cannot carry it safely"),
    ((*FLAGS, "--env", "SERVICE_ROLE=all"), "set by the service templates"),
    (("--project", PROJECT, "--region", REGION, "--auth-option", "Salesforce"), "SALESFORCE_ORGANIZATION_ID"),
])
def test_bad_flags_are_command_errors(settings: Any, arguments: tuple[str, ...], reason: str) -> None:
    settings.GCP_PROJECT_ID = ""
    settings.SERVICE_REGION = ""
    settings.SALESFORCE_ORGANIZATION_ID = ""
    with pytest.raises(CommandError, match=reason.replace("(", r"\(").replace("*", r"\*")):
        call_command("deploy_plan", *arguments)


# --- --execute with a fake gcloud ---------------------------------------------------------------


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[FakeSecretManager]:
    with fake_secret_manager.serve() as fake:
        yield fake


@pytest.fixture(scope="module")
def dialogflow() -> Iterator[FakeOperatorApis]:
    """The conversation profile step's Dialogflow, with the profile CP-1."""
    with fake_operator_apis.serve() as fake:
        name = f"projects/{PROJECT}/locations/global/conversationProfiles/CP-1"
        fake.profiles[name] = {"name": name, "displayName": "Agent Assist"}
        yield fake


@pytest.fixture
def cloud(tmp_path: Path, secret_manager: FakeSecretManager, dialogflow: FakeOperatorApis) -> dict[str, str]:
    """An environment whose PATH finds the fake gcloud first, and whose Secret Manager is the local fake."""
    secret_manager.secrets.clear()
    secret_manager.created.clear()
    binaries = tmp_path / "bin"
    binaries.mkdir()
    fake_gcloud.install(binaries)
    return {
        "PATH": f"{binaries}{os.pathsep}{os.environ['PATH']}",
        "FAKE_GCLOUD_LOG": str(tmp_path / "gcloud.log"),
        "SECRET_MANAGER_API_ENDPOINT": secret_manager.url,
        "DIALOGFLOW_API_ROOT": dialogflow.url,
        "GOOGLE_APPLICATION_CREDENTIALS": str(fake_secret_manager.write_credentials(tmp_path)),
    }


def expected_gcloud_calls() -> list[tuple[int, list[str]]]:
    """(step number, argv after "gcloud") of every gcloud step of the plan FLAGS make, captures filled in."""
    values = {"REDIS_HOST": fake_gcloud.REDIS_HOST, "REDIS_PORT": fake_gcloud.REDIS_PORT,
              "PROJECT_NUMBER": fake_gcloud.PROJECT_NUMBER, "INTERCEPTOR_URL": fake_gcloud.INTERCEPTOR_URL}
    options = Options(project=PROJECT, region=REGION, auth_option="Salesforce",
                      extra_env={"SALESFORCE_ORGANIZATION_ID": "00D000000000001EAA"},
                      allowed_origins=("https://acme.lightning.force.com",), conversation_profile="CP-1")
    calls = []
    for number, step in enumerate(deployment.build_plan(options), 1):
        for command in (step.stdin_from, step.argv):  # a piped step runs its input's command first
            if command[:1] == ("gcloud",):
                argv = [argument for argument in command[1:]]
                for name, value in values.items():
                    argv = [argument.replace(f"${{{name}}}", value) for argument in argv]
                calls.append((number, argv))
    return calls


def test_execute_runs_every_step_in_order(cloud: dict[str, str], secret_manager: FakeSecretManager,
                                          dialogflow: FakeOperatorApis, tmp_path: Path) -> None:
    """Every gcloud command in plan order with captured values filled in; the secret stored; files rendered."""
    result = manage("deploy_plan", *FLAGS, "--execute", "--work-dir", str(tmp_path / "work"), env=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    assert [call["argv"] for call in calls] == [argv for _, argv in expected_gcloud_calls()]
    (value,) = secret_manager.secrets[(PROJECT, "aa-jwt-secret")]
    assert value not in result.stdout + result.stderr
    profile = dialogflow.profiles[f"projects/{PROJECT}/locations/global/conversationProfiles/CP-1"]
    assert profile["newMessageEventNotificationConfig"] == {
        "topic": f"projects/{PROJECT}/topics/aa-new-message-topic", "messageFormat": "JSON"}
    replaced = {call["argv"][3]: yaml.safe_load(call["file"]) for call in calls if "replace" in call["argv"]}
    for service in replaced.values():
        assert env_of(service)["REDISHOST"] == fake_gcloud.REDIS_HOST
        assert env_of(service)["REDISPORT"] == fake_gcloud.REDIS_PORT
    # The AUTH string and the CA went from Memorystore into Secret Manager through a pipe, not the output.
    piped = {call["argv"][3]: call["stdin"] for call in calls if "stdin" in call}
    assert piped == {"aa-redis-auth": fake_gcloud.REDIS_AUTH_STRING + "\n", "aa-redis-ca": fake_gcloud.REDIS_SERVER_CA + "\n"}
    assert fake_gcloud.REDIS_AUTH_STRING not in result.stdout + result.stderr
    build = next(call for call in calls if call["argv"][:2] == ["builds", "submit"])
    assert Path(build["cwd"]) == Path(deployment.DEPLOY_DIRECTORY).parent


def test_execute_stops_at_the_first_failure_and_resumes_from_that_step(cloud: dict[str, str],
                                                                       tmp_path: Path) -> None:
    """Call N fails: exit non-zero naming its step and --from-step; resuming re-runs look-ups, then the rest."""
    expected = expected_gcloud_calls()
    failing_call = 20
    failing_step, _ = expected[failing_call - 1]
    log = Path(cloud["FAKE_GCLOUD_LOG"])
    failed = manage("deploy_plan", *FLAGS, "--execute", env={**cloud, "FAKE_GCLOUD_FAIL_AT": str(failing_call)})
    assert_clean_failure(failed, mentions=f"step {failing_step} (")
    assert f"--from-step {failing_step}" in failed.stderr and "PERMISSION_DENIED" in failed.stderr
    assert len(fake_gcloud.calls(log)) == failing_call
    log.unlink()
    resumed = manage("deploy_plan", *FLAGS, "--execute", "--from-step", str(failing_step), env=cloud)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    steps = deployment.build_plan(Options(project=PROJECT, region=REGION))
    lookups = [argv for number, argv in expected if number < failing_step and steps[number - 1].capture]
    assert [call["argv"] for call in fake_gcloud.calls(log)] == lookups + [
        argv for number, argv in expected if number >= failing_step]


def test_execute_continues_past_a_resource_that_already_exists(cloud: dict[str, str]) -> None:
    """A create step whose resource exists is done, not a failure; any other step's refusal still stops."""
    expected = expected_gcloud_calls()
    steps = deployment.build_plan(Options(project=PROJECT, region=REGION))
    exists_call = next(index for index, (number, _) in enumerate(expected, 1) if steps[number - 1].exists_ok)
    result = manage("deploy_plan", *FLAGS, "--execute", env={**cloud, "FAKE_GCLOUD_EXISTS_AT": str(exists_call)})
    assert result.returncode == 0, result.stderr
    assert "already exists; continuing" in result.stdout
    (Path(cloud["FAKE_GCLOUD_LOG"])).unlink()
    binding_call = next(index for index, (number, _) in enumerate(expected, 1) if not steps[number - 1].exists_ok)
    refused = manage("deploy_plan", *FLAGS, "--execute", env={**cloud, "FAKE_GCLOUD_EXISTS_AT": str(binding_call)})
    assert_clean_failure(refused, mentions="already exists")


def test_execute_without_gcloud_on_path_is_a_clean_error(tmp_path: Path) -> None:
    result = manage("deploy_plan", *FLAGS, "--execute", env={"PATH": str(tmp_path)})
    assert_clean_failure(result, mentions="gcloud is not on PATH")
