"""``manage.py deploy_plan``: the plan agrees with ``deploy/*.yaml``, prints as valid bash, and runs through gcloud.

``--execute`` runs against ``testing/fake_gcloud.py`` placed first on ``PATH`` (it
records every call) and the local fake Secret Manager for the
``create_jwt_secret`` step: nothing reaches the cloud.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import shlex
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from aa_site import env
from deployment import plan
from deployment.plan import Options, Step
from interceptor.push_samples import EVENT_KINDS
from testing import fake_gcloud, fake_operator_apis, fake_secret_manager, settings_probe
from testing.commands import COMMAND_TIMEOUT, assert_clean_failure, manage, operator_environment
from testing.fake_operator_apis import FakeOperatorApis
from testing.fake_secret_manager import FakeSecretManager

PROJECT = "acme-cx"
REGION = "europe-west1"
OPTIONS = Options(project=PROJECT, region=REGION, admin_account="ops@acme.example", auth_option="Salesforce",
                  provider_settings={"SALESFORCE_ORGANIZATION_ID": "00D000000000001EAA"},
                  allowed_origins=("https://acme.lightning.force.com",), conversation_profile="CP-1")
URL_SAFE = set(string.ascii_letters + string.digits + "-_")
FLAGS = ("--project", PROJECT, "--region", REGION, "--auth-option", "Salesforce",
         "--env", "SALESFORCE_ORGANIZATION_ID=00D000000000001EAA", "--allowed-origins",
         "https://acme.lightning.force.com", "--conversation-profile", "CP-1")

ADMIN_FLAGS = (*FLAGS, "--admin-database", "cloudsql")


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
    """The service's plain environment variables."""
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: entry["value"] for entry in container["env"] if "value" in entry}


def secret_env_of(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The service's variables set from Secret Manager: name to (secret, version)."""
    (container,) = service["spec"]["template"]["spec"]["containers"]
    return {entry["name"]: (entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
            for entry in container["env"] if "valueFrom" in entry}


@pytest.mark.parametrize("providers", [{"auth_option": "Five9"},
                                       {"auth_option": "GenesysCloud", "app_auth_option": "five9"}])
def test_five9_gets_its_trust_token_from_a_generated_secret(providers: dict[str, str]) -> None:
    """With Five9 among the identity providers the connector reads FIVE9_TRUST_TOKEN (without it every Five9 call
    is refused): the plan generates it into Secret Manager (kept on a re-run), lets the connector's account read
    it, sets it on the connector only, and says where the operator reads it for Five9's side."""
    options = dataclasses.replace(OPTIONS, provider_settings={}, **providers)
    steps = plan.build_plan(options)
    files = service_files(steps)
    connector, interceptor = files["ui-connector.service.yaml"], files["cloud-pubsub-interceptor.service.yaml"]
    assert secret_env_of(connector)["FIVE9_TRUST_TOKEN"] == (options.five9_secret, "latest")
    assert "FIVE9_TRUST_TOKEN" not in secret_env_of(interceptor)
    (filled,) = [step for step in steps if step.argv[:4] == ("gcloud", "secrets", "versions", "add")
                 and step.argv[4] == options.five9_secret]
    assert filled.skip_if is not None and options.five9_secret in " ".join(filled.skip_if)  # a re-run keeps it
    accessors = {(argv[3], flag(argv, "member"))
                 for argv in commands(steps, "gcloud", "secrets", "add-iam-policy-binding")}
    connector_member = f"serviceAccount:{connector['spec']['template']['spec']['serviceAccountName']}"
    assert (options.five9_secret, connector_member) in accessors
    assert any(step.note and options.five9_secret in step.title for step in steps)


def test_without_five9_there_is_no_trust_token() -> None:
    steps = plan.build_plan(OPTIONS)
    assert "FIVE9_TRUST_TOKEN" not in secret_env_of(service_files(steps)["ui-connector.service.yaml"])
    assert not any(OPTIONS.five9_secret in " ".join(step.argv) for step in steps)


def test_service_files_agree_with_the_commands_around_them() -> None:
    """Names, accounts, image, connector, secret and push identity in the YAML are those the plan creates."""
    steps = plan.build_plan(OPTIONS)
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
    # The connector: public, long requests, the secret mounted where JWT_SECRET_KEY_PATH looks.
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
    assert {"--transit-encryption-mode=SERVER_AUTHENTICATION", "--enable-auth",
            "--redis-version=redis_7_2"} <= set(created)
    # De-duplication records survive a restart of the instance only with persistence (docs/concepts.md, "Events in Redis").
    assert {"--persistence-mode=rdb", "--rdb-snapshot-period=1h"} <= set(created)
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
    # Django's secret key: always generated into Secret Manager and set on the connector only (it serves the admin).
    assert secret_env_of(connector) == {"DJANGO_SECRET_KEY": (OPTIONS.django_secret, "latest")}
    assert secret_env_of(interceptor) == {}
    assert (OPTIONS.django_secret, connector_member) in accessors
    assert (OPTIONS.django_secret, interceptor_member) not in accessors
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
    steps = plan.build_plan(OPTIONS)
    topics = [argv[4] for argv in commands(steps, "gcloud", "pubsub", "topics", "create")]
    subscriptions = commands(steps, "gcloud", "pubsub", "subscriptions", "create")
    (profile,) = commands(steps, "python", "manage.py", "configure_conversation_profile")
    assert len(topics) == len(subscriptions) == len(EVENT_KINDS) == len(set(topics))
    for kind, topic, subscription in zip(EVENT_KINDS, topics, subscriptions):
        assert flag(subscription, "topic") == topic
        assert flag(subscription, "push-endpoint") == f"${{INTERCEPTOR_URL}}/{kind}"
        assert flag(profile, f"{kind}-topic") == f"projects/{PROJECT}/topics/{topic}"
    assert "--message-format=JSON" in profile


@pytest.mark.parametrize("admin_database", ["", "cloudsql"])
def test_every_reference_is_captured_by_an_earlier_step(admin_database: str) -> None:
    """${NAME} appears only after the step that captures NAME, and the templates leave nothing else unfilled."""
    captured: set[str] = set()
    for step in plan.build_plan(dataclasses.replace(OPTIONS, admin_database=admin_database)):
        used = plan.references(" ".join([step.content or "", step.stdin_text or "", *step.argv,
                                               *step.stdin_from, *step.skip_if]))
        assert used <= captured, (step.title, used - captured)
        if step.capture:
            captured.add(step.capture)


CONNECTOR_MEMBER = f"serviceAccount:ui-connector@{PROJECT}.iam.gserviceaccount.com"
INTERCEPTOR_MEMBER = f"serviceAccount:cloud-pubsub-interceptor@{PROJECT}.iam.gserviceaccount.com"
# What Google's sample grants both runtime accounts on the project beyond ours (aa-integration-backend's
# deploy.sh and terraform/variables.tf), spelled out here rather than read from the constant under test.
TUTORIAL_EXTRA_ROLES = ["roles/redis.editor", "roles/vpcaccess.user", "roles/compute.viewer"]


def project_roles(steps: list[Step]) -> dict[str, list[str]]:
    """Each member's project roles, in the order the plan grants them."""
    granted: dict[str, list[str]] = {}
    for argv in commands(steps, "gcloud", "projects", "add-iam-policy-binding"):
        granted.setdefault(flag(argv, "member"), []).append(flag(argv, "role"))
    return granted


def test_least_privilege_roles_per_account() -> None:
    """By default, project roles: the administrator's list, Dialogflow for the connector, none for the interceptor."""
    steps = plan.build_plan(OPTIONS)
    granted = project_roles(steps)
    assert granted == {
        "user:ops@acme.example": list(plan.ADMINISTRATOR_ROLES),
        f"serviceAccount:ui-connector@{PROJECT}.iam.gserviceaccount.com": ["roles/dialogflow.agentAssistClient"],
    }
    (token_creator,) = commands(steps, "gcloud", "iam", "service-accounts", "add-iam-policy-binding")
    assert flag(token_creator, "role") == "roles/iam.serviceAccountTokenCreator"
    pubsub_agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert flag(token_creator, "member") == pubsub_agent


@pytest.mark.parametrize("admin_database", ["", "cloudsql"])
def test_tutorial_runtime_roles_add_the_tutorials_roles_to_both_runtime_accounts_and_nothing_else(
        admin_database: str) -> None:
    """The opt-in adds one project binding per extra role of Google's sample to each runtime account; every other
    step, the administrator's roles and the per-secret grants included, is the least-privilege plan's."""
    least = plan.build_plan(dataclasses.replace(OPTIONS, admin_database=admin_database))
    tutorial = plan.build_plan(dataclasses.replace(OPTIONS, admin_database=admin_database,
                                                         tutorial_runtime_roles=True))
    before, after = project_roles(least), project_roles(tutorial)
    assert INTERCEPTOR_MEMBER not in before
    assert after == {**before, CONNECTOR_MEMBER: TUTORIAL_EXTRA_ROLES + before[CONNECTOR_MEMBER],
                     INTERCEPTOR_MEMBER: TUTORIAL_EXTRA_ROLES}
    added = [step for step in tutorial if step not in least]
    assert [step for step in tutorial if step not in added] == least
    assert [(flag(step.argv, "member"), flag(step.argv, "role")) for step in added] == [
        (member, role) for member in (CONNECTOR_MEMBER, INTERCEPTOR_MEMBER) for role in TUTORIAL_EXTRA_ROLES]
    for step in added:  # project-wide and unconditional, as the sample binds them
        assert step.argv[:4] == ("gcloud", "projects", "add-iam-policy-binding", PROJECT)
        assert step.argv[-1] == "--condition=None"


def test_the_admin_database_is_opt_in() -> None:
    """Without --admin-database: no Cloud SQL, no jobs, no DATABASE_URL; the signing secret and Django's key are
    the generated secrets."""
    steps = plan.build_plan(OPTIONS)
    assert not commands(steps, "gcloud", "sql") and not commands(steps, "gcloud", "run", "jobs")
    words = " ".join(argument for step in steps for argument in step.argv)
    assert "sqladmin" not in words and "cloudsql" not in words
    assert [flag(step.skip_if, "secret") for step in steps if step.skip_if] == [OPTIONS.jwt_secret,
                                                                               OPTIONS.django_secret]
    connector = service_files(steps)["ui-connector.service.yaml"]
    assert "run.googleapis.com/cloudsql-instances" not in connector["spec"]["template"]["metadata"]["annotations"]
    assert "DATABASE_URL" not in secret_env_of(connector) | env_of(connector)


def index_of(steps: list[Step], *prefix: str) -> int:
    """The position of the first step whose command starts with ``prefix``."""
    return next(index for index, step in enumerate(steps) if step.argv[: len(prefix)] == prefix)


def test_admin_database_steps_agree_with_each_other_and_with_the_connector() -> None:
    """One instance, database, user and password throughout; the connector and both jobs have what they need."""
    options = dataclasses.replace(OPTIONS, admin_database="cloudsql", superuser_email="ops@acme.example")
    steps = plan.build_plan(options)
    (enable,) = commands(steps, "gcloud", "services", "enable")
    assert "sqladmin.googleapis.com" in enable
    (instance,) = commands(steps, "gcloud", "sql", "instances", "create")
    assert flag(instance, "database-version") == "POSTGRES_15" and flag(instance, "tier") == "db-f1-micro"
    assert flag(instance, "region") == REGION and "--deletion-protection" in instance
    connection = f"{PROJECT}:{REGION}:{instance[4]}"
    (database,) = commands(steps, "gcloud", "sql", "databases", "create")
    (user,) = commands(steps, "gcloud", "sql", "users", "create")
    assert flag(database, "instance") == flag(user, "instance") == instance[4]
    # The user's password is read back from the secret it was generated into; the URL carries the same value.
    (password,) = [step for step in steps if step.capture == "DATABASE_PASSWORD"]
    assert password.sensitive and password.argv[:5] == ("gcloud", "secrets", "versions", "access", "latest")
    generated = {step.argv[4]: step for step in steps if step.skip_if and not step.manage}
    assert set(generated) == set(GENERATED_SECRETS) and flag(password.argv, "secret") in generated
    for secret, step in generated.items():
        assert step.skip_if == ("gcloud", "secrets", "versions", "describe", "latest", f"--secret={secret}",
                                "--project", PROJECT)
        assert step.stdin_from[:2] == ("python", "-c")
    assert flag(user, "password") == "${DATABASE_PASSWORD}"
    (url_step,) = [step for step in steps if step.stdin_text is not None]
    url_secret = url_step.argv[4]
    parsed = env.database(url_step.stdin_text.replace("${DATABASE_PASSWORD}", "pw-1_x"), sqlite_path="unused")
    assert parsed["ENGINE"] == "django.db.backends.postgresql"
    assert (parsed["HOST"], parsed["NAME"], parsed["USER"], parsed["PASSWORD"]) == (
        f"/cloudsql/{connection}", database[4], user[4], "pw-1_x")
    # The connector: the socket through Cloud Run's Cloud SQL connection, the URL and the key from Secret Manager.
    files = service_files(steps)
    connector, interceptor = files["ui-connector.service.yaml"], files["cloud-pubsub-interceptor.service.yaml"]
    template = connector["spec"]["template"]
    account = template["spec"]["serviceAccountName"]
    assert template["metadata"]["annotations"]["run.googleapis.com/cloudsql-instances"] == connection
    assert secret_env_of(connector) == {"DATABASE_URL": (url_secret, "latest"),
                                        "DJANGO_SECRET_KEY": (options.django_secret, "latest")}
    assert secret_env_of(interceptor) == {}
    assert env_of(connector)["TRUST_FORWARDED_PROTO"] == "true"  # the admin's CSRF check behind Cloud Run's TLS
    accessors = {(argv[3], flag(argv, "member"))
                 for argv in commands(steps, "gcloud", "secrets", "add-iam-policy-binding")}
    granted = {(flag(argv, "member"), flag(argv, "role"))
               for argv in commands(steps, "gcloud", "projects", "add-iam-policy-binding")}
    assert (f"serviceAccount:{account}", "roles/cloudsql.client") in granted
    assert ("user:ops@acme.example", "roles/cloudsql.admin") in granted
    # The jobs: the image just built, the connector's account, the instance, and readable secrets.
    deployed = commands(steps, "gcloud", "run", "jobs", "deploy")
    executed = commands(steps, "gcloud", "run", "jobs", "execute")
    assert [argv[4] for argv in deployed] == [argv[4] for argv in executed] == [options.migrate_job,
                                                                               options.superuser_job]
    (image,) = [flag(argv, "tag") for argv in commands(steps, "gcloud", "builds", "submit")]
    for job in deployed:
        assert (flag(job, "image"), flag(job, "service-account")) == (image, account)
        assert flag(job, "set-cloudsql-instances") == connection
        secrets = dict(entry.split("=") for entry in flag(job, "set-secrets").split(","))
        assert secrets["DATABASE_URL"] == f"{url_secret}:latest"
        for secret in secrets.values():
            assert (secret.split(":")[0], f"serviceAccount:{account}") in accessors
    migrate, superuser = deployed
    assert flag(migrate, "args").split(",") == ["manage.py", "migrate", "--noinput", "--skip-checks"]
    assert flag(superuser, "args").split(",") == ["manage.py", "ensure_superuser", "--username=admin",
                                                 "--email=ops@acme.example"]
    assert f"DJANGO_SUPERUSER_PASSWORD={options.superuser_password_secret}:latest" in flag(superuser, "set-secrets")
    # In order: the image, the tables, the first operator, then the revision that uses them.
    positions = [index_of(steps, "gcloud", "builds", "submit"),
                 index_of(steps, "gcloud", "run", "jobs", "deploy", migrate[4]),
                 index_of(steps, "gcloud", "run", "jobs", "execute", migrate[4]),
                 index_of(steps, "gcloud", "run", "jobs", "execute", superuser[4]),
                 index_of(steps, "gcloud", "run", "services", "replace")]
    assert positions == sorted(positions)
    assert steps[-1].note and options.superuser_password_secret in steps[-1].title


def test_printed_plan_is_a_bash_script_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """bash -n accepts the output; the service files are heredocs; no administrator steps without the flag."""
    call_command("deploy_plan", *FLAGS)
    script = capsys.readouterr().out
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert "cat > ui-connector.service.yaml <<EOF" in script
    assert 'REDIS_HOST=$(gcloud redis instances describe aa-redis' in script
    assert "user:" not in script


def test_the_printed_plan_opens_with_notes_for_integrators_moving_from_the_sample(capsys) -> None:
    """Comments before the first step, naming both names of each renamed setting, the guide they come from (which
    exists), and the secret's path: where the connector's service file mounts it and the connector looks by
    default."""
    call_command("deploy_plan", *FLAGS)
    head = capsys.readouterr().out.split("\n# 1. ")[0]
    notes = head.split("set -euo pipefail\n")[1]
    assert all(line.startswith("#") for line in notes.splitlines() if line)
    assert "# Moving from Google's sample (docs/migration.md):" in notes
    assert (Path(plan.DEPLOY_DIRECTORY).parent / "docs" / "migration.md").is_file()
    for name in ("GENESYS_CLOUD_REGION", "GENESYS_CLOUD_ENVIRONMENT", "JWT_SECRET_KEY_PATH", "JWT_SECRET_KEY_FILE",
                 "deploy/*.yaml"):
        assert name in notes, name
    connector = service_files(plan.build_plan(OPTIONS))["ui-connector.service.yaml"]["spec"]["template"]["spec"]
    (mount,) = [m["mountPath"] for m in connector["containers"][0]["volumeMounts"] if m["name"] == "jwt-secret"]
    (volume,) = [v["secret"] for v in connector["volumes"] if v["name"] == "jwt-secret"]
    assert f"{mount}/{volume['items'][0]['path']}" == plan.JWT_SECRET_MOUNT
    assert f" {plan.JWT_SECRET_MOUNT}," in notes
    values, _ = ast.literal_eval(settings_probe.read(("JWT_SECRET_KEY_PATH",), unset=("JWT_SECRET_KEY_FILE",)))
    assert values == [plan.JWT_SECRET_MOUNT]
    # The plan keeps the sample's default names, as the notes say.
    assert (OPTIONS.connector_service, OPTIONS.interceptor_service, OPTIONS.invoker_account_name) == (
        "ui-connector", "cloud-pubsub-interceptor", "cloud-run-pubsub-invoker")


def test_beside_the_sample_the_services_accounts_and_subscriptions_take_other_names(capsys) -> None:
    """With the three flags, the plan shares with the sample's default deployment only the topics (so both get
    every notification) and the invoker account; its push subscriptions go to its own interceptor."""
    call_command("deploy_plan", *FLAGS, "--connector-service", "aa-connector", "--interceptor-service",
                 "aa-interceptor", "--subscription-prefix", "aa-backend-")
    script = capsys.readouterr().out
    options = dataclasses.replace(OPTIONS, connector_service="aa-connector", interceptor_service="aa-interceptor",
                                  subscription_prefix="aa-backend-")
    steps = plan.build_plan(options)
    for _, subscription in plan.PUBSUB_NAMES.values():
        assert f"gcloud pubsub subscriptions create aa-backend-{subscription} " in script
    assert "cat > aa-connector.service.yaml <<EOF" in script
    files = service_files(steps)
    assert [service["metadata"]["name"] for service in files.values()] == ["aa-connector", "aa-interceptor"]
    accounts = {argv[4] for argv in commands(steps, "gcloud", "iam", "service-accounts", "create")}
    assert accounts == {"aa-connector", "aa-interceptor", "cloud-run-pubsub-invoker"}
    subscriptions = {argv[4]: (flag(argv, "topic"), flag(argv, "push-endpoint"))
                     for argv in commands(steps, "gcloud", "pubsub", "subscriptions", "create")}
    assert subscriptions == {f"aa-backend-{subscription}": (topic, f"${{INTERCEPTOR_URL}}/{kind}")
                             for kind, (topic, subscription) in plan.PUBSUB_NAMES.items()}
    (described,) = [step.argv for step in steps if step.capture == "INTERCEPTOR_URL"]
    assert described[4] == "aa-interceptor"
    sample_names = {"ui-connector", "cloud-pubsub-interceptor", *(sub for _, sub in plan.PUBSUB_NAMES.values())}
    arguments = {argument.split("=")[-1].split("@")[0] for step in steps for argument in step.argv}
    assert arguments & sample_names == set()


@pytest.mark.parametrize("name", ["GENESYS_CLOUD_REGION", "GENESYS_CLOUD_ENVIRONMENT"])
def test_a_genesys_region_under_either_name_reaches_the_connector_as_genesys_cloud_region(name: str) -> None:
    """An operator with the sample's environment (GENESYS_CLOUD_ENVIRONMENT) gets the region into the service
    file under the name the connector reads first."""
    printed = manage("deploy_plan", "--project", PROJECT, "--region", REGION, "--auth-option", "GenesysCloud",
                     "--allowed-origins", "https://apps.usw2.pure.cloud", env={name: "usw2.pure.cloud"})
    assert printed.returncode == 0, printed.stderr
    service = re.search(r"cat > ui-connector\.service\.yaml <<EOF\n(.*?)EOF", printed.stdout, re.DOTALL)[1]
    environment = env_of(yaml.safe_load(service))
    assert environment["GENESYS_CLOUD_REGION"] == "usw2.pure.cloud"
    assert "GENESYS_CLOUD_ENVIRONMENT" not in environment


@pytest.mark.parametrize("arguments, reason", [
    (("--project", PROJECT), "no region"),
    (("--region", REGION, "--project", ""), "no project"),
    ((*FLAGS, "--auth-option", "Skip"), "development only"),
    ((*FLAGS, "--allowed-origins", "*"), "may not contain '*'"),
    ((*FLAGS, "--env", "NOTE=$(rm -rf /)"), "cannot carry it safely"),
    ((*FLAGS, "--env", "SERVICE_ROLE=all"), "set by the service templates"),
    ((*ADMIN_FLAGS, "--database-name", "Admin-DB"), "not a database name"),
    ((*ADMIN_FLAGS, "--database-user", "aa admin"), "not a database user"),
    ((*ADMIN_FLAGS, "--database-instance", "1db"), "not a Cloud SQL instance id"),
    ((*ADMIN_FLAGS, "--database-tier", "small"), "not a Cloud SQL tier"),
    ((*ADMIN_FLAGS, "--superuser", "ops,root"), "not a username"),
    ((*ADMIN_FLAGS, "--superuser-email", "a@example.com,b@example.com"), "not an email address"),
    ((*FLAGS, "--admin-database", "mysql"), "invalid choice"),
    (("--project", PROJECT, "--region", REGION, "--auth-option", "Salesforce"), "SALESFORCE_ORGANIZATION_ID"),
    # The connector reads provider names in any case: so does the plan.
    (("--project", PROJECT, "--region", REGION, "--auth-option", "salesforce"), "SALESFORCE_ORGANIZATION_ID"),
    ((*FLAGS, "--auth-option", "skip"), "development only"),
    ((*FLAGS, "--connector-service", "UI-Connector"), "not a connector service name"),
    ((*FLAGS, "--interceptor-service", "interceptor-of-the-agent-assist-backend"), "not an interceptor service name"),
    ((*FLAGS, "--interceptor-service", "ui-connector"), "two service names"),
    ((*FLAGS, "--subscription-prefix", "aa_backend_"), "not a subscription prefix"),
    ((*FLAGS, "--redis-cluster", "--shard-count", "0"), "1 to 250 shards"),
    ((*FLAGS, "--redis-cluster", "--replica-count", "3"), "0 to 2 replicas"),
    ((*FLAGS, "--redis-cluster", "--redis-subnet", "sub$net"), "cannot carry it safely"),
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


# The Options FLAGS make (the provider setting passed with --env), and with the admin database.
EXECUTE_OPTIONS = Options(project=PROJECT, region=REGION, auth_option="Salesforce",
                          extra_env={"SALESFORCE_ORGANIZATION_ID": "00D000000000001EAA"},
                          allowed_origins=("https://acme.lightning.force.com",), conversation_profile="CP-1")
ADMIN_OPTIONS = dataclasses.replace(EXECUTE_OPTIONS, admin_database="cloudsql")
# Secrets the plan generates through gcloud (the gcloud steps with skip_if).
GENERATED_SECRETS = (ADMIN_OPTIONS.django_secret, ADMIN_OPTIONS.database_password_secret,
                     ADMIN_OPTIONS.superuser_password_secret)


def expected_gcloud_calls(options: Options = EXECUTE_OPTIONS, *, values: dict[str, str] | None = None,
                          kept: tuple[str, ...] = (), script: bool = False) -> list[tuple[int, list[str]]]:
    """(step number, argv after "gcloud") of every gcloud call of ``options``' plan, captures filled in.

    A generating step first asks whether its secret has a version; only for a secret not in ``kept`` does the
    add follow (its value comes from python, not gcloud). The printed ``script`` asks before each create whether
    its resource exists (none does yet).
    """
    values = {"REDIS_HOST": fake_gcloud.REDIS_HOST, "REDIS_PORT": fake_gcloud.REDIS_PORT,
              "PROJECT_NUMBER": fake_gcloud.PROJECT_NUMBER, "INTERCEPTOR_URL": fake_gcloud.INTERCEPTOR_URL,
              **(values or {})}
    calls = []
    for number, step in enumerate(plan.build_plan(options), 1):
        run = [step.skip_if, step.exists_if if script else ()]
        if not (step.skip_if and step.argv[4] in kept):
            run += [step.stdin_from, step.argv]  # a piped step runs its input's command first
        for command in run:
            if command[:1] == ("gcloud",):
                argv = [argument for argument in command[1:]]
                for name, value in values.items():
                    argv = [argument.replace(f"${{{name}}}", value) for argument in argv]
                calls.append((number, argv))
    return calls


def stored(calls: list[dict[str, Any]], secret: str) -> list[str]:
    """The values the calls added to ``secret``, oldest first."""
    return [call["stdin"] for call in calls if call["argv"][:4] == ["secrets", "versions", "add", secret]]


def test_execute_runs_every_step_in_order(cloud: dict[str, str], secret_manager: FakeSecretManager,
                                          dialogflow: FakeOperatorApis, tmp_path: Path) -> None:
    """Every gcloud command in plan order with captured values filled in; the secrets stored; files rendered."""
    result = manage("deploy_plan", *FLAGS, "--execute", "--work-dir", str(tmp_path / "work"), env=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    assert [call["argv"] for call in calls] == [argv for _, argv in expected_gcloud_calls()]
    (value,) = secret_manager.secrets[(PROJECT, "aa-jwt-secret")]
    assert value not in result.stdout + result.stderr
    # Django's secret key: 64 random URL-safe characters, generated on the way into Secret Manager, not shown.
    (django_key,) = stored(calls, EXECUTE_OPTIONS.django_secret)
    assert len(django_key) == 64 and set(django_key) <= URL_SAFE
    assert django_key not in result.stdout + result.stderr
    profile = dialogflow.profiles[f"projects/{PROJECT}/locations/global/conversationProfiles/CP-1"]
    assert profile["newMessageEventNotificationConfig"] == {
        "topic": f"projects/{PROJECT}/topics/aa-new-message-topic", "messageFormat": "JSON"}
    replaced = {call["argv"][3]: yaml.safe_load(call["file"]) for call in calls if "replace" in call["argv"]}
    for service in replaced.values():
        assert env_of(service)["REDISHOST"] == fake_gcloud.REDIS_HOST
        assert env_of(service)["REDISPORT"] == fake_gcloud.REDIS_PORT
    # The AUTH string and the CA went from Memorystore into Secret Manager through a pipe, not the output.
    piped = {call["argv"][3]: call["stdin"] for call in calls if "stdin" in call and "redis" in call["argv"][3]}
    assert piped == {"aa-redis-auth": fake_gcloud.REDIS_AUTH_STRING + "\n", "aa-redis-ca": fake_gcloud.REDIS_SERVER_CA + "\n"}
    assert fake_gcloud.REDIS_AUTH_STRING not in result.stdout + result.stderr
    build = next(call for call in calls if call["argv"][:2] == ["builds", "submit"])
    assert Path(build["cwd"]) == Path(plan.DEPLOY_DIRECTORY).parent


def test_execute_with_tutorial_runtime_roles_runs_the_bindings_it_prints(cloud: dict[str, str],
                                                                        tmp_path: Path) -> None:
    """The flag reaches --execute: the tutorial plan's calls in order, and its project bindings are the printed ones."""
    options = dataclasses.replace(EXECUTE_OPTIONS, tutorial_runtime_roles=True)
    printed = manage("deploy_plan", *FLAGS, "--tutorial-runtime-roles")
    assert printed.returncode == 0, printed.stderr
    result = manage("deploy_plan", *FLAGS, "--tutorial-runtime-roles", "--execute", "--work-dir",
                    str(tmp_path / "work"), env=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [call["argv"] for call in fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))]
    assert calls == [argv for _, argv in expected_gcloud_calls(options)]
    executed = [argv for argv in calls if argv[:2] == ["projects", "add-iam-policy-binding"]]
    assert executed == [shlex.split(line)[1:] for line in printed.stdout.splitlines()
                        if line.startswith("gcloud projects add-iam-policy-binding ")]
    granted = {(flag(tuple(argv), "member"), flag(tuple(argv), "role")) for argv in executed}
    assert {(member, role) for member in (CONNECTOR_MEMBER, INTERCEPTOR_MEMBER)
            for role in TUTORIAL_EXTRA_ROLES} <= granted


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
    steps = plan.build_plan(Options(project=PROJECT, region=REGION))
    lookups = [argv for number, argv in expected if number < failing_step and steps[number - 1].capture]
    assert [call["argv"] for call in fake_gcloud.calls(log)] == lookups + [
        argv for number, argv in expected if number >= failing_step]


def test_execute_continues_past_a_resource_that_already_exists(cloud: dict[str, str]) -> None:
    """A create step whose resource exists is done, not a failure; any other step's refusal still stops."""
    expected = expected_gcloud_calls()
    steps = plan.build_plan(Options(project=PROJECT, region=REGION))
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


# --- --execute with the admin database ----------------------------------------------------------


def database_secrets(calls: list[dict[str, Any]]) -> tuple[str, str, dict[str, Any]]:
    """(the database password, the operator's password, the DATABASE_URL parsed) the calls stored."""
    (password,) = stored(calls, ADMIN_OPTIONS.database_password_secret)
    (operator_password,) = stored(calls, ADMIN_OPTIONS.superuser_password_secret)
    (url,) = stored(calls, ADMIN_OPTIONS.database_url_secret)
    return password, operator_password, env.database(url, sqlite_path="unused")


def test_execute_with_the_admin_database(cloud: dict[str, str], tmp_path: Path) -> None:
    """Generated passwords go into Secret Manager and the user, the URL carries the stored one, nothing is shown."""
    result = manage("deploy_plan", *ADMIN_FLAGS, "--execute", "--work-dir", str(tmp_path / "work"), env=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    password, operator_password, url = database_secrets(calls)
    assert [call["argv"] for call in calls] == [
        argv for _, argv in expected_gcloud_calls(ADMIN_OPTIONS, values={"DATABASE_PASSWORD": password})]
    (user,) = [call["argv"] for call in calls if call["argv"][:3] == ["sql", "users", "create"]]
    assert f"--password={password}" in user
    assert (url["PASSWORD"], url["USER"], url["HOST"]) == (
        password, ADMIN_OPTIONS.database_user, f"/cloudsql/{ADMIN_OPTIONS.database_connection_name}")
    assert len(password) == 43 and len(operator_password) == 24 and set(password + operator_password) <= URL_SAFE
    (django_key,) = stored(calls, ADMIN_OPTIONS.django_secret)
    for secret in (password, operator_password, django_key):
        assert secret not in result.stdout + result.stderr
    (connector,) = [yaml.safe_load(call["file"]) for call in calls if "ui-connector.service.yaml" in call["argv"]]
    assert secret_env_of(connector)["DATABASE_URL"] == (ADMIN_OPTIONS.database_url_secret, "latest")
    # The operator is told where the first password is, not what it is.
    assert f"--secret={ADMIN_OPTIONS.superuser_password_secret}" in result.stdout.splitlines()[-2]


def test_a_rerun_keeps_the_generated_secrets(cloud: dict[str, str]) -> None:
    """Secrets with a version are not generated again: same sessions key, and the URL built from the kept password."""
    kept = {secret: f"kept-value-of-{secret}-0123456789" for secret in GENERATED_SECRETS}
    result = manage("deploy_plan", *ADMIN_FLAGS, "--execute", env={**cloud, "FAKE_GCLOUD_SECRETS": json.dumps(kept)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("has a version already; kept") == len(GENERATED_SECRETS)
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    password = kept[ADMIN_OPTIONS.database_password_secret]
    assert [call["argv"] for call in calls] == [argv for _, argv in expected_gcloud_calls(
        ADMIN_OPTIONS, values={"DATABASE_PASSWORD": password}, kept=GENERATED_SECRETS)]
    assert all(stored(calls, secret) == [] for secret in GENERATED_SECRETS)
    (url,) = stored(calls, ADMIN_OPTIONS.database_url_secret)
    assert env.database(url, sqlite_path="unused")["PASSWORD"] == password
    assert not [value for value in kept.values() if value in result.stdout + result.stderr]


def test_a_rerun_keeps_the_jwt_signing_secret(cloud: dict[str, str], secret_manager: FakeSecretManager) -> None:
    """The signing secret has a version: no new one, which would end every desktop's token at the next revision."""
    value = "kept-signing-secret-0123456789-0123456789-0123456789-0123456789"
    secret_manager.add(PROJECT, EXECUTE_OPTIONS.jwt_secret, value)
    result = manage("deploy_plan", *FLAGS, "--execute",
                    env={**cloud, "FAKE_GCLOUD_SECRETS": json.dumps({EXECUTE_OPTIONS.jwt_secret: value})})
    assert result.returncode == 0, result.stdout + result.stderr
    assert secret_manager.secrets[(PROJECT, EXECUTE_OPTIONS.jwt_secret)] == [value]
    assert value not in result.stdout + result.stderr


def test_resuming_after_the_database_user_failed_uses_the_stored_password(cloud: dict[str, str]) -> None:
    """The password is read back from Secret Manager on resume, not generated again: user and URL still agree."""
    expected = expected_gcloud_calls(ADMIN_OPTIONS)
    failing_call = 1 + next(index for index, (_, argv) in enumerate(expected) if argv[:3] == ["sql", "users", "create"])
    failing_step, _ = expected[failing_call - 1]
    log = Path(cloud["FAKE_GCLOUD_LOG"])
    failed = manage("deploy_plan", *ADMIN_FLAGS, "--execute", env={**cloud, "FAKE_GCLOUD_FAIL_AT": str(failing_call)})
    assert_clean_failure(failed, mentions=f"step {failing_step} (Database user")
    first = fake_gcloud.calls(log)
    (password,) = stored(first, ADMIN_OPTIONS.database_password_secret)
    assert password not in failed.stdout + failed.stderr
    # The log stays: it is the fake Secret Manager's state between the two runs.
    resumed = manage("deploy_plan", *ADMIN_FLAGS, "--execute", "--from-step", str(failing_step), env=cloud)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    later = fake_gcloud.calls(log)[len(first):]
    assert stored(later, ADMIN_OPTIONS.database_password_secret) == []
    (user,) = [call["argv"] for call in later if call["argv"][:3] == ["sql", "users", "create"]]
    assert f"--password={password}" in user
    (url,) = stored(later, ADMIN_OPTIONS.database_url_secret)
    assert env.database(url, sqlite_path="unused")["PASSWORD"] == password


def test_the_printed_plan_run_by_bash_makes_the_calls_execute_makes(cloud: dict[str, str], tmp_path: Path) -> None:
    """The script and --execute are one plan: bash runs the printed admin plan against the same fakes."""
    printed = manage("deploy_plan", *ADMIN_FLAGS, env=cloud)
    assert printed.returncode == 0, printed.stderr
    work = tmp_path / "work"
    work.mkdir()
    (work / "manage.py").symlink_to(Path(plan.DEPLOY_DIRECTORY).parent / "manage.py")
    python = Path(cloud["PATH"].split(os.pathsep)[0]) / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    result = subprocess.run(["bash", "-c", printed.stdout], cwd=work, env=operator_environment(cloud),
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    password, operator_password, url = database_secrets(calls)
    assert [call["argv"] for call in calls] == [argv for _, argv in expected_gcloud_calls(
        ADMIN_OPTIONS, values={"DATABASE_PASSWORD": password}, script=True)]
    assert url["PASSWORD"] == password
    for secret in (password, operator_password, *stored(calls, ADMIN_OPTIONS.django_secret)):
        assert secret not in printed.stdout + result.stdout + result.stderr
    (connector,) = [yaml.safe_load(call["file"]) for call in calls if "ui-connector.service.yaml" in call["argv"]]
    assert env_of(connector)["REDISHOST"] == fake_gcloud.REDIS_HOST


def test_the_deployment_guide_shows_what_the_command_prints() -> None:
    """The deployment guide's example command, run, prints each block of the guide's excerpt of its output."""
    text = (Path(plan.DEPLOY_DIRECTORY).parent / "docs" / "deploying.md").read_text(encoding="utf-8")
    # The guide runs manage.py with the repository's virtualenv (.venv/bin/python) or the image's python.
    command = re.search(r"```sh\n(?:\.venv/bin/)?(python manage\.py deploy_plan .*?) > deploy\.sh\n```", text,
                        re.DOTALL)[1]
    arguments = shlex.split(command.replace("\\\n", " "))[3:]
    assert "--admin-database" in arguments
    excerpt = re.search(r"<!-- deploy_plan output: admin .*?-->\n```sh\n(.*?)```", text, re.DOTALL)[1]
    printed = manage("deploy_plan", *arguments)
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr  # the example is a plan that can work
    for block in excerpt.split("\n# ...\n"):
        assert block.strip("\n") in printed.stdout, block


# --- plans that cannot work, and re-running the printed script -----------------------------------


# Only what every plan needs: no identity provider, no allowed origins, no conversation profile.
BARE_FLAGS = ("--project", PROJECT, "--region", REGION)
# Each problem of the bare plan, and the flag that fixes it.
BARE_PROBLEMS = (("no identity provider", "--auth-option"), ("no allowed browser origins", "--allowed-origins"),
                 ("no conversation profile", "--conversation-profile"))


@pytest.mark.parametrize("fixes", [(), ("--auth-option", "GenesysCloud", "--allowed-origins",
                                         "https://apps.usw2.pure.cloud")])
def test_execute_refuses_a_plan_that_cannot_work_before_the_first_step(cloud: dict[str, str],
                                                                      fixes: tuple[str, ...]) -> None:
    """Every problem listed with the flag that fixes it, and not one gcloud call made."""
    result = manage("deploy_plan", *BARE_FLAGS, *fixes, "--execute", env={**cloud, "AUTH_OPTION": "",
                                                                          "CORS_ALLOWED_ORIGINS": ""})
    assert_clean_failure(result, mentions="cannot work")
    for problem, fix in BARE_PROBLEMS:
        assert (problem in result.stderr and fix in result.stderr) == (fix not in fixes), (problem, result.stderr)
    assert fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"])) == []


@pytest.mark.parametrize("flag_name", ["--auth-option", "--app-auth-option"])
def test_execute_refuses_a_provider_the_connector_does_not_know(cloud: dict[str, str], flag_name: str) -> None:
    """A misspelt provider is refused, where the connector would not start; a dotted path (a class of one's own)
    is the operator's to vouch for."""
    result = manage("deploy_plan", *FLAGS, flag_name, "Salesfroce", "--execute", env=cloud)
    assert_clean_failure(result, mentions="Salesfroce")
    assert "is not an identity provider" in result.stderr and flag_name in result.stderr
    assert fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"])) == []
    printed = manage("deploy_plan", *FLAGS, flag_name, "acme.providers.SsoProvider", env=cloud)
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr


def test_execute_refuses_the_placeholder_profile_id(cloud: dict[str, str]) -> None:
    """PROFILE_ID, as the deployment guide's example once had it, is not a profile."""
    flags = [*FLAGS[:-1], plan.PROFILE_PLACEHOLDER]
    result = manage("deploy_plan", *flags, "--execute", env=cloud)
    assert_clean_failure(result, mentions="no conversation profile")
    assert "no identity provider" not in result.stderr
    assert fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"])) == []


def test_a_printed_plan_that_cannot_work_warns_and_refuses_to_run(cloud: dict[str, str], tmp_path: Path) -> None:
    """The plan is printed (exit 0), the problems on stderr and in comments at its top; bash stops before gcloud."""
    printed = manage("deploy_plan", *BARE_FLAGS, env={**cloud, "AUTH_OPTION": "", "CORS_ALLOWED_ORIGINS": ""})
    assert printed.returncode == 0, printed.stderr
    head = printed.stdout.split("set -euo pipefail\n")[0]
    for problem, fix in BARE_PROBLEMS:
        assert problem in printed.stderr and fix in printed.stderr
        assert re.search(rf"^# - {problem}.*{fix}", head, re.MULTILINE), head
    assert "# 1. Enable the APIs" in printed.stdout
    result = subprocess.run(["bash", "-c", printed.stdout], cwd=tmp_path, env=operator_environment(cloud),
                            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode != 0
    assert all(problem in result.stderr for problem, _ in BARE_PROBLEMS), result.stderr
    assert fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"])) == []


def test_a_plan_that_can_work_prints_no_warning() -> None:
    printed = manage("deploy_plan", *FLAGS)
    assert printed.returncode == 0 and printed.stderr == "", printed.stderr
    assert "cannot work" not in printed.stdout and "NOT_READY" not in printed.stdout


@pytest.mark.parametrize("redis_cluster", [False, True])
def test_every_create_the_executor_may_find_done_has_the_scripts_describe(redis_cluster: bool) -> None:
    """The script's guards cover the steps --execute treats as "already exists", each a describe of the same
    command group naming the created resource."""
    steps = plan.build_plan(dataclasses.replace(ADMIN_OPTIONS, redis_cluster=redis_cluster))
    assert [step.title for step in steps if step.exists_ok] == [step.title for step in steps if step.exists_if]
    for step in steps:
        if step.exists_ok:
            at = step.argv.index("create")
            assert step.exists_if[:at + 1] == (*step.argv[:at], "describe")
            assert step.exists_if[at + 1].split("@")[0] == step.argv[at + 1]
            assert step.exists_if[-2:] == ("--project", PROJECT)


def run_printed(script: str, cloud: dict[str, str], work: Path) -> subprocess.CompletedProcess[str]:
    """``script`` run by bash in ``work`` (where manage.py is found), its ``python`` this interpreter."""
    if not (work / "manage.py").exists():
        work.mkdir(exist_ok=True)
        (work / "manage.py").symlink_to(Path(plan.DEPLOY_DIRECTORY).parent / "manage.py")
        python = Path(cloud["PATH"].split(os.pathsep)[0]) / "python"
        python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        python.chmod(0o755)
    return subprocess.run(["bash", "-c", script], cwd=work, env=operator_environment(cloud),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def test_the_printed_script_run_again_creates_nothing(cloud: dict[str, str], tmp_path: Path) -> None:
    """Run twice (bash, set -e) against a gcloud that says ALREADY_EXISTS to a second create: the first run creates
    what --execute may find done, the second run none of it, and succeeds."""
    printed = manage("deploy_plan", *ADMIN_FLAGS, env=cloud)
    assert printed.returncode == 0, printed.stderr
    log = Path(cloud["FAKE_GCLOUD_LOG"])
    first = run_printed(printed.stdout, cloud, tmp_path / "work")
    assert first.returncode == 0, first.stdout + first.stderr
    creates = [call["argv"] for call in fake_gcloud.calls(log) if "create" in call["argv"]]
    password = next(call["stdin"] for call in fake_gcloud.calls(log)
                    if call["argv"][:4] == ["secrets", "versions", "add", ADMIN_OPTIONS.database_password_secret])
    steps = plan.build_plan(ADMIN_OPTIONS)
    expected = [argv for number, argv in expected_gcloud_calls(ADMIN_OPTIONS, values={"DATABASE_PASSWORD": password})
                if steps[number - 1].exists_ok]
    assert creates == expected
    calls_before = len(fake_gcloud.calls(log))
    second = run_printed(printed.stdout, cloud, tmp_path / "work")
    assert second.returncode == 0, second.stdout + second.stderr
    again = fake_gcloud.calls(log)[calls_before:]
    assert [call["argv"] for call in again if "create" in call["argv"]] == []
    assert not [call for call in again if call["failed"]]



# --- --redis-cluster: Memorystore for Redis Cluster ------------------------------------------------

CLUSTER_FLAGS = (*FLAGS, "--redis-cluster", "--shard-count", "5", "--replica-count", "2")
CLUSTER_OPTIONS = dataclasses.replace(EXECUTE_OPTIONS, redis_cluster=True, redis_shard_count=5, redis_replica_count=2)
CLUSTER_VALUES = {"REDIS_HOST": fake_gcloud.REDIS_CLUSTER_HOST, "REDIS_PORT": fake_gcloud.REDIS_CLUSTER_PORT}


def test_the_cluster_plan_makes_a_connection_policy_then_the_cluster_and_points_both_services_at_it() -> None:
    steps = plan.build_plan(dataclasses.replace(OPTIONS, redis_cluster=True))
    assert commands(steps, "gcloud", "redis", "instances") == []
    (enable,) = commands(steps, "gcloud", "services", "enable")
    assert {"networkconnectivity.googleapis.com", "serviceconsumermanagement.googleapis.com"} <= set(enable)
    assert "roles/compute.networkAdmin" in [flag(argv, "role") for argv in commands(
        steps, "gcloud", "projects", "add-iam-policy-binding") if flag(argv, "member") == "user:ops@acme.example"]
    # The policy first: the cluster's creation fails without one for its network, region and service class.
    policy_at = index_of(steps, "gcloud", "network-connectivity", "service-connection-policies", "create")
    cluster_at = index_of(steps, "gcloud", "redis", "clusters", "create")
    assert policy_at < cluster_at
    policy, cluster = steps[policy_at].argv, steps[cluster_at].argv
    assert flag(policy, "service-class") == "gcp-memorystore-redis"
    assert (flag(policy, "network"), flag(policy, "region")) == ("default", REGION)
    assert flag(policy, "subnets").endswith(f"/projects/{PROJECT}/regions/{REGION}/subnetworks/default")
    assert flag(cluster, "network") == f"projects/{PROJECT}/global/networks/default"
    assert (flag(cluster, "shard-count"), flag(cluster, "replica-count")) == ("3", "1")
    assert flag(cluster, "transit-encryption-mode") == "server-authentication"
    assert flag(cluster, "auth-mode") == "iam-auth"  # each connection signs in with its account's token
    assert (flag(cluster, "persistence-mode"), flag(cluster, "rdb-snapshot-period")) == ("rdb", "1h")
    captured = {step.capture: step.argv for step in steps if step.capture in ("REDIS_HOST", "REDIS_PORT")}
    assert captured["REDIS_HOST"][:5] == ("gcloud", "redis", "clusters", "describe", "aa-redis-cluster")
    assert "--format=value(discoveryEndpoints[0].address)" in captured["REDIS_HOST"]
    assert "--format=value(discoveryEndpoints[0].port)" in captured["REDIS_PORT"]
    filled = {step.argv[4]: step.stdin_from for step in steps if step.stdin_from}
    assert OPTIONS.redis_auth_secret not in filled  # no AUTH string: a cluster has none
    assert filled[OPTIONS.redis_ca_secret][3] == "get-cluster-certificate-authority"
    accessors = {(argv[3], flag(argv, "member"))
                 for argv in commands(steps, "gcloud", "secrets", "add-iam-policy-binding")}
    for name, service in service_files(steps).items():
        template = service["spec"]["template"]["spec"]
        environment = env_of(service)
        assert environment["REDIS_CLUSTER"] == environment["REDIS_IAM_AUTH"] == "true", name
        # The runtime account may connect (IAM authentication), and only with the cluster.
        member = f"serviceAccount:{template['serviceAccountName']}"
        assert "roles/redis.dbConnectionUser" in project_roles(steps)[member]
        assert (environment["REDISHOST"], environment["REDISPORT"]) == ("${REDIS_HOST}", "${REDIS_PORT}")
        assert "REDIS_AUTH_STRING_FILE" not in environment
        secrets = {volume["name"]: volume["secret"]["secretName"] for volume in template["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in template["containers"][0]["volumeMounts"]}
        assert OPTIONS.redis_auth_secret not in secrets.values() and "/redis-auth" not in mounts.values()
        assert environment["REDIS_TLS_CA_FILE"].startswith(mounts["redis-ca"] + "/")
        assert secrets["redis-ca"] == OPTIONS.redis_ca_secret
        assert (OPTIONS.redis_ca_secret, f"serviceAccount:{template['serviceAccountName']}") in accessors
        # The same VPC connector reaches the cluster's endpoints (private addresses in --network).
        assert service["spec"]["template"]["metadata"]["annotations"][
            "run.googleapis.com/vpc-access-egress"] == "private-ranges-only"
    # Without the flag: the instance, its AUTH string, and no REDIS_CLUSTER.
    standalone = plan.build_plan(OPTIONS)
    for service in service_files(standalone).values():
        assert "REDIS_CLUSTER" not in env_of(service) and "REDIS_IAM_AUTH" not in env_of(service)
        assert "REDIS_AUTH_STRING_FILE" in env_of(service)
    assert not any("roles/redis.dbConnectionUser" in roles for roles in project_roles(standalone).values())


def test_execute_the_cluster_plan(cloud: dict[str, str], tmp_path: Path) -> None:
    """Every gcloud call in order; the CA chain piped into Secret Manager; both services told the discovery
    endpoint and REDIS_CLUSTER=true, and given settings the services accept."""
    result = manage("deploy_plan", *CLUSTER_FLAGS, "--execute", "--work-dir", str(tmp_path / "work"), env=cloud)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = fake_gcloud.calls(Path(cloud["FAKE_GCLOUD_LOG"]))
    assert [call["argv"] for call in calls] == [argv for _, argv in expected_gcloud_calls(
        CLUSTER_OPTIONS, values=CLUSTER_VALUES)]
    (cluster,) = [call["argv"] for call in calls if call["argv"][:3] == ["redis", "clusters", "create"]]
    assert {"--shard-count=5", "--replica-count=2"} <= set(cluster)
    piped = {call["argv"][3]: call["stdin"] for call in calls if "stdin" in call and "redis" in call["argv"][3]}
    assert piped == {"aa-redis-ca": fake_gcloud.REDIS_CLUSTER_CA + "\n"}
    replaced = {call["argv"][3]: yaml.safe_load(call["file"]) for call in calls if "replace" in call["argv"]}
    assert len(replaced) == 2
    for service in replaced.values():
        environment = env_of(service)
        assert (environment["REDISHOST"], environment["REDISPORT"]) == (fake_gcloud.REDIS_CLUSTER_HOST,
                                                                        fake_gcloud.REDIS_CLUSTER_PORT)
        assert environment["REDIS_CLUSTER"] == "true"


def test_the_printed_cluster_plan_run_twice_by_bash_creates_once(cloud: dict[str, str], tmp_path: Path) -> None:
    printed = manage("deploy_plan", *CLUSTER_FLAGS, env=cloud)
    assert printed.returncode == 0, printed.stderr
    log = Path(cloud["FAKE_GCLOUD_LOG"])
    first = run_printed(printed.stdout, cloud, tmp_path / "work")
    assert first.returncode == 0, first.stdout + first.stderr
    assert [call["argv"] for call in fake_gcloud.calls(log)] == [argv for _, argv in expected_gcloud_calls(
        CLUSTER_OPTIONS, values=CLUSTER_VALUES, script=True)]
    calls_before = len(fake_gcloud.calls(log))
    second = run_printed(printed.stdout, cloud, tmp_path / "work")
    assert second.returncode == 0, second.stdout + second.stderr
    again = fake_gcloud.calls(log)[calls_before:]
    assert [call["argv"] for call in again if "create" in call["argv"]] == []
