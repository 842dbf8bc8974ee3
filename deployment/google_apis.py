"""What the operator commands share when they call Google APIs: REST clients' endpoint and clear errors.

``configure_conversation_profile`` (Dialogflow) and ``create_push_subscriptions`` (Pub/Sub) use
Google's client libraries over their REST transport with Application Default Credentials, as
``connector.jwt_secret`` does for Secret Manager; ``api_endpoint`` points them at a proxy or a
local fake. Failures become one line naming the call and Google's reason, never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.core.management.base import CommandError


def client_options(endpoint: str) -> dict[str, str] | None:
    """``client_options`` for a REST client: ``endpoint`` (``http(s)://host[:port]``) or Google's default."""
    return {"api_endpoint": endpoint.rstrip("/")} if endpoint else None


@contextlib.contextmanager
def google_errors(service: str) -> Iterator[None]:
    """Turn the client libraries' exceptions into ``CommandError`` naming ``service``."""
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except api_exceptions.GoogleAPICallError as error:
        raise CommandError(f"{service} refused: {error.code} {error.__class__.__name__}: {server_message(error)}") \
            from None
    except auth_exceptions.DefaultCredentialsError as error:
        raise CommandError(f"no Google credentials ({error}); run gcloud auth application-default login") from None
    except (auth_exceptions.GoogleAuthError, requests.RequestException) as error:
        raise CommandError(f"cannot reach {service}: {error.__class__.__name__}") from None


def server_message(error: Any) -> str:
    """Google's explanation without the "PATCH <url>: " the REST transport puts in front of it."""
    method, _, rest = str(error.message).partition(" ")
    if method in ("GET", "POST", "PUT", "PATCH", "DELETE") and ": " in rest:
        return rest.split(": ", 1)[1]
    return str(error.message)
