"""``manage.py create_push_subscriptions``: the four topics, and one OIDC-authenticated push subscription each."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployment.google_apis import client_options, google_errors
from deployment.plan import PUBSUB_NAMES
from events.kinds import EventKind

DEFAULT_INVOKER = "cloud-run-pubsub-invoker"
_ACCOUNT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$")


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, secrets...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "Create the four Pub/Sub topics when missing, and one push subscription per event kind to the "
        "interceptor's endpoint for it (INTERCEPTOR_URL/<kind>), with OIDC push authentication as the invoker "
        "service account and no expiry. An existing subscription whose push configuration differs is updated. "
        "Uses Application Default Credentials; PUBSUB_API_ENDPOINT (or --api-endpoint) points it at a proxy or "
        "a test double."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interceptor-url", required=True, help="the interceptor service's https URL")
        parser.add_argument("--project", help="project of the topics and subscriptions (default GCP_PROJECT_ID)")
        parser.add_argument("--invoker-account", help=f"service account the pushes authenticate as (default "
                            f"{DEFAULT_INVOKER}@PROJECT.iam.gserviceaccount.com)")
        parser.add_argument("--audience", default="", help="OIDC audience of every push (default: each push URL, "
                            "as PUSH_AUTH_AUDIENCE's default expects)")
        parser.add_argument("--api-endpoint", default=None, help="Pub/Sub REST endpoint (default PUBSUB_API_ENDPOINT, "
                            "else Google's)")
        parser.add_argument("--dry-run", action="store_true", help="say what would be created; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        """Create what is missing, fix what differs, and say which."""
        project = options["project"] or settings.GCP_PROJECT_ID
        if not project:
            raise CommandError("no project: pass --project or set GCP_PROJECT_ID")
        base = options["interceptor_url"].rstrip("/")
        url = urlsplit(base)
        if url.scheme not in ("https", "http") or not url.hostname or url.query or url.fragment or url.path:
            raise CommandError(f"--interceptor-url {base!r} is not a service URL such as https://name-abc-ew.a.run.app")
        if url.scheme != "https" and url.hostname not in ("127.0.0.1", "localhost"):
            raise CommandError("--interceptor-url must be https: Pub/Sub sends OIDC-authenticated pushes only there")
        invoker = options["invoker_account"] or f"{DEFAULT_INVOKER}@{project}.iam.gserviceaccount.com"
        if not _ACCOUNT.match(invoker):
            raise CommandError(f"--invoker-account {invoker!r} is not a service account email")
        plan = [(f"projects/{project}/topics/{PUBSUB_NAMES[kind][0]}",
                 f"projects/{project}/subscriptions/{PUBSUB_NAMES[kind][1]}", f"{base}/{kind}") for kind in EventKind]
        if options["dry_run"]:
            for topic, subscription, endpoint in plan:
                self.stdout.write(f"Would ensure {topic} and {subscription} pushing to {endpoint} as {invoker}")
            return
        from google.api_core import exceptions as api_exceptions
        from google.pubsub_v1 import PublisherClient, SubscriberClient
        from google.pubsub_v1.types import PushConfig

        endpoint_option = options["api_endpoint"] if options["api_endpoint"] is not None \
            else settings.PUBSUB_API_ENDPOINT
        client_settings = {"transport": "rest", "client_options": client_options(endpoint_option)}
        with google_errors("Pub/Sub"), PublisherClient(**client_settings) as publisher, \
                SubscriberClient(**client_settings) as subscriber:
            for topic, subscription, endpoint in plan:
                try:
                    publisher.create_topic(name=topic, timeout=30)
                    self.stdout.write(f"Created {topic}")
                except api_exceptions.Conflict:  # 409: ALREADY_EXISTS (AlreadyExists is a Conflict)
                    self.stdout.write(f"{topic} exists")
                push = PushConfig(push_endpoint=endpoint, oidc_token=PushConfig.OidcToken(
                    service_account_email=invoker, audience=options["audience"]))
                try:
                    # An empty expiration policy: the subscription never expires while idle.
                    subscriber.create_subscription(request={"name": subscription, "topic": topic,
                                                            "push_config": push, "expiration_policy": {}}, timeout=30)
                    self.stdout.write(f"Created {subscription} -> {endpoint} as {invoker}")
                    continue
                except api_exceptions.Conflict:  # 409: ALREADY_EXISTS (AlreadyExists is a Conflict)
                    pass
                current = subscriber.get_subscription(subscription=subscription, timeout=30)
                if current.topic != topic:
                    raise CommandError(f"{subscription} exists but reads {current.topic}, not {topic}; delete it or "
                                       "choose other names")
                if PushConfig.to_dict(current.push_config) == PushConfig.to_dict(push):
                    self.stdout.write(f"{subscription} exists and pushes to {endpoint} as {invoker}")
                    continue
                subscriber.modify_push_config(subscription=subscription, push_config=push, timeout=30)
                self.stdout.write(f"Updated {subscription} -> {endpoint} as {invoker}")
