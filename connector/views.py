"""Desktop-facing HTTP endpoints of the connector: status probe and registration."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from auth_providers import registry
from auth_providers.base import ProviderUnavailable, TokenRejected
from common.responses import message_response
from connector import tokens
from connector.http_json import json_object
from connector.ratelimit import rate_limited

logger = logging.getLogger(__name__)

STATUS_TEXT = "Hello, cross-origin-world!"


@require_GET
async def status(request: HttpRequest) -> HttpResponse:
    """Liveness probe the desktops call with ``response.ok``."""
    return HttpResponse(STATUS_TEXT, content_type="text/plain")


@require_POST
@rate_limited("register")
async def register(request: HttpRequest) -> HttpResponse:
    """Exchange an identity-provider token (``Authorization``) for a desktop JWT."""
    return await _register(request, "AUTH_OPTION")


@require_POST
@rate_limited("register")  # the same budget as /register: one per client address
async def register_app(request: HttpRequest) -> HttpResponse:
    """Exchange application credentials (JSON body) for a desktop JWT."""
    return await _register(request, "APP_AUTH_OPTION")


async def _register(request: HttpRequest, setting: str) -> HttpResponse:
    """Judge the request with the provider ``setting`` names; a desktop JWT if it vouches, else why not."""
    provider = registry.get_provider(setting)
    if provider is None:
        return message_response(401, f"Registration is disabled: {setting} is not set.")
    body = json_object(request.body)
    if body is None:
        return message_response(400, "The request body must be a JSON object (or empty).")
    named = body.get("gcp_agent_assist_user", "")
    if not isinstance(named, str):
        return message_response(400, "gcp_agent_assist_user must be a string.")
    if not tokens.is_usable_user(named):
        return message_response(
            400, f"gcp_agent_assist_user must be UTF-8 text of at most {tokens.MAX_USER_LENGTH} characters."
        )
    try:
        identity = await provider.authenticate(token=request.headers.get("Authorization", ""), body=body)
    except TokenRejected:
        return message_response(401, "The identity provider rejected the token.")
    except ProviderUnavailable as error:
        logger.warning("Identity provider %s could not judge a token: %s", provider.name, error)
        return message_response(503, f"The identity provider {provider.name} is unavailable; the token was not judged.")
    if not tokens.is_usable_user(identity.user):
        # validate_token would refuse a token carrying it: answer as for any unusable provider answer.
        logger.warning(
            "Identity provider %s named a user that is not UTF-8 text of at most %d characters",
            provider.name,
            tokens.MAX_USER_LENGTH,
        )
        return message_response(503, f"The identity provider {provider.name} named a user this service cannot use.")
    # The identity the provider verified wins; the body may name the user only when the provider names none
    # (Skip, Five9), else any desktop could register as anyone its provider vouches for.
    return JsonResponse({"token": tokens.issue_token(user=identity.user or named)})
