"""System checks of the interceptor's settings: authenticated push.

Registered by ``InterceptorConfig.ready``; ``aa_site.startup`` runs them
before anything is served. Their ids keep the ``aa_site.`` prefix they were
published with, so an operator's ``SILENCED_SYSTEM_CHECKS`` still applies.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register


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
