"""Desktop-facing HTTP endpoints of the connector: status probe and registration (async DRF views)."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpResponse, JsonResponse

from auth_providers import registry
from auth_providers.base import ProviderUnavailable, TokenRejected
from common.responses import message_response
from connector import tokens
from connector.http.api.authentication import GoogleServiceAccountAuthentication
from connector.http.api.parsers import JsonObjectParser
from connector.http.api.throttling import RegistrationThrottle
from connector.http.api.views import AsyncAPIView
from connector.http.service_callers import ServiceCaller

logger = logging.getLogger(__name__)

STATUS_TEXT = "Hello, cross-origin-world!"


class StatusView(AsyncAPIView):
    """``GET /status``: the liveness probe the desktops call with ``response.ok``; no policy at all."""

    http_method_names = ["get"]
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []

    async def get(self, request: Any) -> HttpResponse:
        """The contract's plain text."""
        return HttpResponse(STATUS_TEXT, content_type="text/plain")


class RegisterView(AsyncAPIView):
    """``POST /register``: an identity-provider token (``Authorization``) for a desktop JWT.

    The provider ``AUTH_OPTION`` names (``auth_providers``) judges the token,
    unless it is an allow-listed service account's Google ID token
    (``GoogleServiceAccountAuthentication``, refused there when bad): that caller
    gets a token whose user is its email, whatever the provider. Rate limited
    per client address, with /register-app.
    """

    http_method_names = ["post"]
    authentication_classes: list[Any] = [GoogleServiceAccountAuthentication]
    permission_classes: list[Any] = []
    throttle_classes = [RegistrationThrottle]
    parser_classes = [JsonObjectParser]
    provider_setting = "AUTH_OPTION"

    async def post(self, request: Any) -> HttpResponse:
        """Judge the request with the provider ``provider_setting`` names; a desktop JWT if it vouches, else why not."""
        if isinstance(request.user, ServiceCaller):
            request.data  # noqa: B018 - the body is checked as for any registration (400, 413)
            return JsonResponse({"token": tokens.issue_token(user=request.user.user)})
        provider = registry.get_provider(self.provider_setting)
        if provider is None:
            return message_response(401, f"Registration is disabled: {self.provider_setting} is not set.")
        body = request.data  # NotJsonObject: 400; RequestTooLarge: 413
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
            return message_response(
                503, f"The identity provider {provider.name} is unavailable; the token was not judged."
            )
        if not tokens.is_usable_user(identity.user):
            # validate_token would refuse a token carrying it: answer as for any unusable provider answer.
            logger.warning(
                "Identity provider %s named a user that is not UTF-8 text of at most %d characters",
                provider.name,
                tokens.MAX_USER_LENGTH,
            )
            return message_response(
                503, f"The identity provider {provider.name} named a user this service cannot use."
            )
        # The identity the provider verified wins; the body may name the user only when the provider names none
        # (Skip, Five9), else any desktop could register as anyone its provider vouches for.
        return JsonResponse({"token": tokens.issue_token(user=identity.user or named)})


class RegisterAppView(RegisterView):
    """``POST /register-app``: application credentials (JSON body) judged by ``APP_AUTH_OPTION``; same budget.

    Service callers register at /register; here only the body's credentials count.
    """

    authentication_classes: list[Any] = []
    provider_setting = "APP_AUTH_OPTION"


status = StatusView.as_view()
register = RegisterView.as_view()
register_app = RegisterAppView.as_view()
