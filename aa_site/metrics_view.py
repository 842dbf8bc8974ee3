"""``GET /metrics``: the Prometheus text of ``events.metrics``, for a scraper holding ``METRICS_TOKEN``.

Off (404, as any unknown path) while ``METRICS_TOKEN`` is empty; with it set,
every request must send ``Authorization: Bearer <METRICS_TOKEN>`` (compared in
constant time), else 401 ``{"message"}`` with ``WWW-Authenticate: Bearer``.
Served by every role. With ``PROMETHEUS_MULTIPROC_DIR`` the answer sums every
process sharing that directory, which means reading its files: done off the
event loop.
"""

from __future__ import annotations

import hmac

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from aa_site.errors import not_found
from common.bearer import bearer_token
from common.responses import message_response
from events import metrics


@require_safe
async def metrics_page(request: HttpRequest) -> HttpResponse:
    """200 with the metrics, 401 without the token, 404 when metrics are off."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return not_found(request)
    presented = bearer_token(request.headers.get("Authorization"), scheme_required=True)
    if not hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8")):
        response = message_response(401, "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = await sync_to_async(metrics.exposition, thread_sensitive=False)()
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
