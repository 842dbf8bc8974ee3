"""The operators' admin: Django's admin (staff login, users and groups) plus the live view of every instance.

Served under ``/admin/`` by the connector and ``all`` roles (``aa_site.urls``),
never by the interceptor, whose push path stays Django-free. Staff users live
in the database (``DATABASES``: SQLite by default, PostgreSQL from
``DATABASE_URL``); ``manage.py createsuperuser`` makes the first one (on Cloud Run,
``deploy_plan --admin-database cloudsql`` runs ``ensure_superuser`` as a job).

Pages (staff only):

- ``live/``: counters, instances, conversations with their desktops and newest events
  (``aa_site.live_state``: from Redis, so across instances; never conversation content);
- ``live/conversation/?name=...``: one conversation, its desktops and its newest 50 events;
- ``live/purge/`` (POST): delete a conversation's stored events (``events.history.purge``);
- ``live/disconnect/`` (POST): close one desktop's WebSocket on whichever instance holds it
  (``connector.desktops.instances``; close code 4410), or a long-polling desktop's session in Redis, which
  its next poll, on any instance, answers with Engine.IO's CLOSE (``connector.desktops.polling.operators``).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST
from redis.exceptions import RedisError

from aa_site import admin_login, live_state
from connector.desktops import instances
from connector.desktops.polling import operators as polling
from connector.http import integration_keys
from events import conversations, history, redis_client

logger = logging.getLogger(__name__)


class OperatorAdminSite(admin.AdminSite):
    site_header = "Agent Assist backend: operators"
    site_title = "Agent Assist backend"
    index_title = "Operators"
    index_template = "aa_admin/index.html"

    def get_urls(self):
        return [
            path("live/", self.admin_view(require_GET(self.live_view)), name="live"),
            path("live/conversation/", self.admin_view(require_GET(self.conversation_view)), name="live-conversation"),
            path("live/purge/", self.admin_view(require_POST(self.purge_view)), name="live-purge"),
            path("live/disconnect/", self.admin_view(require_POST(self.disconnect_view)), name="live-disconnect"),
            *super().get_urls(),
        ]

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """Django's login, answering a locked-out POST at once (429), and a login refused unchecked 503
        (``aa_site.admin_login``)."""
        try:
            return admin_login.refuse_if_locked_out(request) or super().login(request, extra_context)
        except admin_login.REFUSALS as refused:
            return admin_login.refusal_response(request, refused)

    def _context(self, request: HttpRequest, title: str, **values) -> dict:
        return {**self.each_context(request), "title": title, **values}

    def live_view(self, request: HttpRequest) -> HttpResponse:
        unavailable, state = _read(live_state.snapshot)
        return TemplateResponse(request, "aa_admin/live.html",
                                self._context(request, "Live view", state=state, unavailable=unavailable))

    def conversation_view(self, request: HttpRequest) -> HttpResponse:
        refused, name = _conversation_name(request, request.GET.get("name", ""))
        if refused is not None:
            return refused
        unavailable, view = _read(live_state.conversation, name)
        return TemplateResponse(request, "aa_admin/conversation.html",
                                self._context(request, name, name=name, conversation=view, unavailable=unavailable))

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        refused, name = _conversation_name(request, request.POST.get("name", ""))
        if refused is not None:
            return refused
        unavailable, removed = _read(history.purge, name)
        if unavailable:
            messages.error(request, unavailable)
        else:
            logger.info("Operator %s purged the stored events of %s (%s events)", request.user.get_username(),
                        name, removed)
            messages.success(request, f"Purged {removed} stored event(s) of {name}.")
        return HttpResponseRedirect(reverse("admin:live-conversation") + "?" + _query(name=name))

    def disconnect_view(self, request: HttpRequest) -> HttpResponse:
        instance, connection = request.POST.get("instance", ""), request.POST.get("connection", "")
        if request.POST.get("transport") == polling.TRANSPORT and _is_id(connection):
            return self._disconnect_polling(request, connection)
        if not (_is_id(instance) and _is_id(connection)):
            messages.error(request, "Name an instance and a connection from the live view.")
            return HttpResponseRedirect(reverse("admin:live"))
        unavailable, receivers = _read(instances.request_disconnect, instance, connection)
        if unavailable:
            messages.error(request, unavailable)
        else:
            logger.info("Operator %s asked instance %s to disconnect desktop %s", request.user.get_username(),
                        instance, connection)
            messages.success(request, f"Asked instance {instance} to disconnect desktop {connection} "
                                      f"({receivers} instance(s) listening).")
        return HttpResponseRedirect(_next(request))

    def _disconnect_polling(self, request: HttpRequest, connection: str) -> HttpResponse:
        """A long-polling desktop is held by no instance: its session in Redis is marked closed."""
        unavailable, closed = _read(polling.disconnect, connection)
        if unavailable:
            messages.error(request, unavailable)
        elif closed:
            logger.info("Operator %s disconnected long-polling desktop %s", request.user.get_username(), connection)
            messages.success(request, f"Disconnected long-polling desktop {connection}: its next poll closes it.")
        else:
            messages.warning(request, f"Long-polling desktop {connection} is no longer connected.")
        return HttpResponseRedirect(_next(request))


def _read(function, *args):
    """``(None, function(*args))``, or ``(why, None)`` when Redis is not there or fails."""
    if not redis_client.is_configured():
        return "The live view reads Redis; this process has none (REDISHOST is not set).", None
    try:
        return None, async_to_sync(function)(*args)
    except (RedisError, OSError, integration_keys.StoreUnavailable) as error:
        logger.warning("The admin could not read Redis: %s: %s", type(error).__name__, error)
        return f"Redis is unavailable right now ({type(error).__name__}); try again.", None


def _conversation_name(request: HttpRequest, value: str) -> tuple[HttpResponse | None, str]:
    """``(None, the normalised name)``, or ``(a redirect to the live view saying why, "")`` for a bad name."""
    try:
        return None, conversations.normalise(value)
    except conversations.InvalidConversationName as error:
        messages.error(request, str(error))
        return HttpResponseRedirect(reverse("admin:live")), ""


def _is_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isalnum()


def _query(**values: str) -> str:
    return urlencode(values)


def _next(request: HttpRequest) -> str:
    """Back to the conversation page the form was on, or the live view."""
    name = request.POST.get("next_conversation", "")
    if name:
        return reverse("admin:live-conversation") + "?" + _query(name=name)
    return reverse("admin:live")
