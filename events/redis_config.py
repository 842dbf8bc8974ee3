"""How to reach Redis: address, TLS with the server's CA, and the AUTH password, from the settings.

Memorystore as deployed speaks TLS (``--transit-encryption-mode=SERVER_AUTHENTICATION``,
verified against the instance's own server CA) and asks for an AUTH string
(``--enable-auth``), which lives in Secret Manager and reaches the service as a
mounted file. Every Redis client the service makes takes its options from
``connection_options`` (``events.redis_client``). The password is read when a
client is made, never at import, and never appears in ``describe`` or an error.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError


class RedisConfigError(RedisError):
    """A Redis setting cannot work; the message names the setting (never a password).

    A ``RedisError``, so a caller that survives Redis being down survives this too (the start-up
    checks refuse such settings; this covers a mounted file that vanishes later).
    """


def password() -> str | None:
    """The AUTH password: from ``REDIS_URL``, ``REDIS_AUTH_STRING`` or ``REDIS_AUTH_STRING_FILE`` (only one)."""
    sources = [name for name, value in (("REDIS_URL's password", settings.REDIS_PASSWORD),
                                        ("REDIS_AUTH_STRING", settings.REDIS_AUTH_STRING),
                                        ("REDIS_AUTH_STRING_FILE", settings.REDIS_AUTH_STRING_FILE)) if value]
    if len(sources) > 1:
        raise RedisConfigError(f"the Redis password is given twice ({' and '.join(sources)}); keep one")
    if settings.REDIS_PASSWORD:
        return settings.REDIS_PASSWORD
    if settings.REDIS_AUTH_STRING:
        return settings.REDIS_AUTH_STRING
    if settings.REDIS_AUTH_STRING_FILE:
        path = Path(settings.REDIS_AUTH_STRING_FILE)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise RedisConfigError(f"REDIS_AUTH_STRING_FILE {path} cannot be read ({error.__class__.__name__})") \
                from None
        if not value:
            raise RedisConfigError(f"REDIS_AUTH_STRING_FILE {path} is empty")
        return value
    return None


def tls_problem() -> str | None:
    """Why the TLS settings cannot work, or ``None``: a CA file that is no PEM certificate, or TLS off."""
    ca_file = settings.REDIS_TLS_CA_FILE
    if not ca_file:
        return None
    if not settings.REDIS_TLS:
        return "REDIS_TLS_CA_FILE is set but REDIS_URL is redis:// (no TLS); use rediss://"
    try:
        ssl.create_default_context(cafile=ca_file)
    except FileNotFoundError:
        return f"REDIS_TLS_CA_FILE {ca_file} does not exist"
    except (OSError, ssl.SSLError, ValueError) as error:
        return f"REDIS_TLS_CA_FILE {ca_file} is not a readable PEM certificate ({error.__class__.__name__})"
    return None


def connection_options() -> dict[str, Any]:
    """redis-py's address, AUTH and TLS keyword arguments; ``RedisConfigError`` when they cannot work."""
    options: dict[str, Any] = {
        "host": settings.REDISHOST,
        "port": settings.REDISPORT,
        "db": settings.REDIS_DB,
        "username": settings.REDIS_USERNAME or None,
        "password": password(),
    }
    if settings.REDIS_IAM_AUTH:
        if options["password"] or options["username"]:
            raise RedisConfigError("REDIS_IAM_AUTH is on and a Redis password or user is given too; keep one")
        # Imported here: google-auth only where it is used.
        from events import redis_iam

        options.update(username=None, password=None, credential_provider=redis_iam.provider())
    if settings.REDIS_TLS:
        problem = tls_problem()
        if problem:
            raise RedisConfigError(problem)
        options.update(
            ssl=True,
            ssl_cert_reqs="required",
            # Empty: the system's trust store (a Redis with a publicly signed certificate).
            ssl_ca_certs=settings.REDIS_TLS_CA_FILE or None,
            ssl_check_hostname=settings.REDIS_TLS_CHECK_HOSTNAME,
            ssl_min_version=ssl.TLSVersion.TLSv1_2,
        )
    return options


def describe() -> str:
    """Where Redis is and how it is reached, for the start-up log: no password, only whether there is one."""
    text = f"{settings.REDISHOST}:{settings.REDISPORT}"
    if settings.REDIS_CLUSTER:
        text += " (a Redis Cluster's discovery endpoint)"
    if settings.REDIS_DB:
        text += f" db {settings.REDIS_DB}"
    if settings.REDIS_TLS:
        ca = f"server CA from {settings.REDIS_TLS_CA_FILE}" if settings.REDIS_TLS_CA_FILE else "system CAs"
        text += f", TLS ({ca}{'' if settings.REDIS_TLS_CHECK_HOSTNAME else ', host name not checked'})"
    else:
        text += ", no TLS"
    if settings.REDIS_IAM_AUTH:
        return text + ", AUTH with the service's Google access token (IAM)"
    has_password = any((settings.REDIS_PASSWORD, settings.REDIS_AUTH_STRING, settings.REDIS_AUTH_STRING_FILE))
    if not has_password:
        return text + ", no AUTH"
    return text + (f", AUTH as {settings.REDIS_USERNAME}" if settings.REDIS_USERNAME else ", AUTH")
