"""``manage.py send_test_event``: POST one well-formed Pub/Sub push to an interceptor and show its answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from interceptor import push_samples


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, AUTH_OPTION...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "POST a Pub/Sub push envelope of one event kind for a conversation to an interceptor, as Pub/Sub would, "
        "and print the HTTP status and answer. Exits non-zero unless the interceptor answers 204 (delivered). "
        "A deployed interceptor behind --no-allow-unauthenticated needs an OIDC token: "
        "gcloud auth print-identity-token --impersonate-service-account=INVOKER --audiences=URL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="the interceptor's base URL, e.g. https://cloud-pubsub-interceptor-x.a.run.app")
        parser.add_argument(
            "--kind",
            choices=push_samples.EVENT_KINDS,
            default=push_samples.NEW_MESSAGE_EVENT,
            help="event kind, which is also the endpoint path (default %(default)s)",
        )
        parser.add_argument(
            "--conversation",
            required=True,
            help="conversation name: projects/P/conversations/C or projects/P/locations/L/conversations/C",
        )
        parser.add_argument("--message-id", help="Pub/Sub messageId (default: a fresh random one)")
        token = parser.add_mutually_exclusive_group()
        token.add_argument(
            "--token", help="OIDC bearer token to send (visible in the process list: prefer --token-file)"
        )
        token.add_argument("--token-file", type=Path, help="file holding the OIDC bearer token")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
        parser.add_argument("--show-envelope", action="store_true", help="also print the envelope sent")

    def handle(self, *args: Any, **options: Any) -> None:
        """Build the envelope, POST it, print the answer; ``CommandError`` for anything but 204."""
        base = options["url"].rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise CommandError(f"url must start with http:// or https://, got {options['url']!r}")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be positive")
        try:
            envelope = push_samples.sample_push(
                options["kind"], options["conversation"], message_id=options["message_id"]
            )
        except push_samples.InvalidConversation as error:
            raise CommandError(str(error)) from None
        headers = {"Content-Type": "application/json"}
        token = _token(options)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if options["show_envelope"]:
            self.stdout.write(json.dumps(envelope, indent=2))
        endpoint = f"{base}/{options['kind']}"
        try:
            response = httpx.post(
                endpoint, content=push_samples.encode(envelope), headers=headers, timeout=options["timeout"]
            )
        except httpx.HTTPError as error:
            raise CommandError(f"POST {endpoint} failed: {error.__class__.__name__}: {error}") from None
        message_id = envelope["message"]["messageId"]
        self.stdout.write(f"HTTP {response.status_code} from POST {endpoint} (messageId {message_id})")
        if response.content:
            self.stdout.write(response.text)
        if response.status_code != 204:
            raise CommandError(f"the interceptor did not deliver the event (HTTP {response.status_code}, expected 204)")


def _token(options: dict[str, Any]) -> str:
    """The bearer token from ``--token`` or ``--token-file``, stripped; empty when neither is given."""
    if options["token"] is not None:
        token = options["token"].strip()
        if not token:
            raise CommandError("--token is empty")
        return token
    path: Path | None = options["token_file"]
    if path is None:
        return ""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"--token-file {path} cannot be read: {error.__class__.__name__}") from None
    if not token:
        raise CommandError(f"--token-file {path} is empty")
    return token
