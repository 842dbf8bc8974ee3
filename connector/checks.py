"""System checks of the connector's settings: the signing secret, the Dialogflow proxy's endpoint, service callers.

Registered by ``ConnectorConfig.ready``; ``aa_site.startup`` runs them before
anything is served. Their ids keep the ``aa_site.`` prefix they were
published with, so an operator's ``SILENCED_SYSTEM_CHECKS`` still applies.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register

from connector import jwt_secret


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
                "JWT signing uses the built-in development secret (DEVELOPMENT_MODE=true and no secret is "
                "configured): anyone can forge tokens.",
                hint=jwt_secret.DEVELOPMENT_HINT,
                id="aa_site.W001",
            )
        ]
    return []


@register()
def check_dialogflow_proxy(app_configs=None, **kwargs) -> list:
    """The Dialogflow endpoint overrides (the REST proxy's and the streams' WebChannel root) must be plain http(s) roots."""
    problems = []
    for name, error_id in (("DIALOGFLOW_API_ROOT", "aa_site.E040"), ("DIALOGFLOW_WEBCHANNEL_ROOT", "aa_site.E041")):
        root = getattr(settings, name)
        if not root:
            continue
        scheme, _, rest = root.partition("://")
        if scheme not in ("https", "http") or not rest or any(character in rest for character in "?#@ "):
            problems.append(
                Error(
                    f"{name} must be an http(s) URL without query or credentials, got {root!r}.",
                    hint="Leave it unset to call Google's Dialogflow endpoint for each location.",
                    id=error_id,
                )
            )
    return problems


@register()
def check_service_callers(app_configs=None, **kwargs) -> list:
    """Service callers (connector/http/service_callers.py): an allow-list needs an audience and well-formed entries."""
    allowed = settings.SERVICE_AUTH_ALLOWED_CALLERS
    if not allowed:
        return []
    # Here, not at the top: every role runs these checks, and the module loads Google's token verification
    # (httpx, google-auth), which only a connector with an allow-list needs; a cold start pays for each import.
    from connector.http import service_callers

    problems = []
    if not settings.SERVICE_AUTH_AUDIENCE:
        problems.append(
            Error(
                "SERVICE_AUTH_ALLOWED_CALLERS is set but SERVICE_AUTH_AUDIENCE is not, "
                "so no ID token could be accepted.",
                hint="Set SERVICE_AUTH_AUDIENCE to the connector's URL, e.g. https://ui-connector-abc-uc.a.run.app "
                "(the --audiences callers request their ID tokens for).",
                id="aa_site.E050",
            )
        )
    for url in settings.SERVICE_AUTH_AUDIENCE:
        if not url.startswith(("https://", "http://")):
            problems.append(
                Error(f"SERVICE_AUTH_AUDIENCE entries must be http(s) URLs, got {url!r}.", id="aa_site.E051")
            )
    for entry in allowed:
        problem = service_callers.entry_problem(entry)
        if problem:
            problems.append(
                Error(
                    f"SERVICE_AUTH_ALLOWED_CALLERS entry {entry!r} {problem}.",
                    hint="Write exact emails (caller@PROJECT.iam.gserviceaccount.com) or "
                    "*@PROJECT.iam.gserviceaccount.com.",
                    id="aa_site.E052",
                )
            )
    if not settings.SERVICE_AUTH_CERTS_URL.startswith(("https://", "http://")):
        problems.append(
            Error(
                f"SERVICE_AUTH_CERTS_URL must be an http(s) URL, got {settings.SERVICE_AUTH_CERTS_URL!r}.",
                hint="Leave it unset to use https://www.googleapis.com/oauth2/v1/certs.",
                id="aa_site.E053",
            )
        )
    return problems
