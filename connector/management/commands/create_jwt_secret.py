"""``manage.py create_jwt_secret``: generate a strong JWT signing secret and store it in Secret Manager."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEFAULT_SECRET_ID = "aa-jwt-secret"
# 48 random bytes: 64 URL-safe characters, twice jwt_secret.MINIMUM_LENGTH.
SECRET_BYTES = 48
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_NAME = re.compile(r"^projects/(?P<project>[^/]+)/secrets/(?P<secret>[A-Za-z0-9_-]{1,255})$")


def generate_secret() -> str:
    """A new signing secret: ``secrets.token_urlsafe(48)``, 64 characters."""
    return secrets.token_urlsafe(SECRET_BYTES)


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, AUTH_OPTION...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "Generate a signing secret (secrets.token_urlsafe(48), 64 characters) and add it as a new version of a "
        "Secret Manager secret, creating the secret with user-managed replication in --region when it does not "
        "exist. Uses Application Default Credentials and SECRET_MANAGER_API_ENDPOINT like the connector. "
        "The secret is never printed, except with --print, which prints it and calls nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--secret",
            help=f"secret id or projects/P/secrets/S (default JWT_SECRET_NAME, else {DEFAULT_SECRET_ID})",
        )
        parser.add_argument("--project", help="project of a bare secret id (default GCP_PROJECT_ID)")
        parser.add_argument("--region", help="replica location when the secret is created (default SERVICE_REGION)")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", help="say what would be done; call nothing")
        mode.add_argument(
            "--print", dest="print_only", action="store_true", help="only print a new secret to stdout"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Print, describe, or store a new secret version."""
        if options["print_only"]:
            self.stdout.write(generate_secret())
            return
        project, secret_id = _target(options)
        name = f"projects/{project}/secrets/{secret_id}"
        region = options["region"] or settings.SERVICE_REGION
        if options["dry_run"]:
            where = f"user-managed replication in {region}" if region else "user-managed replication (needs --region)"
            self.stdout.write(
                f"Would create secret {name} with {where} if it does not exist, then add a new version holding "
                f"a generated {len(generate_secret())}-character secret (not shown)."
            )
            return
        version = _store(name, project=project, secret_id=secret_id, region=region, value=generate_secret())
        self.stdout.write(f"Added {version}. Deploy with JWT_SECRET_NAME={secret_id} or mount {name}:latest.")


def _target(options: dict[str, Any]) -> tuple[str, str]:
    """(project, secret id) from ``--secret`` and ``--project`` or their settings; ``CommandError`` if malformed."""
    value = options["secret"] or settings.JWT_SECRET_NAME or DEFAULT_SECRET_ID
    full = _SECRET_NAME.match(value)
    if full:
        if options["project"] and options["project"] != full["project"]:
            raise CommandError(
                f"--secret {value} names project {full['project']}, but --project is {options['project']}"
            )
        return full["project"], full["secret"]
    if not _SECRET_ID.match(value):
        raise CommandError(
            f"{value!r} is not a secret id (letters, digits, '-' and '_', at most 255) or projects/P/secrets/S"
        )
    project = options["project"] or settings.GCP_PROJECT_ID
    if not project:
        raise CommandError("no project: pass --project or set GCP_PROJECT_ID")
    return project, value


def _store(name: str, *, project: str, secret_id: str, region: str, value: str) -> str:
    """Create ``name`` when missing, add ``value`` as its newest version; return the version's name."""
    # Imported here, as in connector.jwt_secret: only this command and secret reads load the client.
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import secretmanager

    endpoint = settings.SECRET_MANAGER_API_ENDPOINT
    timeout = settings.SECRET_MANAGER_TIMEOUT
    try:
        # REST rather than gRPC, like connector.jwt_secret: any proxy, and the local fake in tests.
        with secretmanager.SecretManagerServiceClient(
            transport="rest", client_options={"api_endpoint": endpoint} if endpoint else None
        ) as client:
            try:
                client.get_secret(name=name, timeout=timeout)
            except api_exceptions.NotFound:
                if not region:
                    raise CommandError(
                        f"secret {name} does not exist; pass --region (or set SERVICE_REGION) to create it"
                    ) from None
                client.create_secret(
                    parent=f"projects/{project}",
                    secret_id=secret_id,
                    secret={"replication": {"user_managed": {"replicas": [{"location": region}]}}},
                    timeout=timeout,
                )
            version = client.add_secret_version(parent=name, payload={"data": value.encode("utf-8")}, timeout=timeout)
    except api_exceptions.GoogleAPICallError as error:
        raise CommandError(f"Secret Manager refused ({name}): {error.code} {error.__class__.__name__}: "
                           f"{_server_message(error)}") from None
    except auth_exceptions.DefaultCredentialsError as error:
        raise CommandError(f"no Google credentials ({error}); run gcloud auth application-default login") from None
    except (auth_exceptions.GoogleAuthError, requests.RequestException) as error:
        raise CommandError(f"cannot reach Secret Manager ({name}): {error.__class__.__name__}") from None
    return version.name


def _server_message(error: Any) -> str:
    """Google's explanation without the "POST <url>: " the REST transport puts in front of it."""
    method, _, rest = error.message.partition(" ")
    if method in ("GET", "POST") and ": " in rest:
        return rest.split(": ", 1)[1]
    return error.message
