"""``manage.py ensure_superuser``: the admin's first operator, created once; running it again changes nothing.

``deploy_plan --admin-database cloudsql`` runs it as a Cloud Run job on every
deployment, with ``DJANGO_SUPERUSER_PASSWORD`` from Secret Manager: Django's
``createsuperuser --noinput`` does the work (its validation, its password
variable) but fails when the user exists, which would stop a re-run of the plan.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

PASSWORD_VARIABLE = "DJANGO_SUPERUSER_PASSWORD"


class Command(BaseCommand):
    # Run as a job without Redis or the signing secret, which the serving checks ask for; the one setting it
    # uses, DATABASE_URL, is checked in handle().
    requires_system_checks: list[str] = []
    help = (
        f"Create a staff superuser with --username and --email and the password in {PASSWORD_VARIABLE} "
        "(Django's createsuperuser --noinput), unless a user of that name exists: then nothing changes, its "
        "password included. The password is never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True, help="the operator's username")
        parser.add_argument("--email", default="", help="the operator's email address")

    def handle(self, *args: Any, **options: Any) -> None:
        """Create the user unless it exists."""
        if any(name == "DATABASE_URL" for name, _ in settings.ENVIRONMENT_PROBLEMS):
            # Without this the settings fall back to a SQLite file, which would take the user and be lost.
            raise CommandError("DATABASE_URL must be postgres://user:password@host:port/name or sqlite:///path")
        username = options["username"]
        users = get_user_model()._default_manager
        try:
            if users.filter(**{get_user_model().USERNAME_FIELD: username}).exists():
                self.stdout.write(f"User {username} exists; left as it is.")
                return
            if not os.environ.get(PASSWORD_VARIABLE):
                # createsuperuser --noinput would make the user with an unusable password.
                raise CommandError(f"{PASSWORD_VARIABLE} is empty: set it to the first password of {username}")
            call_command("createsuperuser", interactive=False, username=username, email=options["email"],
                         stdout=self.stdout, stderr=self.stderr)
        except DatabaseError as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise CommandError(f"the database refused ({error.__class__.__name__}: {reason}); check DATABASE_URL "
                               "and run manage.py migrate first") from None
