"""A fake of Google's token-signing certificates endpoint, and the tokens Pub/Sub would sign.

``serve()`` runs a real HTTP server on 127.0.0.1 that answers
``GET /oauth2/v1/certs`` exactly as Google shapes it: a JSON object of key id
-> PEM X.509 certificate, with ``Cache-Control: public, max-age=N,
must-revalidate, no-transform``. It counts fetches, can answer any status or
garbage, and can hold its answers until released (to catch concurrent fetches).

``SigningKey`` is a locally generated RSA key with a self-signed certificate;
``SigningKey.sign`` makes an RS256 JWT with ``google.auth.crypt.RSASigner`` and
``google.auth.jwt.encode``, and ``pubsub_claims`` the claims Pub/Sub puts in it.

Like the other fakes, it runs on a thread of its own (``testing/fake_server.py``),
so in-process tests and server processes can both fetch from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from testing.fake_server import serve_handler

CERTS_PATH = "/oauth2/v1/certs"
SERVICE_ACCOUNT = "pubsub-push@test-project.iam.gserviceaccount.com"
GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_MAX_AGE = 21600  # what Google typically sends (about six hours)


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair; the certificate is what the endpoint publishes under ``kid``."""

    kid: str
    private_pem: bytes
    certificate_pem: str

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """An RS256 JWT over ``claims``; ``kid`` overrides the header's key id (to impersonate another key)."""
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)
        return jwt.encode(signer, claims, key_id=kid or self.kid).decode("ascii")


@functools.cache
def signing_key(kid: str) -> SigningKey:
    """A 2048-bit RSA key with a self-signed certificate, made once per ``kid`` per test run."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fake-google-{kid}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(private_key, hashes.SHA256())
    )
    return SigningKey(
        kid=kid,
        private_pem=private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    )


def pubsub_claims(
    *,
    audience: Any,
    email: Any = SERVICE_ACCOUNT,
    email_verified: Any = True,
    issuer: Any = GOOGLE_ISSUER,
    issued_at: float | None = None,
    lifetime: int = 3600,
    **changes: Any,
) -> dict[str, Any]:
    """The claims of the OIDC token Pub/Sub sends; ``changes`` overrides or (with value ``...``) removes any."""
    now = int(time.time() if issued_at is None else issued_at)
    claims: dict[str, Any] = {
        "aud": audience,
        "azp": "112233445566778899000",
        "email": email,
        "email_verified": email_verified,
        "exp": now + lifetime,
        "iat": now,
        "iss": issuer,
        "sub": "112233445566778899000",
    }
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not ...}


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], *, hmac_key: bytes | None = None) -> str:
    """A JWT built by hand: ``alg: none`` with an empty signature, or HS256 keyed with ``hmac_key``.

    ``hmac_key`` set to a published certificate is the classic algorithm-confusion forgery.
    """

    def segment(value: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signed = segment(header) + b"." + segment(claims)
    signature = b"" if hmac_key is None else hmac.new(hmac_key, signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode("ascii")


@dataclass
class FakeGoogleCerts:
    """State of the running fake; tests set the attributes, the server thread reads them."""

    port: int = 0
    published: dict[str, SigningKey] = field(default_factory=dict)
    max_age: int | None = GOOGLE_MAX_AGE  # None: no Cache-Control at all
    age: int | None = None  # an Age header, as a cache in front of Google would add
    status: int = 200
    body: bytes | None = None  # served instead of the certificates when set
    fetches: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _gate: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The certificates URL, for PUSH_AUTH_CERTS_URL."""
        return f"http://127.0.0.1:{self.port}{CERTS_PATH}"

    def publish(self, *keys: SigningKey) -> None:
        """Serve exactly these keys' certificates from now on."""
        self.published = {key.kid: key for key in keys}

    def hold(self) -> None:
        """Make every answer wait until ``release()``."""
        assert self._loop is not None
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let held answers (and later ones) go."""
        gate, loop = self._gate, self._loop
        if gate is not None and loop is not None:
            loop.call_soon_threadsafe(gate.set)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != CERTS_PATH or request.method != "GET":
            return web.json_response({"error": "not found"}, status=404)
        self.fetches += 1
        if self._gate is not None:
            await self._gate.wait()
        headers = {}
        if self.max_age is not None:
            headers["Cache-Control"] = f"public, max-age={self.max_age}, must-revalidate, no-transform"
        if self.age is not None:
            headers["Age"] = str(self.age)
        if self.body is not None:
            return web.Response(body=self.body, status=self.status, headers=headers, content_type="application/json")
        document = {kid: key.certificate_pem for kid, key in self.published.items()}
        return web.json_response(document, status=self.status, headers=headers)


@contextlib.contextmanager
def serve(*keys: SigningKey) -> Iterator[FakeGoogleCerts]:
    """Run a ``FakeGoogleCerts`` publishing ``keys`` on a free loopback port until the block ends."""
    fake = FakeGoogleCerts()
    fake.publish(*keys)
    with serve_handler(fake._handle, name="fake-google-certs") as running:
        fake.port, fake._loop = running.port, running.loop
        try:
            yield fake
        finally:
            fake.release()  # held handlers must finish for the server to stop cleanly
