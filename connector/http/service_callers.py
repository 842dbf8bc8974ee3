"""Service-to-service callers: Google ID tokens of allow-listed service accounts, instead of a desktop JWT.

A companion service (an AudioHook or media-stream service, say) that runs as a
Google service account calls ``/register``, ``/conversation-name`` or the
Dialogflow proxy with ``Authorization: Bearer <ID token>``, minted for the
connector's URL. The token is accepted when Google signed it
(``common.google_id_tokens``, against the certificates ``common.google_certs``
fetches and caches) for one of ``SERVICE_AUTH_AUDIENCE``, its ``email`` is
verified and on ``SERVICE_AUTH_ALLOWED_CALLERS`` (exact emails, or
``*@<project>.iam.gserviceaccount.com``). An empty allow-list turns the
feature off: such tokens are then refused like any other foreign token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from django.conf import settings

from common import google_certs, google_id_tokens
from common.bearer import bearer_token
from common.google_id_tokens import Forbidden, IdTokenError, Unauthenticated

#: The only domain a wildcard entry may name: one project's user-managed service accounts.
#: (appspot.gserviceaccount.com and developer.gserviceaccount.com hold default accounts of every project.)
WILDCARD_DOMAIN_SUFFIX = ".iam.gserviceaccount.com"

__all__ = ["Forbidden", "IdTokenError", "ServiceCaller", "Unauthenticated", "authenticate", "enabled"]


@dataclass(frozen=True)
class ServiceCaller:
    """A service account whose ID token was accepted; ``email`` as Google verified it (lower-cased)."""

    email: str
    # DRF's IsAuthenticated asks request.user this; only authenticate makes one.
    is_authenticated: ClassVar[bool] = True

    @property
    def user(self) -> str:
        """The user a desktop JWT issued to this caller carries."""
        return self.email

    @property
    def token_id(self) -> str:
        """What rate limits per token count this caller under (one budget per account)."""
        return f"service:{self.email}"


def enabled() -> bool:
    """Whether service callers are accepted at all (``SERVICE_AUTH_ALLOWED_CALLERS`` is not empty)."""
    return bool(settings.SERVICE_AUTH_ALLOWED_CALLERS)


def is_id_token(authorization: str | None) -> bool:
    """Whether ``authorization`` carries a token that claims to be Google's (unverified: it only routes the request)."""
    token = bearer_token(authorization)
    return bool(token) and google_id_tokens.claims_google_issuer(token)


def entry_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be on the allow-list; ``None`` for an exact email or a wildcard over one project."""
    local, at, domain = entry.partition("@")
    if not at or not local or not domain or "@" in domain or any(character.isspace() for character in entry):
        return "is not an email address"
    if "*" in domain or ("*" in local and local != "*"):
        return "may use * only as the whole part before @"
    one_project = domain.lower().endswith(WILDCARD_DOMAIN_SUFFIX) and len(domain) > len(WILDCARD_DOMAIN_SUFFIX)
    if local == "*" and not one_project:
        return f"is a wildcard over a domain other than one project's <project>{WILDCARD_DOMAIN_SUFFIX}"
    return None


def is_allowed(email: str, allowed: list[str]) -> bool:
    """Whether ``email`` matches an entry of ``allowed``: equal, or in the domain of a ``*@domain`` entry (any case)."""
    email = email.casefold()
    local, at, domain = email.partition("@")
    if not at or not local or "@" in domain:
        return False
    for entry in allowed:
        entry = entry.strip().casefold()
        if entry == email or (entry.startswith("*@") and entry[2:] == domain):
            return True
    return False


async def authenticate(authorization: str | None) -> ServiceCaller:
    """The caller whose Google ID token ``authorization`` carries, or ``IdTokenError`` (401/403) saying why.

    Raises ``google_certs.CertificatesUnavailable`` when Google's certificates
    cannot be had (the request should be retried).
    """
    token = google_id_tokens.token_from_header(_with_scheme(authorization))
    certificates = await google_certs.get_certificates(settings.SERVICE_AUTH_CERTS_URL)
    claims = google_id_tokens.verify(token, certificates, audiences=audiences())
    email = google_id_tokens.verified_email(claims)
    if not is_allowed(email, settings.SERVICE_AUTH_ALLOWED_CALLERS):
        raise Forbidden(
            f"Service account {google_id_tokens.quoted(email)} is not on this service's allow-list "
            "(SERVICE_AUTH_ALLOWED_CALLERS)."
        )
    return ServiceCaller(email=email.casefold())


def audiences() -> list[str]:
    """``SERVICE_AUTH_AUDIENCE``'s URLs, each with and without a trailing slash (callers write either)."""
    bare = [url.rstrip("/") for url in settings.SERVICE_AUTH_AUDIENCE]
    return [form for url in bare for form in (url, url + "/")]


def _with_scheme(authorization: str | None) -> str:
    # Desktops may send their JWT bare; a service may too: both forms carry the same token.
    token = bearer_token(authorization)
    return f"Bearer {token}" if token else ""
