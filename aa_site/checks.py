"""System checks of the settings every role shares; each app registers its own beside these.

``aa_site.startup`` runs all checks before the ASGI application serves
anything, so an operator sees every bad setting named at once instead of a
traceback at the first request. The connector's are in ``connector.checks``,
the interceptor's in ``interceptor.checks``, the identity providers' in
``auth_providers.checks``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from events import redis_config

# A guessable metrics token would show anyone the service's traffic.
MIN_METRICS_TOKEN_LENGTH = 32


@register()
def check_environment(app_configs=None, **kwargs) -> list:
    """Report values that could not be parsed from the environment, and settings given under two names."""
    problems: list = [
        Error(f"{name} {message}.", hint=f"Fix the environment variable {name}.", id="aa_site.E001")
        for name, message in settings.ENVIRONMENT_PROBLEMS
    ]
    # A setting given under both of its names: it works, but the operator should keep only one.
    problems += [
        Warning(f"{message}.", hint="Keep only one of the two names.", id="aa_site.W002")
        for message in settings.ENVIRONMENT_NOTICES
    ]
    return problems


@register()
def check_required_settings(app_configs=None, **kwargs) -> list:
    """Settings production cannot run without (development mode supplies defaults)."""
    problems = []
    if not settings.GCP_PROJECT_ID:
        problems.append(
            Error("GCP_PROJECT_ID is not set.", hint="Set it to the Agent Assist project id.", id="aa_site.E002")
        )
    if not settings.DEVELOPMENT_MODE and not settings.REDISHOST:
        problems.append(
            Error(
                "REDISHOST is not set.",
                hint="Connectors and interceptors share events through Redis; set REDISHOST "
                "(and REDISPORT), or DEVELOPMENT_MODE=true for a single local process.",
                id="aa_site.E003",
            )
        )
    if settings.CORS_ALLOW_ALL_ORIGINS and not settings.DEVELOPMENT_MODE:
        problems.append(
            Error(
                "CORS_ALLOWED_ORIGINS contains '*'.",
                hint="List the agent desktop origins; a wildcard is allowed only with DEVELOPMENT_MODE=true.",
                id="aa_site.E004",
            )
        )
    token = settings.METRICS_TOKEN
    if token and not settings.DEVELOPMENT_MODE and len(token) < MIN_METRICS_TOKEN_LENGTH:
        problems.append(
            Error(
                f"METRICS_TOKEN is shorter than {MIN_METRICS_TOKEN_LENGTH} characters.",
                hint="Use a random token, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
                id="aa_site.E020",
            )
        )
    return problems


@register()
def check_redis_connection(app_configs=None, **kwargs) -> list:
    """The Redis AUTH and TLS settings can make a client: one password source, readable files, a PEM CA."""
    if not settings.REDISHOST:
        return []
    problems = []
    try:
        redis_config.password()
    except redis_config.RedisConfigError as error:
        problems.append(Error(
            f"{error}.",
            hint="Give Memorystore's AUTH string once: REDIS_AUTH_STRING_FILE (a Secret Manager secret mounted "
            "by Cloud Run), REDIS_AUTH_STRING, or the password in REDIS_URL.",
            id="aa_site.E010",
        ))
    problems += _cluster_problems() + _iam_problems()
    tls_problem = redis_config.tls_problem()
    if tls_problem:
        problems.append(Error(
            f"{tls_problem}.",
            hint="REDIS_TLS_CA_FILE is the instance's server CA in PEM (gcloud redis instances describe "
            "--format='value(serverCaCerts[0].cert)'), with REDIS_URL=rediss://host:port or REDISHOST.",
            id="aa_site.E011",
        ))
    return problems


def _iam_problems() -> list:
    """``REDIS_IAM_AUTH`` beside a password, or without TLS (the token, good for an hour, would cross in clear)."""
    if not settings.REDIS_IAM_AUTH:
        return []
    problems = []
    if any((settings.REDIS_PASSWORD, settings.REDIS_AUTH_STRING, settings.REDIS_AUTH_STRING_FILE,
            settings.REDIS_USERNAME)):
        problems.append(Error(
            "REDIS_IAM_AUTH is on and a Redis password or user is given too.",
            hint="With IAM authentication the service's access token is the password: drop REDIS_AUTH_STRING, "
            "REDIS_AUTH_STRING_FILE and the user and password of REDIS_URL, or turn REDIS_IAM_AUTH off.",
            id="aa_site.E014",
        ))
    if not settings.REDIS_TLS:
        problems.append(Warning(
            "REDIS_IAM_AUTH is on without TLS: the access token crosses the network in clear.",
            hint="Use in-transit encryption (REDIS_TLS_CA_FILE, or REDIS_URL=rediss://...).",
            id="aa_site.W015",
        ))
    return problems


def _cluster_problems() -> list:
    """Settings that make no sense with ``REDIS_CLUSTER``."""
    if not settings.REDIS_CLUSTER:
        return []
    problems = []
    if settings.REDIS_DB:
        problems.append(Error(
            f"REDIS_CLUSTER is on, but REDIS_URL names database {settings.REDIS_DB}: a Redis Cluster has only "
            "database 0.",
            hint="Drop the database number from REDIS_URL (rediss://host:port), or turn REDIS_CLUSTER off for a "
            "standalone Redis.",
            id="aa_site.E012",
        ))
    if "{" in settings.EVENT_KEY_PREFIX:
        problems.append(Warning(
            "EVENT_KEY_PREFIX holds '{': on a Redis Cluster every key then hashes by the prefix, so all of them "
            "land on one shard.",
            hint="Use a prefix without braces; the keys carry their own hash tags.",
            id="aa_site.W013",
        ))
    return problems
