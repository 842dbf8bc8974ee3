"""The push endpoints as Django views: one per notification kind, over ``interceptor.push``.

``interceptor.fast_push`` answers the pushes ahead of Django; these views
serve what it hands on (other methods, CORS requests), with the same answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_POST

from common.responses import message_response
from events import metrics
from interceptor import push_auth
from interceptor.push import Answer, accept_push


def push_endpoint(event: str) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    """Build the Django view for ``event``: what ``interceptor.fast_push`` leaves to Django (405s, CORS, ...)."""

    @require_POST
    async def receive_push(request: HttpRequest) -> HttpResponse:
        received_at = timezone.now()
        # read(), not .body: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) is below what Pub/Sub sends.
        answer = await accept_push(
            event,
            request.read(settings.PUSH_MAX_BODY_BYTES + 1),
            authorization=request.headers.get("Authorization"),
            audiences=lambda: push_auth.request_audiences(request),
            received_at=received_at,
        )
        metrics.push_answered(event, answer.status)
        return _django_response(answer)

    receive_push.__name__ = receive_push.__qualname__ = event.replace("-", "_")
    return receive_push


def _django_response(answer: Answer) -> HttpResponse:
    """``answer`` as Django's response; a 5xx was logged by ``accept_push`` already (no second ERROR line)."""
    if answer.body is None:
        return HttpResponse(status=answer.status)
    if set(answer.body) == {"message"}:
        return message_response(
            answer.status, answer.body["message"], retry_after=answer.retry_after, logged=answer.status >= 500
        )
    return JsonResponse(answer.body, status=answer.status)
