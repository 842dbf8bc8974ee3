"""The admin's first operator as `deploy_plan`'s jobs make it: `migrate`, `ensure_superuser`, SQLite and PostgreSQL.

Each job's command comes from the plan itself and runs as the job does: a
separate process with the production settings and nothing but DATABASE_URL
(and the operator's password), on a real database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.hashers import check_password

from deployment import plan
from testing.commands import assert_clean_failure, manage

PASSWORD = "first-operator-Zq81LmQp-3c"


def job_arguments(job: str, *, username: str) -> list[str]:
    """The ``manage.py`` arguments of ``job`` in the admin database's plan."""
    options = plan.Options(project="acme-cx", region="europe-west1", admin_database="cloudsql",
                                 superuser=username, superuser_email="ops@acme.example")
    (deploy,) = [step.argv for step in plan.build_plan(options) if step.argv[:5] == (
        "gcloud", "run", "jobs", "deploy", job)]
    (arguments,) = [argument.split("=", 1)[1] for argument in deploy if argument.startswith("--args=")]
    assert arguments.startswith("manage.py,")
    return arguments.split(",")[1:]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'admin.sqlite3'}"


def migrated(url: str) -> str:
    """``url``'s database with the admin's tables, made by the migrate job's command."""
    result = manage(*job_arguments(plan.Options.migrate_job, username="unused"), env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    return url


def user_row(url: str, username: str) -> tuple | None:
    """(password hash, is_staff, is_superuser, email) of ``username``, read from the database itself."""
    query = "SELECT password, is_staff, is_superuser, email FROM auth_user WHERE username = {}"
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
            return connection.execute(query.format("?"), (username,)).fetchone()
    with psycopg.connect(url) as connection:
        return connection.execute(query.format("%s"), (username,)).fetchone()


def ensure(url: str, username: str, password: str | None) -> subprocess.CompletedProcess[str]:
    environment = {"DATABASE_URL": url, **({"DJANGO_SUPERUSER_PASSWORD": password} if password is not None else {})}
    return manage(*job_arguments(plan.Options.superuser_job, username=username), env=environment)


def test_the_first_operator_is_created_once_and_kept(database_url: str) -> None:
    """A staff superuser with the password from the environment; a second run changes nothing, password included."""
    url = migrated(database_url)
    username = f"operator-{uuid.uuid4().hex[:8]}"
    created = ensure(url, username, PASSWORD)
    assert created.returncode == 0, created.stderr
    password_hash, is_staff, is_superuser, email = user_row(url, username)
    assert check_password(PASSWORD, password_hash) and is_staff and is_superuser and email == "ops@acme.example"
    again = ensure(url, username, "another-password-0123456789")
    assert again.returncode == 0, again.stderr
    assert f"User {username} exists; left as it is." in again.stdout
    assert user_row(url, username)[0] == password_hash
    for result in (created, again):
        assert PASSWORD not in result.stdout + result.stderr


def test_without_a_password_no_user_is_made(database_url: str) -> None:
    """createsuperuser --noinput would make a user nobody can log in as; the command refuses instead."""
    url = migrated(database_url)
    username = f"operator-{uuid.uuid4().hex[:8]}"
    assert_clean_failure(ensure(url, username, ""), mentions="DJANGO_SUPERUSER_PASSWORD is empty")
    assert user_row(url, username) is None


def test_an_unmigrated_database_is_a_clean_error(tmp_path: Path) -> None:
    result = ensure(f"sqlite:///{tmp_path / 'empty.sqlite3'}", "operator", PASSWORD)
    assert_clean_failure(result, mentions="run manage.py migrate first")


def test_a_malformed_database_url_is_refused_rather_than_replaced_by_sqlite(tmp_path: Path) -> None:
    """The settings fall back to a SQLite file on a bad DATABASE_URL; the user must not land there."""
    sqlite = tmp_path / "fallback.sqlite3"
    result = manage(*job_arguments(plan.Options.superuser_job, username="operator"),
                    env={"DATABASE_URL": "postgres://aa:pw@host:notaport/aa", "SQLITE_PATH": str(sqlite),
                         "DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    assert_clean_failure(result, mentions="DATABASE_URL must be")
    assert "pw@" not in result.stderr and not sqlite.exists()
