"""The deployment tutorial as data: every step, in order, filled in from settings and flags.

``manage.py deploy_plan`` prints these steps as a shell script or runs them.
Values only known once an earlier step ran (the Redis address, the project
number, the interceptor's URL) are captured from that step's output and
referenced as ``${NAME}``; the Cloud Run services come from the templates in
``deploy/`` so the plan and the files cannot disagree. Secrets the plan makes
(Django's secret key, the admin database's passwords) are generated on the
way into Secret Manager, only when the secret has no version yet, so a re-run
keeps them. Pure: nothing here runs a command or reads the network.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from deployment import sizing
from deployment.sizing import ServiceSize
from events.kinds import EventKind

DEPLOY_DIRECTORY = Path(__file__).resolve().parent.parent / "deploy"
CONNECTOR_TEMPLATE = DEPLOY_DIRECTORY / "ui-connector.yaml"
INTERCEPTOR_TEMPLATE = DEPLOY_DIRECTORY / "cloud-pubsub-interceptor.yaml"

APIS = (
    "dialogflow.googleapis.com", "pubsub.googleapis.com", "run.googleapis.com", "secretmanager.googleapis.com",
    "compute.googleapis.com", "vpcaccess.googleapis.com", "redis.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "iam.googleapis.com",
)
# What Google's tutorial asks of the human who deploys (its deploy.sh prerequisites).
ADMINISTRATOR_ROLES = (
    "roles/resourcemanager.projectIamAdmin", "roles/serviceusage.serviceUsageAdmin",
    "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser", "roles/pubsub.admin",
    "roles/secretmanager.admin", "roles/cloudbuild.builds.editor", "roles/artifactregistry.admin",
    "roles/storage.admin", "roles/run.admin", "roles/redis.admin", "roles/vpcaccess.admin",
    "roles/dialogflow.admin",
)
# With --admin-database cloudsql: the APIs and the administrator's role for Cloud SQL.
ADMIN_DATABASE_APIS = ("sqladmin.googleapis.com",)
ADMIN_DATABASE_ADMINISTRATOR_ROLES = ("roles/cloudsql.admin",)
# Cloud Run's Cloud SQL connection (the Auth Proxy behind /cloudsql/) authorises the runtime account by IAM.
# Project-wide: Cloud SQL has no per-instance IAM policy.
ADMIN_DATABASE_CONNECTOR_ROLES = ("roles/cloudsql.client",)
ADMIN_DATABASES = ("", "cloudsql")
POSTGRES_VERSION = "POSTGRES_15"
# A new random value on stdin, without a line break (an environment variable takes the secret as it is stored).
_GENERATE = 'import secrets; print(secrets.token_urlsafe({}), end="")'
# Least privilege for the runtime accounts. The sample also grants both roles/redis.editor,
# roles/vpcaccess.user and roles/compute.viewer: those manage Memorystore and connectors through
# the API, which neither service does (Redis is reached over the VPC connector, without IAM; the
# connector is attached by the deploying account and Cloud Run's service agent).
CONNECTOR_PROJECT_ROLES = ("roles/dialogflow.agentAssistClient",)  # the Dialogflow proxy's calls
INTERCEPTOR_PROJECT_ROLES: tuple[str, ...] = ()
# With --tutorial-runtime-roles, for an operator who must match the sample role for role (an audit
# checklist): the project roles its deploy.sh and terraform/variables.tf give both runtime accounts
# beyond ours, in its order. Unused by the services; granted only when asked.
TUTORIAL_RUNTIME_ROLES = ("roles/redis.editor", "roles/vpcaccess.user", "roles/compute.viewer")
# Memorystore's shortest RDB snapshot interval (1h, 6h, 12h or 24h): what a restore from a snapshot can lose.
REDIS_SNAPSHOT_PERIOD = "1h"
# The history appends through a Redis function and publishes with SPUBLISH: Redis 7 at least.
REDIS_VERSION = "redis_7_2"
# With --redis-cluster: Memorystore for Redis Cluster reaches the VPC through Private Service Connect, set up by a
# service connection policy (Network Connectivity), which the administrator creates with Compute Network Admin.
REDIS_CLUSTER_APIS = ("networkconnectivity.googleapis.com", "serviceconsumermanagement.googleapis.com")
REDIS_CLUSTER_ADMINISTRATOR_ROLES = ("roles/compute.networkAdmin",)
# The cluster authenticates connections by IAM (REDIS_IAM_AUTH): both runtime accounts may connect to it.
REDIS_CLUSTER_RUNTIME_ROLES = ("roles/redis.dbConnectionUser",)
REDIS_CLUSTER_SERVICE_CLASS = "gcp-memorystore-redis"
# Memorystore for Redis Cluster's bounds (gcloud redis clusters create --shard-count, --replica-count).
MAX_REDIS_SHARDS, MAX_REDIS_REPLICAS = 250, 2
# Per event kind: (topic, subscription), the names of Google's tutorial plus the recognition results.
PUBSUB_NAMES = {
    "human-agent-assistant-event": ("aa-new-suggestion-topic", "aa-new-suggestion-sub"),
    "new-message-event": ("aa-new-message-topic", "aa-new-message-sub"),
    "conversation-lifecycle-event": ("aa-conversation-event-topic", "aa-conversation-event-sub"),
    "new-recognition-result-notification-event": ("aa-new-recognition-result-topic", "aa-new-recognition-result-sub"),
}
# Settings each identity provider reads (aa_site/settings.py); secrets such as FIVE9_TRUST_TOKEN are not copied.
PROVIDER_SETTINGS = {
    "Salesforce": ("SALESFORCE_DOMAIN", "SALESFORCE_ORGANIZATION_ID"),
    "SalesforceLWC": ("SALESFORCE_DOMAIN", "SALESFORCE_ORGANIZATION_ID"),
    "GenesysCloud": ("GENESYS_CLOUD_REGION",),
    "Twilio": ("TWILIO_FLEX_ENVIRONMENT",),
    "Five9": (),
}
APP_PROVIDER_SETTINGS = {"Twilio": ("TWILIO_ACCOUNT_SID",)}
# The connector's built-in provider names (auth_providers.registry), which it matches in any case.
BUILT_IN_PROVIDERS = (*PROVIDER_SETTINGS, "Skip")
# Without these the connector refuses to start (auth_providers' settings checks).
REQUIRED_PROVIDER_SETTINGS = {
    "Salesforce": ("SALESFORCE_ORGANIZATION_ID",),
    "SalesforceLWC": ("SALESFORCE_ORGANIZATION_ID",),
    "Twilio": ("TWILIO_FLEX_ENVIRONMENT",),
}
REQUIRED_APP_PROVIDER_SETTINGS = {"Twilio": ("TWILIO_ACCOUNT_SID",)}
CONVERSATION_PROFILE_COMMAND = "configure_conversation_profile"
# Printed in the plan when no conversation profile was given: a plan holding it is not ready to run.
PROFILE_PLACEHOLDER = "PROFILE_ID"
# Where the connector's template mounts the signing secret: the sample's path, JWT_SECRET_KEY_PATH's default.
JWT_SECRET_MOUNT = "/secret/jwt_secret_key"
# For an integrator moving from Google's sample: printed at the head of the plan (docs/migration.md says more).
MIGRATION_NOTES = (
    "Moving from Google's sample (docs/migration.md):",
    "- Desktops and UI modules need no change: the same paths, Socket.IO events and payloads. They register",
    "  again at the new connector (tokens signed by the sample are not accepted).",
    "- The sample's settings keep their names. GENESYS_CLOUD_REGION is read as GENESYS_CLOUD_ENVIRONMENT is,",
    f"  and JWT_SECRET_KEY_PATH (earlier JWT_SECRET_KEY_FILE) names the secret's file, {JWT_SECRET_MOUNT},",
    "  where this plan mounts it; when both names of one setting are set, the new one wins and start-up warns.",
    "- The services come from deploy/*.yaml (gcloud run services replace), not gcloud run deploy flags.",
    "- The services, their accounts, the invoker and three of the push subscriptions have the sample's default",
    "  names: in the sample's project this plan replaces its services in place and keeps those subscriptions",
    "  (pushing to the same interceptor URL). To run beside the sample instead, give --connector-service,",
    "  --interceptor-service and --subscription-prefix, and run with --execute (it goes on past what exists).",
    "- Redis is a new instance: nothing is copied from the sample's.",
)
# A value goes into a shell script and a YAML file: refuse what either would reinterpret.
_UNSAFE = re.compile(r"[\"$`\\\n\r]")
_REFERENCE = re.compile(r"\$\{([A-Z_]+)\}")
_LIST_LINE = re.compile(r"^(?P<indent>[ ]*)# \$\{(?P<name>[A-Z_]+)\}\n", re.MULTILINE)
_SECTION = re.compile(r"^[ ]*# \[if (?P<name>[a-z0-9-]+)\]\n(?P<body>.*?)^[ ]*# \[end (?P=name)\]\n",
                      re.MULTILINE | re.DOTALL)
# Names that go into a postgres:// URL, gcloud's comma-separated --args, or Cloud SQL as they are.
_SQL_INSTANCE = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_SQL_TIER = re.compile(r"^db-[a-z0-9-]+$")
_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_USERNAME = re.compile(r"^[\w.@+-]{1,150}$", re.ASCII)
# A Cloud Run service name that is also a service account id (the plan names each runtime account after its service).
_SERVICE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_SUBSCRIPTION_PREFIX = re.compile(r"^([a-z][a-z0-9-]{0,39})?$")
_EMAIL = re.compile(r"^([^@\s,]+@[^@\s,]+)?$")
# Set by the templates themselves; --env may not override them.
TEMPLATE_VARIABLES = frozenset({"SERVICE_ROLE", "GCP_PROJECT_ID", "SERVICE_REGION", "REDISHOST", "REDISPORT",
                                "REDIS_TLS_CA_FILE", "REDIS_AUTH_STRING_FILE", "PUSH_AUTH_SERVICE_ACCOUNT"})


class PlanError(ValueError):
    """The settings and flags cannot make a plan; the message says which."""


@dataclass(frozen=True)
class Step:
    """One step: a command to run (``argv``), or a file to write (``path`` and ``content``).

    ``capture`` names the variable the command's stdout becomes; ``exists_ok`` means a failure
    saying the resource already exists counts as done (re-running the plan is safe);
    ``manage`` marks a ``manage.py`` command rather than gcloud;
    ``stdin_from`` is a command (gcloud, or python generating a value) whose output this command
    reads on stdin (a pipe), so a value such as the Redis AUTH string goes from one command to the
    next without being printed; ``stdin_text`` is text for stdin instead, ``${NAME}`` references
    filled in; ``skip_if`` is a read-only gcloud command whose success means the step is done
    already (a secret that has a version keeps it); ``exists_if`` is the ``describe`` of what an
    ``exists_ok`` step creates: the printed script runs the create only when it fails (``--execute``
    reads gcloud's "already exists" instead, as before); ``sensitive`` marks a capture whose value is a
    secret, never shown; a step without a command or file is a ``note`` for the operator.
    """

    title: str
    argv: tuple[str, ...] = ()
    capture: str | None = None
    exists_ok: bool = False
    manage: bool = False
    path: str | None = None
    content: str | None = None
    stdin_from: tuple[str, ...] = ()
    stdin_text: str | None = None
    skip_if: tuple[str, ...] = ()
    exists_if: tuple[str, ...] = ()
    sensitive: bool = False
    note: bool = False


@dataclass(frozen=True)
class Options:
    """Everything the plan depends on (the command fills it from flags and settings)."""

    project: str
    region: str
    admin_account: str = ""
    image: str = ""
    artifact_repository: str = "aa"
    redis_instance: str = "aa-redis"
    redis_size_gb: int = 1
    # Memorystore for Redis Cluster instead of the instance: its shards (primaries) and replicas per shard, and
    # the service connection policy and subnet its endpoints take their addresses from.
    redis_cluster: bool = False
    redis_cluster_name: str = "aa-redis-cluster"
    redis_shard_count: int = 3
    redis_replica_count: int = 1
    redis_connection_policy: str = "aa-redis-policy"
    redis_subnet: str = "default"
    # Secret Manager secrets holding the instance's AUTH string and server CA, mounted into both services.
    redis_auth_secret: str = "aa-redis-auth"
    redis_ca_secret: str = "aa-redis-ca"
    network: str = "default"
    vpc_connector: str = "aa-vpc"
    vpc_range: str = "10.8.0.0/28"
    jwt_secret: str = "aa-jwt-secret"
    # Django's SECRET_KEY (the admin's sessions), set on the connector from Secret Manager.
    django_secret: str = "aa-django-secret-key"
    # "cloudsql": the admin's users and sessions in Cloud SQL for PostgreSQL; "": none (SQLite per instance).
    admin_database: str = ""
    database_instance: str = "aa-admin-db"
    database_tier: str = "db-f1-micro"
    database_name: str = "aa_admin"
    database_user: str = "aa_admin"
    database_password_secret: str = "aa-database-password"
    database_url_secret: str = "aa-database-url"
    superuser: str = "admin"
    superuser_email: str = ""
    superuser_password_secret: str = "aa-admin-password"
    # With Five9 as an identity provider: the token Five9's calls present, generated into this secret.
    five9_secret: str = "aa-five9-trust-token"
    migrate_job: str = "aa-admin-migrate"
    superuser_job: str = "aa-admin-superuser"
    auth_option: str = ""
    app_auth_option: str = ""
    provider_settings: dict[str, str] = field(default_factory=dict)
    allowed_origins: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    conversation_profile: str = ""
    min_instances: int = 1
    # Each service's concurrency, CPU, memory, maximum instances and start-up boost: measured defaults
    # (deployment/sizing.py, docs/cloud-run-sizing.md), each overridable by a flag.
    connector_size: ServiceSize = sizing.CONNECTOR
    interceptor_size: ServiceSize = sizing.INTERCEPTOR
    # The sample's default names: in its project the plan replaces its services (other names run beside them).
    connector_service: str = "ui-connector"
    interceptor_service: str = "cloud-pubsub-interceptor"
    # Put before each push subscription's name, so that the plan's subscriptions can sit beside the sample's
    # (three of which have the same names) on the same topics.
    subscription_prefix: str = ""
    invoker_account_name: str = "cloud-run-pubsub-invoker"
    # Also grant both runtime accounts TUTORIAL_RUNTIME_ROLES (Google's sample), beyond least privilege.
    tutorial_runtime_roles: bool = False

    @property
    def uses_five9(self) -> bool:
        """Whether Five9 is one of the identity providers (the connector matches provider names in any case)."""
        return "five9" in (self.auth_option.lower(), self.app_auth_option.lower())

    def account(self, name: str) -> str:
        """The email of service account ``name`` in the project."""
        return f"{name}@{self.project}.iam.gserviceaccount.com"

    @property
    def database_connection_name(self) -> str:
        """The Cloud SQL instance as Cloud Run's Cloud SQL connection names it: ``project:region:instance``."""
        return f"{self.project}:{self.region}:{self.database_instance}"

    @property
    def database_url(self) -> str:
        """The connector's ``DATABASE_URL``: the user, the captured password, the instance's socket directory."""
        socket = quote(f"/cloudsql/{self.database_connection_name}", safe="")
        return f"postgres://{self.database_user}:${{DATABASE_PASSWORD}}@{socket}/{self.database_name}"

    @property
    def image_name(self) -> str:
        """``--image``, else the Artifact Registry image the plan builds."""
        return self.image or f"{self.region}-docker.pkg.dev/{self.project}/{self.artifact_repository}/aa-backend"


def build_plan(options: Options) -> list[Step]:
    """Every step of the tutorial, in order."""
    _validate(options)
    o = options
    p = ("--project", o.project)
    connector_sa = o.account(o.connector_service)
    interceptor_sa = o.account(o.interceptor_service)
    invoker_sa = o.account(o.invoker_account_name)
    admin_database = o.admin_database == "cloudsql"
    steps = [Step("Enable the APIs", ("gcloud", "services", "enable", *APIS,
                                      *(ADMIN_DATABASE_APIS if admin_database else ()),
                                      *(REDIS_CLUSTER_APIS if o.redis_cluster else ()), *p))]
    administrator_roles = (ADMINISTRATOR_ROLES + (ADMIN_DATABASE_ADMINISTRATOR_ROLES if admin_database else ())
                           + (REDIS_CLUSTER_ADMINISTRATOR_ROLES if o.redis_cluster else ()))
    for role in administrator_roles if o.admin_account else ():
        steps.append(Step(f"Administrator {o.admin_account}: {role}", (
            "gcloud", "projects", "add-iam-policy-binding", o.project,
            f"--member=user:{o.admin_account}", f"--role={role}", "--condition=None")))
    for name, description in ((o.connector_service, "UI connector runtime"),
                              (o.interceptor_service, "Pub/Sub interceptor runtime"),
                              (o.invoker_account_name, "Pub/Sub push identity (invokes the interceptor)")):
        steps.append(_create(f"Service account {name}", (
            "gcloud", "iam", "service-accounts", "create", name,
            f"--display-name=Agent Assist integration - {description}", *p), name=o.account(name)))
    tutorial_roles = TUTORIAL_RUNTIME_ROLES if o.tutorial_runtime_roles else ()
    redis_roles = REDIS_CLUSTER_RUNTIME_ROLES if o.redis_cluster else ()
    connector_roles = (tutorial_roles + CONNECTOR_PROJECT_ROLES
                       + (ADMIN_DATABASE_CONNECTOR_ROLES if admin_database else ()) + redis_roles)
    interceptor_roles = tutorial_roles + INTERCEPTOR_PROJECT_ROLES + redis_roles
    for account, roles in ((connector_sa, connector_roles), (interceptor_sa, interceptor_roles)):
        for role in roles:
            steps.append(Step(f"{account}: {role}", (
                "gcloud", "projects", "add-iam-policy-binding", o.project,
                f"--member=serviceAccount:{account}", f"--role={role}", "--condition=None")))
    steps += [
        # Unless it has a version: a new one would end every desktop's token at the services' next revision.
        Step("JWT signing secret (generated unless it has a version, never printed)", (
            "python", "manage.py", "create_jwt_secret", f"--secret={o.jwt_secret}", f"--project={o.project}",
            f"--region={o.region}"), manage=True, skip_if=_has_version(o, o.jwt_secret)),
        # Cloud Run checks at deploy time that the runtime account may read a mounted secret.
        Step(f"{connector_sa} may read the secret", (
            "gcloud", "secrets", "add-iam-policy-binding", o.jwt_secret,
            f"--member=serviceAccount:{connector_sa}", "--role=roles/secretmanager.secretAccessor", *p)),
    ]
    # Always, not only with the admin database: the connector serves the admin in every deployment, and a key
    # random per process (the setting's fallback) signs nothing another instance or the next revision accepts.
    steps += _secret_steps(o, o.django_secret, "Django's secret key (signs the admin's sessions)", (connector_sa,),
                           **_generated(o, o.django_secret, 48))
    if o.uses_five9:
        # Five9 calls present a shared token, not a verifiable identity: the connector needs it, and the operator
        # gives the same token to Five9's side.
        steps += _secret_steps(o, o.five9_secret, "the Five9 trust token", (connector_sa,),
                               **_generated(o, o.five9_secret, 32))
    steps += _redis_cluster_steps(o) if o.redis_cluster else _redis_instance_steps(o)
    steps += [
        _create("Serverless VPC Access connector", (
            "gcloud", "compute", "networks", "vpc-access", "connectors", "create", o.vpc_connector,
            f"--network={o.network}", f"--region={o.region}", f"--range={o.vpc_range}", *p), f"--region={o.region}"),
    ]
    if admin_database:
        steps += _admin_database_steps(o)
    if not o.image:
        steps.append(_create("Artifact Registry repository", (
            "gcloud", "artifacts", "repositories", "create", o.artifact_repository, "--repository-format=docker",
            f"--location={o.region}", *p), f"--location={o.region}"))
    steps.append(Step("Build the image (from the repository root)", (
        "gcloud", "builds", "submit", f"--tag={o.image_name}", *p, ".")))
    if admin_database:
        steps += _admin_database_jobs(o)  # the new revision's tables exist before it serves
    for service, template in ((o.connector_service, CONNECTOR_TEMPLATE), (o.interceptor_service, INTERCEPTOR_TEMPLATE)):
        path = f"{service}.service.yaml"
        steps.append(Step(f"Cloud Run service file {path}", path=path, content=render_service(template, o)))
        steps.append(Step(f"Deploy {service}", ("gcloud", "run", "services", "replace", path,
                                                f"--region={o.region}", *p)))
    steps += [
        # `services replace` sets no IAM: desktops reach the connector without a Google identity.
        Step(f"{o.connector_service} is public", (
            "gcloud", "run", "services", "add-iam-policy-binding", o.connector_service, "--member=allUsers",
            "--role=roles/run.invoker", f"--region={o.region}", *p)),
        Step(f"{invoker_sa} may invoke {o.interceptor_service}", (
            "gcloud", "run", "services", "add-iam-policy-binding", o.interceptor_service,
            f"--member=serviceAccount:{invoker_sa}", "--role=roles/run.invoker", f"--region={o.region}", *p)),
        Step("Project number", ("gcloud", "projects", "describe", o.project, "--format=value(projectNumber)"),
             capture="PROJECT_NUMBER"),
        # Pub/Sub's service agent mints the push's OIDC token as the invoker account.
        Step("Pub/Sub may sign push tokens as the invoker", (
            "gcloud", "iam", "service-accounts", "add-iam-policy-binding", invoker_sa,
            "--member=serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com",
            "--role=roles/iam.serviceAccountTokenCreator", *p)),
    ]
    for kind in EventKind:
        steps.append(_create(f"Topic for {kind}", ("gcloud", "pubsub", "topics", "create", PUBSUB_NAMES[kind][0],
                                                   *p)))
    steps.append(Step("Conversation profile: publish the four notifications to the topics, in JSON", (
        "python", "manage.py", CONVERSATION_PROFILE_COMMAND,
        f"--conversation-profile={o.conversation_profile or PROFILE_PLACEHOLDER}", f"--project={o.project}",
        *(f"--{kind}-topic=projects/{o.project}/topics/{PUBSUB_NAMES[kind][0]}" for kind in EventKind),
        "--message-format=JSON"), manage=True))
    steps.append(Step("Interceptor URL", (
        "gcloud", "run", "services", "describe", o.interceptor_service, f"--region={o.region}",
        "--format=value(status.url)", *p), capture="INTERCEPTOR_URL"))
    for kind in EventKind:
        topic, subscription = PUBSUB_NAMES[kind]
        steps.append(_create(f"Push subscription for {kind}", (
            "gcloud", "pubsub", "subscriptions", "create", o.subscription_prefix + subscription, f"--topic={topic}",
            f"--push-endpoint=${{INTERCEPTOR_URL}}/{kind}", f"--push-auth-service-account={invoker_sa}",
            "--expiration-period=never", *p)))
    if admin_database:
        steps.append(Step(
            f"The admin: log in at the connector's URL + /admin/ as {o.superuser}, with the password `gcloud secrets "
            f"versions access latest --secret={o.superuser_password_secret} --project={o.project}` shows; change "
            "it there after the first login", note=True))
    if o.uses_five9:
        steps.append(Step(
            f"Five9: configure its calls to send `Authorization: Bearer <token>`, the token `gcloud secrets versions "
            f"access latest --secret={o.five9_secret} --project={o.project}` shows", note=True))
    return steps


def _redis_instance_steps(o: Options) -> list[Step]:
    """Memorystore for Redis: the instance, its address, and its AUTH string and server CA into Secret Manager."""
    p = ("--project", o.project)
    readers = (o.account(o.connector_service), o.account(o.interceptor_service))
    steps = [
        # TLS verified against the instance's own CA, and an AUTH string: Memorystore as deployed. Hourly RDB
        # snapshots: an instance that restarts empty loses the de-duplication records, so a Pub/Sub redelivery
        # after it would reach desktops again; restored from a snapshot it loses at most the last hour's.
        _create("Memorystore for Redis (in-transit encryption, AUTH, hourly RDB snapshots)", (
            "gcloud", "redis", "instances", "create", o.redis_instance, f"--size={o.redis_size_gb}",
            f"--region={o.region}", f"--network={o.network}", f"--redis-version={REDIS_VERSION}",
            "--transit-encryption-mode=SERVER_AUTHENTICATION",
            "--enable-auth", "--persistence-mode=rdb", f"--rdb-snapshot-period={REDIS_SNAPSHOT_PERIOD}", *p),
            f"--region={o.region}"),
        Step("Redis address", ("gcloud", "redis", "instances", "describe", o.redis_instance, f"--region={o.region}",
                               "--format=value(host)", *p), capture="REDIS_HOST"),
        Step("Redis port (6378 with TLS)", ("gcloud", "redis", "instances", "describe", o.redis_instance,
                                            f"--region={o.region}", "--format=value(port)", *p), capture="REDIS_PORT"),
    ]
    redis_reads = (
        (o.redis_auth_secret, "Redis AUTH string", ("get-auth-string", o.redis_instance, f"--region={o.region}",
                                                    "--format=value(authString)", *p)),
        (o.redis_ca_secret, "Redis server CA", ("describe", o.redis_instance, f"--region={o.region}",
                                                "--format=value(serverCaCerts[0].cert)", *p)),
    )
    for secret, what, read in redis_reads:
        # Both services mount both files.
        steps += _secret_steps(o, secret, f"the {what}", readers,
                               stdin_from=("gcloud", "redis", "instances", *read))
    return steps


def _redis_cluster_steps(o: Options) -> list[Step]:
    """Memorystore for Redis Cluster: the service connection policy its endpoints need, the cluster, its discovery
    endpoint, and its server CA into Secret Manager.

    In-transit encryption as the instance has it. No AUTH string (a cluster has none): IAM authentication, each
    connection signing in with its runtime account's access token (``REDIS_IAM_AUTH``, roles/redis.dbConnectionUser).
    """
    p = ("--project", o.project)
    region = f"--region={o.region}"
    subnet = (f"https://www.googleapis.com/compute/v1/projects/{o.project}/regions/{o.region}/subnetworks/"
              f"{o.redis_subnet}")
    describe = ("gcloud", "redis", "clusters", "describe", o.redis_cluster_name, region)
    steps = [
        _create(f"Service connection policy: Memorystore's endpoints in {o.network}", (
            "gcloud", "network-connectivity", "service-connection-policies", "create", o.redis_connection_policy,
            f"--network={o.network}", region, f"--service-class={REDIS_CLUSTER_SERVICE_CLASS}", f"--subnets={subnet}",
            *p), region),
        _create(f"Memorystore for Redis Cluster ({o.redis_shard_count} shards, {o.redis_replica_count} replica(s) "
                "each; in-transit encryption, IAM authentication, hourly RDB snapshots; takes minutes)", (
            "gcloud", "redis", "clusters", "create", o.redis_cluster_name, region,
            f"--network=projects/{o.project}/global/networks/{o.network}", f"--shard-count={o.redis_shard_count}",
            f"--replica-count={o.redis_replica_count}", "--transit-encryption-mode=server-authentication",
            "--auth-mode=iam-auth", "--persistence-mode=rdb", f"--rdb-snapshot-period={REDIS_SNAPSHOT_PERIOD}", *p),
            region),
        Step("Redis Cluster discovery endpoint", (*describe, "--format=value(discoveryEndpoints[0].address)", *p),
             capture="REDIS_HOST"),
        Step("Redis Cluster discovery port", (*describe, "--format=value(discoveryEndpoints[0].port)", *p),
             capture="REDIS_PORT"),
    ]
    # The whole chain (leaf to root), one certificate a line: the CA file the services verify the nodes with.
    readers = (o.account(o.connector_service), o.account(o.interceptor_service))
    read_ca = ("gcloud", "redis", "clusters", "get-cluster-certificate-authority", o.redis_cluster_name, region,
               "--flatten=managedServerCa.caCerts[].certificates[]",
               "--format=value(managedServerCa.caCerts.certificates)", *p)
    steps += _secret_steps(o, o.redis_ca_secret, "the Redis Cluster server CA", readers, stdin_from=read_ca)
    return steps


def _create(title: str, argv: tuple[str, ...], *scope: str, name: str = "") -> Step:
    """A step creating what may exist already: its ``describe`` is the same command group's, for ``name`` (default
    the created name) in ``scope`` (a region, an instance) and the project."""
    at = argv.index("create")
    project = argv.index("--project")
    return Step(title, argv, exists_ok=True,
                exists_if=(*argv[:at], "describe", name or argv[at + 1], *scope, *argv[project:project + 2]))


def _secret_steps(o: Options, secret: str, what: str, readers: tuple[str, ...], **fill: Any) -> list[Step]:
    """Create ``secret`` when missing, add a version from ``fill`` (a :class:`Step`'s ``stdin_from``,
    ``stdin_text``, ``skip_if``), then let each of ``readers`` read it: Cloud Run checks at deploy time that a
    runtime account may read every secret it mounts or sets."""
    p = ("--project", o.project)
    how = "generated unless it has a version, never printed" if "skip_if" in fill else "piped, never printed"
    steps = [
        _create(f"Secret {secret} for {what}", (
            "gcloud", "secrets", "create", secret, "--replication-policy=user-managed", f"--locations={o.region}",
            *p)),
        Step(f"{what[0].upper()}{what[1:]} into {secret} ({how})", (
            "gcloud", "secrets", "versions", "add", secret, "--data-file=-", *p), **fill),
    ]
    for account in readers:
        steps.append(Step(f"{account} may read {secret}", (
            "gcloud", "secrets", "add-iam-policy-binding", secret, f"--member=serviceAccount:{account}",
            "--role=roles/secretmanager.secretAccessor", *p)))
    return steps


def _generated(o: Options, secret: str, random_bytes: int) -> dict[str, tuple[str, ...]]:
    """A new random value for ``secret``, unless it has a version: a re-run keeps keys and passwords in use."""
    return {"stdin_from": ("python", "-c", _GENERATE.format(random_bytes)), "skip_if": _has_version(o, secret)}


def _has_version(o: Options, secret: str) -> tuple[str, ...]:
    """Succeeds when ``secret`` has a version (a step generating it is done)."""
    return "gcloud", "secrets", "versions", "describe", "latest", f"--secret={secret}", "--project", o.project


def _admin_database_steps(o: Options) -> list[Step]:
    """Cloud SQL for PostgreSQL, its database and user, and the secrets the connector and the jobs read."""
    p = ("--project", o.project)
    instance = f"--instance={o.database_instance}"
    connector_sa = o.account(o.connector_service)
    return [
        # A public IP without authorised networks: nothing reaches it but Cloud SQL's Auth Proxy (Cloud Run's
        # Cloud SQL connection), which encrypts and checks roles/cloudsql.client. Private IP would need a VPC
        # peering range for Google's services as well; the admin's few queries do not need it.
        _create(f"Cloud SQL for PostgreSQL {o.database_instance}, the admin's users and sessions (takes minutes)", (
            "gcloud", "sql", "instances", "create", o.database_instance, f"--database-version={POSTGRES_VERSION}",
            "--edition=ENTERPRISE", f"--tier={o.database_tier}", f"--region={o.region}", "--deletion-protection",
            *p)),
        _create(f"Database {o.database_name}", (
            "gcloud", "sql", "databases", "create", o.database_name, instance, *p), instance),
        *_secret_steps(o, o.database_password_secret, f"the password of database user {o.database_user}", (),
                       **_generated(o, o.database_password_secret, 32)),
        Step("The database password, read back (never printed)", (
            "gcloud", "secrets", "versions", "access", "latest", f"--secret={o.database_password_secret}", *p),
            capture="DATABASE_PASSWORD", sensitive=True),
        _create(f"Database user {o.database_user}", (
            "gcloud", "sql", "users", "create", o.database_user, instance, "--password=${DATABASE_PASSWORD}", *p),
            instance),
        *_secret_steps(o, o.database_url_secret, "the connector's DATABASE_URL", (connector_sa,),
                       stdin_text=o.database_url),
        *_secret_steps(o, o.superuser_password_secret, f"the first operator's password ({o.superuser})",
                       (connector_sa,), **_generated(o, o.superuser_password_secret, 18)),
    ]


def _admin_database_jobs(o: Options) -> list[Step]:
    """Cloud Run jobs of the image for ``migrate`` and the first operator, deployed (created or updated) and run."""
    p = ("--project", o.project)
    database_url = f"DATABASE_URL={o.database_url_secret}:latest"
    jobs = (
        # --skip-checks: the serving checks want Redis and the signing secret, which a migration does not use.
        (o.migrate_job, "manage.py migrate", (database_url,), ("manage.py", "migrate", "--noinput", "--skip-checks")),
        (o.superuser_job, f"manage.py ensure_superuser (creates {o.superuser} unless it exists)",
         (database_url, f"DJANGO_SUPERUSER_PASSWORD={o.superuser_password_secret}:latest"),
         ("manage.py", "ensure_superuser", f"--username={o.superuser}", f"--email={o.superuser_email}")),
    )
    steps = []
    for job, what, secrets, arguments in jobs:
        steps += [
            Step(f"Cloud Run job {job}: {what}", (
                "gcloud", "run", "jobs", "deploy", job, f"--image={o.image_name}", f"--region={o.region}",
                f"--service-account={o.account(o.connector_service)}",
                f"--set-cloudsql-instances={o.database_connection_name}", f"--set-secrets={','.join(secrets)}",
                "--command=python", f"--args={','.join(arguments)}", "--max-retries=0", "--task-timeout=10m", *p)),
            Step(f"Run {job} and wait for it", (
                "gcloud", "run", "jobs", "execute", job, f"--region={o.region}", "--wait", *p)),
        ]
    return steps


def connector_environment(options: Options) -> dict[str, str]:
    """The connector's variables beyond role, project, region and Redis: identity providers and origins."""
    environment: dict[str, str] = {}
    if options.auth_option:
        environment["AUTH_OPTION"] = options.auth_option
    if options.app_auth_option:
        environment["APP_AUTH_OPTION"] = options.app_auth_option
    environment.update(options.provider_settings)
    if options.allowed_origins:
        environment["CORS_ALLOWED_ORIGINS"] = ",".join(options.allowed_origins)
    environment.update(options.extra_env)
    return environment


def render_service(template: Path, options: Options) -> str:
    """``template`` with every placeholder filled; captured values stay ``${NAME}`` references."""
    values: dict[str, str | int] = {
        "PROJECT": options.project, "REGION": options.region, "IMAGE": options.image_name,
        "VPC_CONNECTOR": options.vpc_connector, "JWT_SECRET": options.jwt_secret,
        "DJANGO_SECRET": options.django_secret, "DATABASE_URL_SECRET": options.database_url_secret,
        "DATABASE_CONNECTION_NAME": options.database_connection_name,
        "REDIS_AUTH_SECRET": options.redis_auth_secret, "FIVE9_SECRET": options.five9_secret, "REDIS_CA_SECRET": options.redis_ca_secret,
        "MIN_INSTANCES": str(options.min_instances),
        **sizing.template_values(options.connector_size, "CONNECTOR"),
        **sizing.template_values(options.interceptor_size, "INTERCEPTOR"),
        "CONNECTOR_SERVICE": options.connector_service, "INTERCEPTOR_SERVICE": options.interceptor_service,
        "CONNECTOR_SERVICE_ACCOUNT": options.account(options.connector_service),
        "INTERCEPTOR_SERVICE_ACCOUNT": options.account(options.interceptor_service),
        "INVOKER_SERVICE_ACCOUNT": options.account(options.invoker_account_name),
    }
    lists = {"CONNECTOR_ENV": connector_environment(options)}
    sections = {"admin-database": options.admin_database == "cloudsql", "redis-auth": not options.redis_cluster,
                "redis-cluster": options.redis_cluster, "five9": options.uses_five9}

    def entries(match: re.Match[str]) -> str:
        indent = match["indent"]
        return "".join(f"{indent}- name: {name}\n{indent}  value: {json.dumps(value)}\n"
                       for name, value in lists[match["name"]].items())

    def section(match: re.Match[str]) -> str:
        if match["name"] not in sections:
            raise PlanError(f"{template.name} has a section [if {match['name']}] the plan does not know")
        return match["body"] if sections[match["name"]] else ""

    text = _LIST_LINE.sub(entries, _SECTION.sub(section, template.read_text(encoding="utf-8")))
    # Comments explain the template; the rendered copy goes into a heredoc, where any "$" would expand.
    text = "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))
    quoted = {name: json.dumps(value) for name, value in values.items()}
    # Captured values: a quoted reference the shell (heredoc) or the executor fills in.
    quoted.update({name: f'"${{{name}}}"' for name in ("REDIS_HOST", "REDIS_PORT")})
    try:
        return string.Template(text).substitute(quoted)
    except (KeyError, ValueError) as error:
        raise PlanError(f"{template.name} has a placeholder the plan does not fill: {error}") from None


def provider_name(value: str) -> str:
    """A built-in provider's name as the plan's tables spell it, whatever its case; any other value as it is."""
    return next((name for name in BUILT_IN_PROVIDERS if name.lower() == value.lower()), value)


def references(text: str) -> set[str]:
    """The captured variables ``text`` refers to as ``${NAME}``."""
    return set(_REFERENCE.findall(text))


def _validate(options: Options) -> None:
    if not options.project:
        raise PlanError("no project: pass --project or set GCP_PROJECT_ID")
    if not options.region:
        raise PlanError("no region: pass --region or set SERVICE_REGION")
    if options.auth_option == "Skip":
        raise PlanError("AUTH_OPTION=Skip is for development only; choose the desktops' identity provider")
    if "*" in options.allowed_origins:
        raise PlanError("allowed origins may not contain '*' outside development mode; list the desktop origins")
    if options.admin_database not in ADMIN_DATABASES:
        raise PlanError(f"unknown admin database {options.admin_database!r}: 'cloudsql', or none")
    if options.admin_database:
        _validate_admin_database(options)
    for value, what in ((options.connector_service, "a connector service"),
                        (options.interceptor_service, "an interceptor service")):
        if not _SERVICE.match(value):
            raise PlanError(f"{value!r} is not {what} name: it also names its runtime account, so 6 to 30 "
                            "lower-case letters, digits and '-', starting with a letter")
    if options.connector_service == options.interceptor_service:
        raise PlanError("the connector and the interceptor need two service names")
    if options.redis_cluster and not (1 <= options.redis_shard_count <= MAX_REDIS_SHARDS
                                      and 0 <= options.redis_replica_count <= MAX_REDIS_REPLICAS):
        raise PlanError(f"a Redis Cluster has 1 to {MAX_REDIS_SHARDS} shards and 0 to {MAX_REDIS_REPLICAS} replicas "
                        "per shard")
    if options.min_instances < 0:
        raise PlanError(f"--min-instances must be at least 0, not {options.min_instances}")
    # The connector's template keeps CPU between requests (cpu-throttling "false"); the interceptor's does not.
    for role, size, always_allocated in (("connector", options.connector_size, True),
                                         ("interceptor", options.interceptor_size, False)):
        found = sizing.problem(size, role=role, min_instances=options.min_instances,
                               always_allocated=always_allocated)
        if found:
            raise PlanError(found)
    if not _SUBSCRIPTION_PREFIX.match(options.subscription_prefix):
        raise PlanError(f"{options.subscription_prefix!r} is not a subscription prefix: lower-case letters, digits "
                        "and '-', starting with a letter, at most 40")
    texts = [value for value in vars(options).values() if isinstance(value, str)]
    texts += list(options.allowed_origins) + [f"{k}={v}" for k, v in {**options.provider_settings,
                                                                      **options.extra_env}.items()]
    for text in texts:
        if _UNSAFE.search(text):
            raise PlanError(f"{text!r} contains a quote, '$', '`', a backslash or a line break; the plan cannot "
                            "carry it safely")


def _validate_admin_database(options: Options) -> None:
    """Names that go into Cloud SQL, a postgres:// URL and gcloud's comma-separated ``--args`` as they are."""
    for value, pattern, what in (
        (options.database_instance, _SQL_INSTANCE, "a Cloud SQL instance id: lower-case letters, digits and '-', "
                                                   "starting with a letter"),
        (options.database_tier, _SQL_TIER, "a Cloud SQL tier such as db-f1-micro or db-custom-1-3840"),
        (options.database_name, _SQL_NAME, "a database name: lower-case letters, digits and '_'"),
        (options.database_user, _SQL_NAME, "a database user: lower-case letters, digits and '_'"),
        (options.superuser, _USERNAME, "a username: letters, digits and @.+-_"),
        (options.superuser_email, _EMAIL, "an email address (without ',')"),
    ):
        if not pattern.match(value):
            raise PlanError(f"{value!r} is not {what}")
