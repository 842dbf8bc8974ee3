"""A fake OAuth 2.0 token endpoint, and Application Default Credentials that refresh their token from it.

``write_credentials`` writes a service account key file (``GOOGLE_APPLICATION_CREDENTIALS``, a fresh RSA key)
whose ``token_uri`` is the fake: google-auth signs a JWT and trades it there for an access token, as it does at
Google's endpoint (an authorised-user file would always go to Google's). Each exchange answers the next token
(``access-token-1``, ``-2``...) with ``expires_in`` seconds; ``failing`` makes it answer 500.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testing.fake_server import serve_handler

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class FakeTokenEndpoint:
    port: int = 0
    expires_in: int = 3600
    failing: bool = False
    issued: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def next_token(self) -> str:
        return f"access-token-{len(self.issued) + 1}"

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.failing or form.get("grant_type") != JWT_BEARER or not form.get("assertion"):
            return web.json_response({"error": "internal_failure"}, status=500)
        token = self.next_token()
        self.issued.append(token)
        return web.json_response({"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"})

    def write_credentials(self, directory: Path) -> Path:
        """A service account key file whose tokens come from this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path = directory / "service-account-for-redis.json"
        path.write_text(json.dumps({"type": "service_account", "project_id": "test-project",
                                    "private_key_id": "fake-key", "private_key": pem,
                                    "client_email": "ui-connector@test-project.iam.gserviceaccount.com",
                                    "client_id": "1", "token_uri": self.url}))
        return path


@contextlib.contextmanager
def serve() -> Iterator[FakeTokenEndpoint]:
    fake = FakeTokenEndpoint()
    with serve_handler(fake._handle, name="fake-oauth") as running:
        fake.port = running.port
        yield fake
