"""Where the JWT signing secret (and, during a rotation, the previous one) comes from.

Read once, on first use: ``aa_site.startup`` runs the ``check_jwt_secret``
system check before serving, and that check calls ``describe_source()``, so
a serving connector reads its secrets at start-up, never at import and never
per request. Changing a ``JWT_*`` or ``SECRET_MANAGER_*`` setting (tests do)
drops the cached values.

Current secret, the first source that is configured wins:

1. ``JWT_SECRET_KEY``: the value itself (development, or platforms without
   Secret Manager). Setting it together with ``JWT_SECRET_NAME`` is refused
   as ambiguous.
2. The file at ``JWT_SECRET_KEY_PATH`` (default ``/secret/jwt_secret_key``;
   also read as ``JWT_SECRET_KEY_FILE``, its earlier name), when it exists:
   Cloud Run mounts a Secret Manager secret there with ``--update-secrets``.
   It beats ``JWT_SECRET_NAME`` because the sample's deployment sets both,
   for the same secret, and the file needs no API call.
3. ``JWT_SECRET_NAME``: read from Secret Manager with the service's
   Application Default Credentials. A bare secret id means
   ``projects/{GCP_PROJECT_ID}/secrets/{id}/versions/latest``; a full
   ``projects/P/secrets/S`` name (optionally ``/versions/V``) is used as given.
   ``SECRET_MANAGER_API_ENDPOINT`` overrides Google's endpoint (a proxy, or
   the local fake the tests run).
4. With ``DEVELOPMENT_MODE=true`` only, a fixed, public development secret.

Previous secret (optional; it only verifies tokens, never signs), same order:
``JWT_PREVIOUS_SECRET_KEY``, the file at ``JWT_PREVIOUS_SECRET_KEY_FILE``
(default ``/secret/jwt_previous_secret_key``) when it exists,
``JWT_PREVIOUS_SECRET_NAME``. Nothing configured means no previous secret.

The sample backend signed every token with an empty key; an empty secret is
always refused. Outside development mode a secret (current or previous, from
any source) is also refused when it is the public ``DEVELOPMENT_SECRET``,
shorter than ``MINIMUM_LENGTH`` or below ``MINIMUM_ENTROPY_BITS`` by
``estimated_entropy_bits``. A secret that cannot be read or is refused stops
start-up with ``SecretUnavailable`` naming the setting; no message ever
contains a secret value.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.signals import setting_changed

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError

MINIMUM_LENGTH = 32
# HS256 keys should carry at least the hash's security level in randomness; 128 bits is the usual floor.
MINIMUM_ENTROPY_BITS = 128
DEVELOPMENT_SOURCE = "development default"
# Deliberately public: only ever used with DEVELOPMENT_MODE=true.
DEVELOPMENT_SECRET = "aa-backend-development-only-secret-do-not-deploy"
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))' (or: openssl rand -base64 48)"
# Outside development mode (the refusal's hint): a secret, or development mode for a local run.
HINT = (
    "Mount the secret at JWT_SECRET_KEY_PATH (default /secret/jwt_secret_key), set JWT_SECRET_NAME to a "
    "Secret Manager secret the service account may access, set JWT_SECRET_KEY, or run with DEVELOPMENT_MODE=true. "
    f"It must be random: at least {MINIMUM_LENGTH} characters and about {MINIMUM_ENTROPY_BITS} bits; "
    f"generate one with {GENERATE}."
)
# In development mode (the warning's hint, on every local command): it is already on, so, briefly, what
# production needs; outside development mode the refusal's hint says how to make a secret.
DEVELOPMENT_HINT = (
    "Nothing to do for a local run. In production leave DEVELOPMENT_MODE unset and give the connector a random "
    "secret through JWT_SECRET_NAME (Secret Manager), a file at JWT_SECRET_KEY_PATH or JWT_SECRET_KEY."
)

# Secret ids Secret Manager allows; a full name is projects/P/secrets/S[/versions/V].
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_RESOURCE = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}(/versions/[^/]+)?$")


@dataclass(frozen=True)
class _Sources:
    """The three settings that can hold one secret."""

    key: str
    file: str
    name: str


CURRENT = _Sources("JWT_SECRET_KEY", "JWT_SECRET_KEY_PATH", "JWT_SECRET_NAME")
PREVIOUS = _Sources("JWT_PREVIOUS_SECRET_KEY", "JWT_PREVIOUS_SECRET_KEY_FILE", "JWT_PREVIOUS_SECRET_NAME")


@dataclass(frozen=True)
class Secrets:
    """The loaded secrets and where each came from (descriptions are safe to log)."""

    current: str
    source: str
    previous: str | None = None
    previous_source: str | None = None


class SecretUnavailable(Exception):
    """No usable signing secret is configured, or a configured one cannot be read."""


_lock = threading.Lock()
_cached: Secrets | None = None


def verification_secrets() -> tuple[str, ...]:
    """Every secret a token may be signed with: the current one first, then the previous one if configured."""
    loaded = _load()
    return (loaded.current,) if loaded.previous is None else (loaded.current, loaded.previous)


def describe_source() -> str:
    """Where the current secret comes from (never the secret); raise ``SecretUnavailable`` if unusable."""
    return _load().source


def describe_previous_source() -> str | None:
    """Where the previous secret comes from, or ``None`` when no rotation is in progress."""
    return _load().previous_source


def _load() -> Secrets:
    global _cached
    with _lock:
        if _cached is None:
            _cached = _read_all()
        return _cached


def _read_all() -> Secrets:
    current = _read(CURRENT)
    if current is None:
        if not settings.DEVELOPMENT_MODE:
            path = settings.JWT_SECRET_KEY_PATH
            raise SecretUnavailable(
                f"No JWT signing secret: JWT_SECRET_KEY and JWT_SECRET_NAME are empty and {path} does not exist."
            )
        current = (DEVELOPMENT_SECRET, DEVELOPMENT_SOURCE)
    previous = _read(PREVIOUS)
    if previous is None or previous[0] == current[0]:
        # The same value twice adds nothing to verify with (a rotation not started, or already finished).
        return Secrets(*current)
    return Secrets(*current, *previous)


def _read(sources: _Sources) -> tuple[str, str] | None:
    """(secret, description) from the first configured source, ``None`` when none is configured."""
    value = getattr(settings, sources.key)
    name = getattr(settings, sources.name)
    if value and name:
        raise SecretUnavailable(f"{sources.key} and {sources.name} are both set; set only one of them.")
    if value:
        return _validated(value, sources.key)
    configured_path = getattr(settings, sources.file)
    path = Path(configured_path)
    if configured_path and path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise SecretUnavailable(f"{sources.file} {path} cannot be read: {error.__class__.__name__}.") from None
        return _validated(text, f"{sources.file} {path}")
    if name:
        version = secret_version_name(name, setting=sources.name)
        return _validated(_access(version, setting=sources.name), f"{sources.name} {version}")
    return None


def secret_version_name(value: str, *, setting: str = "JWT_SECRET_NAME") -> str:
    """The Secret Manager version ``value`` designates.

    A bare id means its ``latest`` version in ``GCP_PROJECT_ID``; a full name is kept (``latest`` if it has no version).
    """
    if value.startswith("projects/"):
        if not _SECRET_RESOURCE.match(value):
            raise SecretUnavailable(
                f"{setting} {value!r} is not a Secret Manager secret name: use a secret id, "
                "projects/PROJECT/secrets/SECRET or projects/PROJECT/secrets/SECRET/versions/VERSION."
            )
        return value if "/versions/" in value else f"{value}/versions/latest"
    if not _SECRET_ID.match(value):
        raise SecretUnavailable(
            f"{setting} {value!r} is not a Secret Manager secret id (letters, digits, '-' and '_', at most 255)."
        )
    if not settings.GCP_PROJECT_ID:
        raise SecretUnavailable(f"{setting} is a bare secret id, so GCP_PROJECT_ID must name its project.")
    return f"projects/{settings.GCP_PROJECT_ID}/secrets/{value}/versions/latest"


def _access(version: str, *, setting: str) -> str:
    """The text of secret ``version`` from the Secret Manager REST API; ``SecretUnavailable`` naming ``setting``."""
    # Imported here: processes that never read Secret Manager do not load the client library.
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.api_core import retry
    from google.auth import exceptions as auth_exceptions
    from google.cloud import secretmanager

    timeout = settings.SECRET_MANAGER_TIMEOUT
    endpoint = settings.SECRET_MANAGER_API_ENDPOINT
    where = f"{setting}: cannot read {version} from Secret Manager"
    try:
        # REST rather than gRPC: plain HTTPS through any proxy, and a local fake in tests.
        with secretmanager.SecretManagerServiceClient(
            transport="rest", client_options={"api_endpoint": endpoint} if endpoint else None
        ) as client:
            response = client.access_secret_version(
                name=version,
                timeout=timeout,
                # Retry 429, 5xx and dropped connections, but give up within the timeout: start-up must end.
                retry=retry.Retry(predicate=retry.if_transient_error, initial=0.2, maximum=2.0, timeout=timeout),
            )
    except api_exceptions.RetryError as error:
        cause = error.cause.__class__.__name__ if error.cause is not None else "no answer"
        raise SecretUnavailable(f"{where}: no answer within {timeout:g} s (last error: {cause}).") from None
    except api_exceptions.GoogleAPICallError as error:
        raise SecretUnavailable(f"{where}: {error.code} {error.__class__.__name__}: {_server_message(error)}") from None
    except auth_exceptions.DefaultCredentialsError as error:
        raise SecretUnavailable(f"{where}: no Google credentials ({error}).") from None
    except (auth_exceptions.GoogleAuthError, requests.RequestException) as error:
        raise SecretUnavailable(f"{where}: {error.__class__.__name__}.") from None
    try:
        return response.payload.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{where}: the secret is not UTF-8 text.") from None


def _server_message(error: GoogleAPICallError) -> str:
    """Google's explanation without the "GET <url>: " the REST transport puts in front of it."""
    method, _, rest = error.message.partition(" ")
    if method in ("GET", "POST") and ": " in rest:
        return rest.split(": ", 1)[1]
    return error.message


def _validated(value: str, source: str) -> tuple[str, str]:
    if not value:
        raise SecretUnavailable(f"The JWT secret from {source} is empty.")
    if settings.DEVELOPMENT_MODE:
        return value, source
    if value == DEVELOPMENT_SECRET:
        raise SecretUnavailable(
            f"The JWT secret from {source} is the built-in development secret, which is public: anyone could "
            "forge tokens."
        )
    if len(value) < MINIMUM_LENGTH:
        raise SecretUnavailable(
            f"The JWT secret from {source} is shorter than {MINIMUM_LENGTH} characters."
        )
    if estimated_entropy_bits(value) < MINIMUM_ENTROPY_BITS:
        raise SecretUnavailable(
            f"The JWT secret from {source} is too predictable (repeated characters, a sequence or too few "
            f"different characters; under {MINIMUM_ENTROPY_BITS} bits by this service's estimate)."
        )
    return value, source


def estimated_entropy_bits(value: str) -> float:
    """A rough, deliberately low estimate of the randomness in ``value``, in bits.

    The lower of two figures: the length times the Shannon entropy of the
    characters' frequencies, and the same for the steps between neighbouring
    characters (differences of code points).
    """
    # The first figure catches repeats and small alphabets ("a" * 32 is 0 bits, "abab..." 1 bit a character);
    # the second catches sequences that use many characters ("abcdef...", "0123...", any constant step),
    # whose steps all look alike. It is a guard against mistakes, not a proof of randomness: a long
    # passphrase of words still passes. Measured over 20,000 draws each: secrets.token_urlsafe(48)
    # and openssl rand -base64 48 give about 300; a random 32-character base64url secret about 150 (below
    # 128 about once in 7,000 draws); 32 random hex digits about 115, so hex needs 48 digits or more.
    steps = [ord(after) - ord(before) for before, after in zip(value, value[1:])]
    return min(_shannon_bits(list(value)), _shannon_bits(steps))


def _shannon_bits(symbols: list) -> float:
    """``len(symbols)`` times the Shannon entropy of their observed frequencies."""
    count = len(symbols)
    if count == 0:
        return 0.0
    return -sum(seen * math.log2(seen / count) for seen in Counter(symbols).values())


def _reset(*, setting: str, **kwargs) -> None:
    global _cached
    if setting.startswith(("JWT_", "SECRET_MANAGER_")) or setting in ("DEVELOPMENT_MODE", "GCP_PROJECT_ID"):
        with _lock:
            _cached = None


setting_changed.connect(_reset)
