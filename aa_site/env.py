"""Typed readers for environment settings that never raise at import.

A malformed value is recorded in ``PROBLEMS`` instead of raising, so that
``settings.py`` always imports and the system checks (``aa_site.checks``) can
report every bad setting by name before the service starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# (setting name, message) pairs; copied into settings.ENVIRONMENT_PROBLEMS.
PROBLEMS: list[tuple[str, str]] = []
# Messages about settings that work but may not do what was meant; copied into settings.ENVIRONMENT_NOTICES,
# which start-up logs as warnings.
NOTICES: list[str] = []

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def text(name: str, default: str = "") -> str:
    """Return the variable stripped of surrounding whitespace, or ``default``."""
    value = os.environ.get(name)
    return default if value is None else value.strip()


def renamed(name: str, old_name: str, default: str = "") -> str:
    """Return ``name``, also read under ``old_name`` (its name in Google's sample, or an earlier one), or
    ``default``.

    An empty value counts as unset, so a deploy script that passes an unset shell variable under one name
    does not hide the other. Set to different values, ``name`` wins and a notice names both: a deployment
    copied from the sample may carry the old name beside the new one, and must learn which value it runs on.
    """
    value, old_value = text(name), text(old_name)
    if value and old_value and value != old_value:
        NOTICES.append(f"{name} and {old_name} are both set, to different values: using {name}={value!r}, "
                       f"ignoring {old_name}={old_value!r}")
    return value or old_value or default


def flag(name: str, default: bool = False) -> bool:
    """Return a boolean from 1/0, true/false, yes/no or on/off."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    PROBLEMS.append((name, f"must be true or false, got {raw!r}"))
    return default


def integer(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return an integer within [minimum, maximum]."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        PROBLEMS.append((name, f"must be an integer, got {raw!r}"))
        return default
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        PROBLEMS.append((name, f"must be between {minimum} and {maximum}, got {value}"))
        return default
    return value


def number(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return a finite decimal number (for example seconds) within [minimum, maximum]."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        PROBLEMS.append((name, f"must be a number, got {raw!r}"))
        return default
    # float() accepts "nan" and "inf"; neither is a usable timeout.
    if not math.isfinite(value) or (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        PROBLEMS.append((name, f"must be a number between {minimum} and {maximum}, got {raw.strip()!r}"))
        return default
    return value


def choice(name: str, default: str, choices: Iterable[str]) -> str:
    """Return one of ``choices`` (compared case-insensitively)."""
    allowed = {c.lower(): c for c in choices}
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    value = allowed.get(raw.strip().lower())
    if value is None:
        PROBLEMS.append((name, f"must be one of {', '.join(sorted(allowed.values()))}, got {raw!r}"))
        return default
    return value


def items(name: str, default: Iterable[str] = ()) -> list[str]:
    """Return a comma- or whitespace-separated list, empty items dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item for item in raw.replace(",", " ").split() if item]


# Seconds per unit of a rate ("30/minute", "5/10s").
_RATE_UNITS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_RATE_OFF = {"0", "off"}


def rate(name: str, default: str) -> tuple[int, int] | None:
    """Return ``(requests, window seconds)`` from ``N/unit`` or ``N/<k><unit>``; ``None`` for 0 or off.

    Units: s, m, h, d (or second, minute, hour, day); the window is at most a day.
    Unset or empty means ``default``.
    """
    raw = os.environ.get(name)
    value = (default if raw is None or not raw.strip() else raw).strip().lower()
    if value in _RATE_OFF:
        return None
    parsed = _parse_rate(value)
    if parsed is None:
        PROBLEMS.append(
            (name, f"must look like 30/minute or 5/10s (units s, m, h, d; window at most a day), "
            f"or be 0 or off to disable, got {raw!r}")
        )
        return _parse_rate(default.strip().lower())
    return parsed


def _parse_rate(value: str) -> tuple[int, int] | None:
    count, slash, period = value.partition("/")
    period = period.strip()
    digits = len(period) - len(period.lstrip("0123456789"))
    multiplier, unit = period[:digits], period[digits:].strip()
    if not slash or not count.strip().isdigit() or unit not in _RATE_UNITS:
        return None
    requests, window = int(count), int(multiplier or "1") * _RATE_UNITS[unit]
    # A window beyond a day is a typo more likely than a policy (and keeps Redis TTLs sane).
    return (requests, window) if requests >= 1 and 1 <= window <= 86400 else None


def database(url: str, *, sqlite_path: str) -> dict:
    """Django's database settings from ``url`` (dj-database-url: ``postgres://...``, ``sqlite:///path``), or a
    SQLite file at ``sqlite_path`` when ``url`` is empty. A malformed URL is recorded without quoting it (it
    carries the password) and SQLite is used meanwhile, so the checks name it."""
    import dj_database_url

    if url:
        try:
            return dj_database_url.parse(url, conn_max_age=0, conn_health_checks=True)
        except ValueError:
            PROBLEMS.append(("DATABASE_URL", "must be postgres://user:password@host:port/name or sqlite:///path"))
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}


@dataclass(frozen=True)
class RedisUrl:
    """The parts of a ``redis://`` or ``rediss://`` URL the Redis clients use."""

    host: str
    port: int
    db: int
    tls: bool
    username: str = ""
    password: str = field(default="", repr=False)


def redis_url(name: str) -> RedisUrl | None:
    """Parse ``redis[s]://[[user]:password@]host[:port][/db]``; ``None`` when unset or malformed.

    A malformed value is recorded without quoting it: the URL may carry the AUTH password.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    shape = "must be redis://[[user]:password@]host[:port][/db] or rediss://... (TLS)"
    try:
        url = urlsplit(raw)
        port = url.port or 6379
        host = url.hostname or ""
    except ValueError:
        PROBLEMS.append((name, f"{shape}; its host or port is malformed"))
        return None
    path = url.path.lstrip("/")
    if url.scheme not in ("redis", "rediss"):
        problem = f"{shape}, got scheme {url.scheme!r}" if url.scheme.isalnum() else shape
    elif not host:
        problem = f"{shape}; it names no host"
    elif url.query or url.fragment:
        problem = f"{shape}; query parameters are not read (use REDIS_TLS_CA_FILE and REDIS_AUTH_STRING[_FILE])"
    elif path and not path.isdigit():
        problem = f"{shape}; the database must be a number"
    else:
        return RedisUrl(host=host, port=port, db=int(path or 0), tls=url.scheme == "rediss",
                        username=unquote(url.username or ""), password=unquote(url.password or ""))
    PROBLEMS.append((name, problem))
    return None
