"""DRF permission of the Dialogflow proxy: the project in the path must be on the allow-list."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission

from connector.dialogflow_proxy import routes


def allowed_projects() -> frozenset[str]:
    """``DIALOGFLOW_ALLOWED_PROJECTS``, or ``GCP_PROJECT_ID`` alone when it is empty."""
    return frozenset(settings.DIALOGFLOW_ALLOWED_PROJECTS or [settings.GCP_PROJECT_ID])


class ProjectAllowed(BasePermission):
    """403 for a call of the route table whose project this backend does not serve.

    A request outside the route table is granted here: the view answers it
    404 or 405, so the order stays token (401), route (404/405), project (403).
    """

    message = "This project is not served by this backend."

    def has_permission(self, request: Any, view: Any) -> bool:
        """Whether the routed project (``view.route``) is allowed; sets the refusal's message naming it."""
        match = view.route(request)
        if not isinstance(match, routes.Forward) or match.project in allowed_projects():
            return True
        self.message = f"Project {match.project} is not served by this backend."
        return False
