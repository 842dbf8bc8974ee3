"""System checks that stop start-up on a missing or malformed setting.

``aa_site.startup`` runs these before the ASGI application serves anything, so
an operator sees every bad setting named at once instead of a traceback at
the first request.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from connector import jwt_secret


@register()
def check_environment(app_configs=None, **kwargs) -> list:
    """Report values that could not be parsed from the environment."""
    return [
        Error(f"{name} {message}.", hint=f"Fix the environment variable {name}.", id="aa_site.E001")
        for name, message in settings.ENVIRONMENT_PROBLEMS
    ]


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
    return problems


@register()
def check_jwt_secret(app_configs=None, **kwargs) -> list:
    """The connector signs tokens: refuse to start without a real secret."""
    if settings.SERVICE_ROLE == "interceptor":
        return []
    try:
        source = jwt_secret.describe_source()
    except jwt_secret.SecretUnavailable as error:
        return [Error(str(error), hint=jwt_secret.HINT, id="aa_site.E005")]
    if source == jwt_secret.DEVELOPMENT_SOURCE:
        return [
            Warning(
                "JWT signing uses the built-in development secret: anyone can forge tokens.",
                hint=jwt_secret.HINT,
                id="aa_site.W001",
            )
        ]
    return []


@register()
def check_push_auth(app_configs=None, **kwargs) -> list:
    """Authenticated push (interceptor/push_auth.py): settings that would check nothing, or refuse every push."""
    problems = []
    account = settings.PUSH_AUTH_SERVICE_ACCOUNT
    if settings.PUSH_AUTH_AUDIENCE and not account:
        problems.append(
            Error(
                "PUSH_AUTH_AUDIENCE is set but PUSH_AUTH_SERVICE_ACCOUNT is not, so pushes are not authenticated.",
                hint="Set PUSH_AUTH_SERVICE_ACCOUNT to the subscription's push service account, "
                "or unset PUSH_AUTH_AUDIENCE.",
                id="aa_site.E020",
            )
        )
    if account and (account.count("@") != 1 or any(character.isspace() for character in account)):
        problems.append(
            Error(
                f"PUSH_AUTH_SERVICE_ACCOUNT must be a service account email, got {account!r}.",
                hint="For example pubsub-push@PROJECT.iam.gserviceaccount.com (the subscription's "
                "--push-auth-service-account).",
                id="aa_site.E021",
            )
        )
    if account and not settings.PUSH_AUTH_CERTS_URL.startswith(("https://", "http://")):
        problems.append(
            Error(
                f"PUSH_AUTH_CERTS_URL must be an http(s) URL, got {settings.PUSH_AUTH_CERTS_URL!r}.",
                hint="Leave it unset to use https://www.googleapis.com/oauth2/v1/certs.",
                id="aa_site.E022",
            )
        )
    return problems


@register()
def check_dialogflow_proxy(app_configs=None, **kwargs) -> list:
    """The Dialogflow proxy's endpoint override (connector/dialogflow_proxy) must be a plain http(s) root."""
    root = settings.DIALOGFLOW_API_ROOT
    if not root:
        return []
    scheme, _, rest = root.partition("://")
    if scheme not in ("https", "http") or not rest or any(character in rest for character in "?#@ "):
        return [
            Error(
                f"DIALOGFLOW_API_ROOT must be an http(s) URL without query or credentials, got {root!r}.",
                hint="Leave it unset to call Google's Dialogflow endpoint for each location.",
                id="aa_site.E040",
            )
        ]
    return []
