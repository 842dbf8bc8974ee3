"""``manage.py issue_token``: mint a desktop JWT for a named user, for smoke tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework_simplejwt.exceptions import TokenError

from connector import jwt_secret, tokens

MAX_MINUTES = 24 * 60


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, AUTH_OPTION...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "Print a desktop JWT for --user, signed with the secret start-up would use (JWT_SECRET_KEY, "
        "JWT_SECRET_KEY_PATH or JWT_SECRET_NAME) for GCP_PROJECT_ID. Only the token goes to stdout, "
        "so TOKEN=$(python manage.py issue_token --user alice) works; details go to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="the gcp_agent_assist_user claim")
        parser.add_argument(
            "--minutes",
            type=int,
            help=f"lifetime in minutes, 1 to {MAX_MINUTES} (default JWT_LIFETIME_MINUTES)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Sign the token, check it the way the connector will, print it."""
        user = options["user"].strip()
        if not user:
            raise CommandError("--user is empty")
        minutes = options["minutes"] if options["minutes"] is not None else settings.JWT_LIFETIME_MINUTES
        if not 1 <= minutes <= MAX_MINUTES:
            raise CommandError(f"--minutes must be between 1 and {MAX_MINUTES}, got {minutes}")
        if not settings.GCP_PROJECT_ID:
            raise CommandError("GCP_PROJECT_ID is not set: tokens are issued for (and only accepted by) one project")
        try:
            source = jwt_secret.describe_source()
            token = tokens.AgentAssistToken()
            token.set_exp(lifetime=timedelta(minutes=minutes))
            token[tokens.PROJECT_CLAIM] = settings.GCP_PROJECT_ID
            token[tokens.USER_CLAIM] = user
            raw = str(token)
            # What a connector with these settings will do with it: fail here, not at the first smoke test.
            identity = tokens.validate_token(raw)
        except jwt_secret.SecretUnavailable as error:
            raise CommandError(f"no signing secret: {error}") from None
        except (TokenError, tokens.InvalidToken) as error:
            raise CommandError(f"the token would not be accepted: {error}") from None
        if source == jwt_secret.DEVELOPMENT_SOURCE:
            self.stderr.write(
                "warning: signed with the public development secret; only development-mode servers accept it"
            )
        self.stderr.write(
            f"token for user {identity.user!r} in project {identity.project}, valid {minutes} min "
            f"(until {datetime.fromtimestamp(token['exp'], timezone.utc):%Y-%m-%dT%H:%M:%SZ}), "
            f"signed with the secret from {source}"
        )
        self.stdout.write(raw)
