"""System checks of the settings every role shares; each app registers its own beside these.

``aa_site.startup`` runs all checks before the ASGI application serves
anything, so an operator sees every bad setting named at once instead of a
traceback at the first request. The connector's are in ``connector.checks``,
the interceptor's in ``interceptor.checks``, the identity providers' in
``auth_providers.checks``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


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
