"""Start-up checks for the identity-provider settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from auth_providers import registry
from auth_providers.base import BaseIdentityProvider


@register()
def check_providers(app_configs=None, **kwargs) -> list:
    """Every configured provider must load; development-only ones need development mode."""
    if settings.SERVICE_ROLE == "interceptor":
        return []
    problems = []
    for setting in registry.SETTINGS:
        try:
            provider = registry.load_provider(setting, getattr(settings, setting))
        except ImproperlyConfigured as error:
            problems.append(Error(str(error), id="auth_providers.E001"))
            continue
        if provider is None:
            if setting == "AUTH_OPTION":
                problems.append(
                    Warning("AUTH_OPTION is empty: every /register request will be refused.", id="auth_providers.W001")
                )
        elif provider.development_only and not settings.DEVELOPMENT_MODE:
            problems.append(
                Error(
                    f"{setting}={provider.name} accepts anyone and is allowed only with DEVELOPMENT_MODE=true.",
                    id="auth_providers.E002",
                )
            )
        else:
            problems.extend(_settings_problems(setting, provider))
    return problems


def _settings_problems(setting: str, provider: BaseIdentityProvider) -> list[Error]:
    """Settings the chosen provider needs, as its ``settings_problems()`` names them."""
    return [
        Error(message, hint=f"{setting}={getattr(settings, setting)} needs this setting.", id="auth_providers.E003")
        for message in provider.settings_problems()
    ]
