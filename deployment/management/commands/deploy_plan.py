"""``manage.py deploy_plan``: the deployment tutorial's commands, printed in order or run one by one."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from argparse import BooleanOptionalAction
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployment import plan, readiness, sizing
from deployment.plan import Options, PlanError, Step
from deployment.sizing import ServiceSize

REPOSITORY = Path(__file__).resolve().parents[3]
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_EXISTS = re.compile(r"already exists|ALREADY_EXISTS", re.IGNORECASE)


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, secrets...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "Print every command of the deployment, in order, filled in from settings and flags: APIs, the "
        "administrator's and runtime service accounts' roles (least privilege; --tutorial-runtime-roles adds the "
        "three more Google's tutorial grants them), the JWT secret, Django's secret key, Redis, the VPC "
        "connector, with --admin-database cloudsql the admin's PostgreSQL (Cloud SQL, its secrets, the migrate and "
        "first-operator jobs), the image, both Cloud Run services (from deploy/*.yaml, with /readyz and /healthz "
        "probes, sized from measurements: docs/cloud-run-sizing.md, each value a --connector-* or --interceptor-* "
        "flag), the invoker, topics, the conversation profile and the push subscriptions. The output is a shell "
        "script, safe to run again (what exists already is left as it is); it prints no secret. With --execute, run "
        "the steps one by one through gcloud, stopping at the first failure. A plan that cannot work (no identity "
        "provider, no allowed origins, no conversation profile) is refused by --execute, and printed with a "
        "warning as a script that refuses to run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", help="Google Cloud project (default GCP_PROJECT_ID)")
        parser.add_argument("--region", help="region of every resource (default SERVICE_REGION)")
        parser.add_argument("--admin-account", default="", help="the human administrator to grant the roles to")
        parser.add_argument("--image", default="", help="image to deploy (default: built into Artifact Registry)")
        parser.add_argument("--redis-instance", default="aa-redis", help="Memorystore instance id (default aa-redis)")
        parser.add_argument("--redis-size", type=int, default=1, help="Memorystore size in GB (default 1)")
        parser.add_argument("--redis-auth-secret", default="aa-redis-auth",
                            help="Secret Manager secret for Memorystore's AUTH string (default aa-redis-auth)")
        parser.add_argument("--redis-ca-secret", default="aa-redis-ca",
                            help="Secret Manager secret for Memorystore's server CA (default aa-redis-ca)")
        parser.add_argument("--redis-cluster", action="store_true",
                            help="Memorystore for Redis Cluster instead of the Memorystore instance "
                                 "(docs/redis-cluster.md): a service connection policy, the cluster (in-transit "
                                 "encryption, IAM authentication), its CA, and REDIS_CLUSTER=true and "
                                 "REDIS_IAM_AUTH=true on both services")
        parser.add_argument("--redis-cluster-name", default=Options.redis_cluster_name,
                            help=f"with --redis-cluster, the cluster id (default {Options.redis_cluster_name})")
        parser.add_argument("--shard-count", type=int, default=Options.redis_shard_count,
                            help=f"with --redis-cluster, its shards (default {Options.redis_shard_count})")
        parser.add_argument("--replica-count", type=int, default=Options.redis_replica_count,
                            help=f"with --redis-cluster, replicas per shard (default {Options.redis_replica_count})")
        parser.add_argument("--redis-connection-policy", default=Options.redis_connection_policy,
                            help="with --redis-cluster, the service connection policy's name (default "
                                 f"{Options.redis_connection_policy}; one per network, region and service class)")
        parser.add_argument("--redis-subnet", default=Options.redis_subnet,
                            help="with --redis-cluster, the subnet of --network in the region that the cluster's "
                                 f"endpoints take addresses from (default {Options.redis_subnet})")
        parser.add_argument("--network", default="default", help="VPC network for Redis and the connector")
        parser.add_argument("--vpc-connector", default="aa-vpc", help="Serverless VPC Access connector name")
        parser.add_argument("--vpc-range", default="10.8.0.0/28", help="the connector's unused /28 range")
        parser.add_argument("--jwt-secret", help="Secret Manager secret id (default JWT_SECRET_NAME or aa-jwt-secret)")
        parser.add_argument("--django-secret", default="aa-django-secret-key",
                            help="Secret Manager secret for Django's secret key (default aa-django-secret-key)")
        parser.add_argument("--five9-secret", default="aa-five9-trust-token",
                            help="with Five9 as an identity provider: Secret Manager secret for the token its calls "
                                 "present, generated unless it has a version (default aa-five9-trust-token)")
        parser.add_argument("--admin-database", choices=("none", "cloudsql"), default="none",
                            help="the admin's users and sessions: cloudsql (Cloud SQL for PostgreSQL, shared by every "
                                 "instance), or none (default: SQLite per instance, no usable admin on Cloud Run)")
        parser.add_argument("--database-instance", default="aa-admin-db",
                            help="Cloud SQL instance id (default aa-admin-db)")
        parser.add_argument("--database-tier", default="db-f1-micro", help="Cloud SQL tier (default db-f1-micro)")
        parser.add_argument("--database-name", default="aa_admin", help="database name (default aa_admin)")
        parser.add_argument("--database-user", default="aa_admin", help="database user (default aa_admin)")
        parser.add_argument("--superuser", default="admin", help="the first operator's username (default admin)")
        parser.add_argument("--superuser-email", help="the first operator's email (default --admin-account)")
        parser.add_argument("--auth-option", help="identity provider for /register (default AUTH_OPTION)")
        parser.add_argument("--app-auth-option", help="provider for /register-app (default APP_AUTH_OPTION)")
        parser.add_argument("--allowed-origins", help="comma-separated desktop origins (default CORS_ALLOWED_ORIGINS)")
        parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                            help="another connector variable (repeatable); never put a secret here")
        parser.add_argument("--conversation-profile", default="", help="the conversation profile id to configure")
        parser.add_argument("--min-instances", type=int, default=1, help="minimum instances per service (default 1)")
        for role, size in (("connector", sizing.CONNECTOR), ("interceptor", sizing.INTERCEPTOR)):
            parser.add_argument(f"--{role}-concurrency", type=int, metavar="N",
                                help=f"requests at once per {role} instance, 1 to 1000 (default {size.concurrency}, "
                                     "measured: docs/cloud-run-sizing.md)")
            fraction = f", or a fraction with --{role}-concurrency 1" if role == "interceptor" else ""
            parser.add_argument(f"--{role}-cpu", metavar="CPUS",
                                help=f"CPUs per {role} instance: 1, 2, 4, 6 or 8{fraction} (default {size.cpu})")
            parser.add_argument(f"--{role}-memory", metavar="SIZE",
                                help=f"memory per {role} instance, with Mi or Gi (default {size.memory})")
            parser.add_argument(f"--{role}-max-instances", type=int, metavar="N",
                                help=f"most {role} instances (default {size.max_instances})")
        parser.add_argument("--startup-cpu-boost", action=BooleanOptionalAction, default=True,
                            help="more CPU while a new instance starts, for both services (default on)")
        parser.add_argument("--connector-service", default=Options.connector_service,
                            help=f"the connector's Cloud Run service and runtime account (default "
                                 f"{Options.connector_service}, the sample's name)")
        parser.add_argument("--interceptor-service", default=Options.interceptor_service,
                            help=f"the interceptor's Cloud Run service and runtime account (default "
                                 f"{Options.interceptor_service}, the sample's name)")
        parser.add_argument("--subscription-prefix", default="",
                            help="put before each push subscription's name, to add subscriptions beside the "
                                 "sample's on the same topics (default none: the sample's names)")
        parser.add_argument("--tutorial-runtime-roles", action="store_true",
                            help="also grant both runtime accounts the project roles Google's tutorial gives them "
                                 "beyond least privilege: " + ", ".join(plan.TUTORIAL_RUNTIME_ROLES)
                                 + " (neither service uses them; for matching the tutorial, e.g. an audit)")
        parser.add_argument("--execute", action="store_true", help="run the steps (needs gcloud on PATH)")
        parser.add_argument("--from-step", type=int, default=1, metavar="N",
                            help="with --execute, start at step N (earlier read-only look-ups still run)")
        parser.add_argument("--work-dir", type=Path, help="with --execute, where the service files are written")

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the plan; print it, or run it."""
        try:
            plan_options = _options(options)
            steps = plan.build_plan(plan_options)
        except PlanError as error:
            raise CommandError(str(error)) from None
        found = readiness.problems(plan_options)
        if not options["execute"]:
            if found:
                self.stderr.write(readiness.report(found) + _NOT_READY_SCRIPT)
            self.stdout.write(render_script(steps, header=_header(found)))
            return
        if found:
            # Before the first step: run, such a plan deploys everything, then fails at the conversation profile.
            raise CommandError(readiness.report(found) + "Nothing was run.")
        if not 1 <= options["from_step"] <= len(steps):
            raise CommandError(f"--from-step must be between 1 and {len(steps)}")
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise CommandError("gcloud is not on PATH: install the Google Cloud CLI, or run the printed plan yourself")
        work_dir = options["work_dir"] or Path(tempfile.mkdtemp(prefix="aa-deploy-"))
        Executor(self, gcloud=gcloud, work_dir=work_dir).run(steps, first=options["from_step"])


def _options(options: dict[str, Any]) -> Options:
    """The plan's inputs: flags first, then settings."""
    auth_option = plan.provider_name(
        options["auth_option"] if options["auth_option"] is not None else settings.AUTH_OPTION)
    app_auth_option = plan.provider_name(
        options["app_auth_option"] if options["app_auth_option"] is not None else settings.APP_AUTH_OPTION)
    provider_settings = {}
    for name in (*plan.PROVIDER_SETTINGS.get(auth_option, ()),
                 *plan.APP_PROVIDER_SETTINGS.get(app_auth_option, ())):
        if getattr(settings, name):
            provider_settings[name] = str(getattr(settings, name))
    origins = options["allowed_origins"]
    allowed = tuple(o.strip() for o in origins.split(",") if o.strip()) if origins is not None \
        else tuple(settings.CORS_ALLOWED_ORIGINS) + (("*",) if settings.CORS_ALLOW_ALL_ORIGINS else ())
    extra = {}
    for item in options["env"]:
        name, separator, value = item.partition("=")
        if not separator or not _ENV_NAME.match(name):
            raise CommandError(f"--env {item!r} is not NAME=VALUE with an upper-case NAME")
        if name in plan.TEMPLATE_VARIABLES:
            raise CommandError(f"--env {name} is set by the service templates (deploy/*.yaml) already")
        extra[name] = value
    for setting in (plan.REQUIRED_PROVIDER_SETTINGS.get(auth_option, ())
                    + plan.REQUIRED_APP_PROVIDER_SETTINGS.get(app_auth_option, ())):
        if setting not in provider_settings and setting not in extra:
            raise CommandError(f"{setting} is required by the identity provider chosen: set it or pass "
                               f"--env {setting}=...")
    if options["redis_size"] < 1 or options["min_instances"] < 0:
        raise CommandError("--redis-size must be at least 1 and --min-instances at least 0")
    return Options(
        **{name: options[name] for name in _PASSED_AS_GIVEN},
        project=options["project"] or settings.GCP_PROJECT_ID,
        region=options["region"] or settings.SERVICE_REGION,
        redis_size_gb=options["redis_size"],
        redis_shard_count=options["shard_count"],
        redis_replica_count=options["replica_count"],
        jwt_secret=options["jwt_secret"] or settings.JWT_SECRET_NAME or "aa-jwt-secret",
        admin_database="" if options["admin_database"] == "none" else options["admin_database"],
        superuser_email=options["superuser_email"] if options["superuser_email"] is not None
        else options["admin_account"],
        auth_option=auth_option,
        app_auth_option=app_auth_option,
        provider_settings=provider_settings,
        allowed_origins=allowed,
        extra_env=extra,
        connector_size=_size(options, "connector", sizing.CONNECTOR),
        interceptor_size=_size(options, "interceptor", sizing.INTERCEPTOR),
    )


def _size(options: dict[str, Any], role: str, default: ServiceSize) -> ServiceSize:
    """``default`` with the ``--<role>-...`` flags given (the plan checks the result against Cloud Run's rules)."""
    given = {name: options[f"{role}_{name}"] for name in ("concurrency", "cpu", "memory", "max_instances")
             if options[f"{role}_{name}"] is not None}
    return replace(default, **given, startup_cpu_boost=options["startup_cpu_boost"])


# Flags that reach the plan's options unchanged (same name, no default to fill in from the settings).
_PASSED_AS_GIVEN = (
    "admin_account", "image", "redis_instance", "redis_auth_secret", "redis_ca_secret", "network", "vpc_connector",
    "vpc_range", "django_secret", "five9_secret", "database_instance", "database_tier", "database_name",
    "database_user", "superuser",
    "conversation_profile", "min_instances", "connector_service", "interceptor_service", "subscription_prefix",
    "tutorial_runtime_roles", "redis_cluster", "redis_cluster_name", "redis_connection_policy", "redis_subnet",
)

_NOT_READY_SCRIPT = "The script printed refuses to run: generate it again with the fixes."


def _header(found: list[readiness.Problem]) -> str:
    """The script's opening; for a plan with problems, the problems as comments and a guard that stops it."""
    warning = guard = ""
    if found:
        report = readiness.report(found) + _NOT_READY_SCRIPT + "\n"
        warning = "#\n" + "".join(f"# {line}\n" for line in report.splitlines()) + "#\n"
        # Quoted delimiter: the heredoc is printed as it is, nothing in it expanded.
        guard = f"cat >&2 <<'NOT_READY'\n{report}NOT_READY\nexit 1\n"
    return (
        "#!/usr/bin/env bash\n"
        "# aa-backend deployment, generated by `python manage.py deploy_plan`. Run from the repository root,\n"
        "# as the administrator (gcloud auth login; gcloud auth application-default login for manage.py steps).\n"
        "# Safe to run again: each create first asks whether its resource exists.\n"
        + warning
        + "set -euo pipefail\n"
        + guard
        + "".join(f"#\n# {line}\n" if line.startswith("Moving") else f"# {line}\n" for line in plan.MIGRATION_NOTES)
    )


def shell_word(argument: str) -> str:
    """``argument`` quoted for the shell; captured ``${NAME}`` references stay expandable."""
    if plan.references(argument):
        return f'"{argument}"'  # build_plan refused '"', '$', '`' and '\\' in every value
    return shlex.quote(argument)


def render_script(steps: list[Step], *, header: str) -> str:
    """The plan as a bash script: one numbered comment per step, then its command, capture or file."""
    lines = [header]
    for number, step in enumerate(steps, 1):
        lines.append(f"\n# {number}. {step.title}" + ("  (may already exist)" if step.exists_ok else ""))
        if step.note:
            continue
        if step.path is not None:
            lines.append(f"cat > {shlex.quote(step.path)} <<EOF\n{step.content}EOF")
            continue
        command = _command_line(step.argv)
        if step.stdin_from:
            command = _command_line(step.stdin_from) + " | " + command
        elif step.stdin_text is not None:
            command = f"printf %s {shell_word(step.stdin_text)} | {command}"
        guard = step.skip_if or step.exists_if
        if guard:
            command = f"{_command_line(guard)} >/dev/null 2>&1 || {command}"
        lines.append(f"{step.capture}=$({command})" if step.capture else command)
    return "\n".join(lines) + "\n"


def _command_line(argv: tuple[str, ...]) -> str:
    return " ".join(shell_word(argument) for argument in argv)


class Executor:
    """Runs steps in order through subprocess; stops at the first failure saying how to go on."""

    def __init__(self, command: BaseCommand, *, gcloud: str, work_dir: Path) -> None:
        self.command = command
        self.gcloud = gcloud
        self.work_dir = work_dir
        self.values: dict[str, str] = {}

    def run(self, steps: list[Step], *, first: int) -> None:
        """Steps ``first`` to the end; before ``first`` only the captures (read-only look-ups) run again."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for number, step in enumerate(steps, 1):
            if number < first and not step.capture:
                continue
            self.command.stdout.write(f"[{number}/{len(steps)}] {step.title}")
            self._run(number, step)
        self.command.stdout.write(f"Done: {len(steps)} steps.")

    def _run(self, number: int, step: Step) -> None:
        if step.note:
            return
        if step.path is not None:
            assert step.content is not None
            (self.work_dir / step.path).write_text(self._fill(step.content, quoted=True), encoding="utf-8")
            return
        if step.skip_if and self._succeeds(step.skip_if):
            self.command.stdout.write("  has a version already; kept")
            return
        argv = self._argv(step.argv)
        # The service files are named relative to the work directory; the build runs in the repository.
        cwd = REPOSITORY if step.manage or "builds" in step.argv else self.work_dir
        stdin = self._read_input(number, step) if step.stdin_from else None
        if step.stdin_text is not None:
            stdin = self._fill(step.stdin_text, quoted=False)
        result = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True)
        if result.returncode != 0:
            if step.exists_ok and _EXISTS.search(result.stderr):
                self.command.stdout.write("  already exists; continuing")
                return
            raise CommandError(
                f"step {number} ({step.title}) failed with exit code {result.returncode}:\n"
                f"{_tail(result.stderr or result.stdout)}\n"
                f"Fix the cause, then continue with: python manage.py deploy_plan <same flags> --execute "
                f"--from-step {number}"
            )
        if step.capture:
            value = result.stdout.strip()
            if not value or plan._UNSAFE.search(value):
                shown = "a value (not shown)" if step.sensitive else repr(value)
                raise CommandError(f"step {number} ({step.title}) printed {shown}, not a usable value for "
                                   f"{step.capture}; check the resource, then re-run with --from-step {number}")
            self.values[step.capture] = value

    def _argv(self, command: tuple[str, ...]) -> list[str]:
        """``command`` with captured values filled in, run by this gcloud or this Python."""
        argv = [self._fill(argument, quoted=False) for argument in command]
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "gcloud":
            argv[0] = self.gcloud
        return argv

    def _succeeds(self, command: tuple[str, ...]) -> bool:
        """Whether the read-only ``command`` exits 0 (its output is not kept: it may describe a secret)."""
        return subprocess.run(self._argv(command), cwd=self.work_dir, capture_output=True).returncode == 0

    def _read_input(self, number: int, step: Step) -> str:
        """The output of ``step.stdin_from`` (a secret value: kept in memory, never printed)."""
        argv = self._argv(step.stdin_from)
        result = subprocess.run(argv, cwd=self.work_dir, capture_output=True, text=True)
        if result.returncode != 0 or not result.stdout.strip():
            raise CommandError(
                f"step {number} ({step.title}): `{' '.join(step.stdin_from[:4])} ...` "
                + (f"failed with exit code {result.returncode}:\n{_tail(result.stderr)}" if result.returncode
                   else "printed nothing") +
                f"\nFix the cause, then continue with: python manage.py deploy_plan <same flags> --execute "
                f"--from-step {number}"
            )
        return result.stdout

    def _fill(self, text: str, *, quoted: bool) -> str:
        """``text`` with each ``${NAME}`` replaced by its captured value (inside a quoted YAML string or bare)."""
        for name in plan.references(text):
            if name not in self.values:
                raise CommandError(f"{name} was not captured before it was needed")
            text = text.replace(f"${{{name}}}", self.values[name])
        return text


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
