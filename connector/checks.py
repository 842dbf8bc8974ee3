"""System checks of the connector's settings: the signing secret and the Dialogflow proxy's endpoint.

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
                "JWT signing uses the built-in development secret: anyone can forge tokens.",
                hint=jwt_secret.HINT,
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
