"""Where the JWT signing secret comes from, read once on first use.

Order: the ``JWT_SECRET_KEY`` setting, then the file at ``JWT_SECRET_KEY_FILE``
(Cloud Run mounts the Secret Manager secret there with ``--update-secrets``),
then, in development mode only, a fixed development secret. The sample
backend signed every token with an empty key; an empty or short secret is
refused here outside development mode.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings
from django.core.signals import setting_changed

MINIMUM_LENGTH = 32
DEVELOPMENT_SOURCE = "development default"
# Deliberately public: only ever used with DEVELOPMENT_MODE=true.
DEVELOPMENT_SECRET = "aa-backend-development-only-secret-do-not-deploy"
HINT = (
    "Mount the secret at JWT_SECRET_KEY_FILE (default /secret/jwt_secret_key), set JWT_SECRET_KEY, "
    f"or run with DEVELOPMENT_MODE=true. It must be at least {MINIMUM_LENGTH} characters."
)

_lock = threading.Lock()
_cached: tuple[str, str] | None = None


class SecretUnavailable(Exception):
    """No usable signing secret is configured."""


def signing_secret() -> str:
    """Return the signing secret, reading its source the first time only."""
    return _load()[0]


def describe_source() -> str:
    """Return where the secret comes from (never the secret); raise if unusable."""
    return _load()[1]


def _load() -> tuple[str, str]:
    global _cached
    with _lock:
        if _cached is None:
            _cached = _read()
        return _cached


def _read() -> tuple[str, str]:
    if settings.JWT_SECRET_NAME:
        raise SecretUnavailable(
            "JWT_SECRET_NAME is set, but reading the secret from Secret Manager is not supported yet; "
            "mount it as a file with Cloud Run --update-secrets instead."
        )
    if settings.JWT_SECRET_KEY:
        return _validated(settings.JWT_SECRET_KEY, "JWT_SECRET_KEY")
    path = Path(settings.JWT_SECRET_KEY_FILE)
    if path.is_file():
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SecretUnavailable(f"JWT_SECRET_KEY_FILE {path} cannot be read: {error.__class__.__name__}.")
        return _validated(value, f"JWT_SECRET_KEY_FILE {path}")
    if settings.DEVELOPMENT_MODE:
        return DEVELOPMENT_SECRET, DEVELOPMENT_SOURCE
    raise SecretUnavailable(f"No JWT signing secret: JWT_SECRET_KEY is empty and {path} does not exist.")


def _validated(value: str, source: str) -> tuple[str, str]:
    if len(value) < MINIMUM_LENGTH and not settings.DEVELOPMENT_MODE:
        raise SecretUnavailable(f"The JWT signing secret from {source} is shorter than {MINIMUM_LENGTH} characters.")
    if not value:
        raise SecretUnavailable(f"The JWT signing secret from {source} is empty.")
    return value, source


def _reset(*, setting: str, **kwargs) -> None:
    global _cached
    if setting.startswith("JWT_") or setting == "DEVELOPMENT_MODE":
        with _lock:
            _cached = None


setting_changed.connect(_reset)
