"""``manage.py configure_conversation_profile``: publish a profile's four notifications to the topics, in JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from deployment.google_apis import client_options, google_errors
from deployment.plan import PUBSUB_NAMES
from events.kinds import EventKind

# Which notification config of a ConversationProfile (Dialogflow v2) publishes each event kind.
PROFILE_FIELDS = {
    "human-agent-assistant-event": "human_agent_assistant_config.notification_config",
    "new-message-event": "new_message_event_notification_config",
    "conversation-lifecycle-event": "notification_config",
    "new-recognition-result-notification-event": "new_recognition_result_notification_config",
}
_PROFILE = re.compile(r"^projects/(?P<project>[^/]+)/(?:locations/(?P<location>[^/]+)/)?conversationProfiles/"
                      r"(?P<id>[A-Za-z0-9_-]+)$")
_PROFILE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_TOPIC = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/topics/[A-Za-z][A-Za-z0-9._~%+-]{2,254}$")


class Command(BaseCommand):
    # An operator tool: the serving checks (REDISHOST, secrets...) do not apply to it.
    requires_system_checks: list[str] = []
    help = (
        "Point a Dialogflow conversation profile's notification configs (suggestions, new messages, lifecycle "
        "events, recognition results) at the Pub/Sub topics, with message format JSON (the interceptor reads JSON "
        "only). Other settings of the profile are left as they are. Uses Application Default Credentials; "
        "DIALOGFLOW_API_ROOT (or --api-endpoint) points it at a proxy or a test double."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--conversation-profile", required=True,
                            help="profile id, or projects/P[/locations/L]/conversationProfiles/ID")
        parser.add_argument("--project", help="project of a bare profile id (default GCP_PROJECT_ID)")
        parser.add_argument("--location", default="global", help="location of a bare profile id (default global)")
        for kind in EventKind:
            parser.add_argument(f"--{kind}-topic", dest=_dest(kind),
                                help=f"topic for {kind} (default projects/P/topics/{PUBSUB_NAMES[kind][0]})")
        parser.add_argument("--message-format", default="JSON", help="must be JSON (the default)")
        parser.add_argument("--api-endpoint", default=None, help="Dialogflow REST endpoint (default DIALOGFLOW_API_ROOT, "
                            "else Google's for the location)")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the update request it would send; read and update nothing (needs no "
                                 "credentials)")

    def handle(self, *args: Any, **options: Any) -> None:
        """Read the profile, then update its four notification configs (with --dry-run: print the update)."""
        if options["message_format"].upper() != "JSON":
            raise CommandError(f"--message-format {options['message_format']!r}: the interceptor reads JSON "
                               "notifications only; use JSON")
        name, project, location = _profile_name(options)
        topics = {}
        for kind in EventKind:
            topic = options[_dest(kind)] or f"projects/{project}/topics/{PUBSUB_NAMES[kind][0]}"
            if not _TOPIC.match(topic):
                raise CommandError(f"--{kind}-topic {topic!r} is not projects/PROJECT/topics/TOPIC")
            topics[kind] = topic
        endpoint = options["api_endpoint"] if options["api_endpoint"] is not None else settings.DIALOGFLOW_API_ROOT
        if not endpoint and location != "global":
            endpoint = f"https://{location}-dialogflow.googleapis.com"
        if options["dry_run"]:
            # Before any client exists: the client asks for credentials as it is made.
            self.stdout.write(_update_request(name, topics, endpoint or "https://dialogflow.googleapis.com"))
            return
        from google.cloud import dialogflow_v2 as dialogflow
        from google.protobuf import field_mask_pb2

        with google_errors("Dialogflow"), dialogflow.ConversationProfilesClient(
            transport="rest", client_options=client_options(endpoint)
        ) as client:
            profile = client.get_conversation_profile(name=name, timeout=30)
            json_format = dialogflow.NotificationConfig.MessageFormat.JSON
            changes = []
            for kind, topic in topics.items():
                config = _field(profile, PROFILE_FIELDS[kind])
                if config.topic != topic or config.message_format != json_format:
                    before = f"{config.topic or '(none)'} {config.message_format.name}"
                    changes.append(f"  {kind}: {before} -> {topic} JSON")
                    config.topic, config.message_format = topic, json_format
            if not changes:
                self.stdout.write(f"{name} already publishes the four notifications to those topics in JSON.")
                return
            mask = field_mask_pb2.FieldMask(paths=[PROFILE_FIELDS[kind] for kind in EventKind])
            client.update_conversation_profile(conversation_profile=profile, update_mask=mask, timeout=30)
        self.stdout.write(f"Updated {name}:\n" + "\n".join(changes))


def _update_request(name: str, topics: dict[str, str], endpoint: str) -> str:
    """The REST request an update sends (``projects.conversationProfiles.patch``), whatever the profile has now:
    the four notification configs, the mask naming only them."""
    body: dict[str, Any] = {}
    for kind in EventKind:
        *parents, last = [_camel(part) for part in PROFILE_FIELDS[kind].split(".")]
        node = body
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = {"topic": topics[kind], "messageFormat": "JSON"}
    mask = ",".join(PROFILE_FIELDS[kind] for kind in EventKind)
    return (f"Dry run, nothing read or sent: the update of {name} would be\n"
            f"PATCH {endpoint.rstrip('/')}/v2/{name}?updateMask={mask}\n{json.dumps(body, indent=2)}")


def _camel(field: str) -> str:
    first, *rest = field.split("_")
    return first + "".join(word.title() for word in rest)


def _dest(kind: str) -> str:
    return kind.replace("-", "_") + "_topic"


def _field(profile: Any, path: str) -> Any:
    value = profile
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _profile_name(options: dict[str, Any]) -> tuple[str, str, str]:
    """(full name, project, location) from ``--conversation-profile`` and its defaults."""
    value = options["conversation_profile"].strip()
    full = _PROFILE.match(value)
    if full:
        if options["project"] and options["project"] != full["project"]:
            raise CommandError(f"--conversation-profile names project {full['project']}, but --project is "
                               f"{options['project']}")
        return value, full["project"], full["location"] or "global"
    if not _PROFILE_ID.match(value):
        raise CommandError(f"--conversation-profile {value!r} is not a profile id or "
                           "projects/P[/locations/L]/conversationProfiles/ID")
    project = options["project"] or settings.GCP_PROJECT_ID
    if not project:
        raise CommandError("no project: pass --project or set GCP_PROJECT_ID")
    location = options["location"]
    return f"projects/{project}/locations/{location}/conversationProfiles/{value}", project, location
