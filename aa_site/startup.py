"""Start-up of a serving process: run the system checks, then say what is running."""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core import checks

from events import redis_config

logger = logging.getLogger("aa_site")


def prepare_process() -> None:
    """Exit with the failing checks named if the configuration cannot work."""
    messages = checks.run_checks(include_deployment_checks=False)
    errors = [m for m in messages if m.is_serious() and not m.is_silenced()]
    for message in messages:
        if not message.is_silenced() and not message.is_serious():
            logger.warning("%s", _plain(message))
    if errors:
        print(
            "aa-backend cannot start; fix these settings:\n" + "\n".join(f"  {_plain(e)}" for e in errors),
            file=sys.stderr,
        )
        raise SystemExit(2)
    if settings.REDISHOST:
        # Host, port, TLS and whether AUTH is on; never the password.
        logger.info(
            "aa-backend role=%s: events, sessions and limits in Redis at %s",
            settings.SERVICE_ROLE,
            redis_config.describe(),
        )
    else:
        logger.warning(
            "aa-backend role=%s: no REDISHOST, keeping events in process; "
            "events reach only desktops connected to this process",
            settings.SERVICE_ROLE,
        )
    if settings.SERVICE_ROLE != "interceptor":
        # The checks above already read the secrets; this names their sources, never their values.
        from connector import jwt_secret

        previous = jwt_secret.describe_previous_source()
        logger.info(
            "JWT signing secret from %s%s",
            jwt_secret.describe_source(),
            f"; tokens signed with the previous secret from {previous} are still accepted" if previous else "",
        )


def _plain(message: checks.CheckMessage) -> str:
    text = f"{message.id}: {message.msg}"
    if message.hint:
        text += f" HINT: {message.hint}"
    return text
