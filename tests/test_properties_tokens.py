"""Property: a token signed with the real secret, whatever its claims, is a ``DesktopIdentity`` or ``InvalidToken``.

The signature only says the service made the token (or someone holding its secret did); the claims
still go through ``connector.tokens.check_claim_types``, PyJWT and simplejwt, which raised
TypeError or OverflowError (a 500) on an ``exp`` of ``"123"`` or ``10**20``. Here claims of every
JSON type and range, next to valid ones, and payloads that are not JSON objects at all.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jwt
from hypothesis import given
from hypothesis import strategies as st

from connector import jwt_secret, tokens
from testing.strategies import PROPERTY_SETTINGS, any_text, edge_numbers, json_values

PROJECT = "test-project"


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "exp": now + 3600,
        "iat": now,
        "jti": "0123456789abcdef",
        "token_type": tokens.AgentAssistToken.token_type,
        tokens.PROJECT_CLAIM: PROJECT,
        tokens.USER_CLAIM: "agent",
    }


CLAIM_NAMES = ["exp", "iat", "nbf", "jti", "token_type", tokens.PROJECT_CLAIM, tokens.USER_CLAIM]
claim_values = st.one_of(
    json_values,
    edge_numbers,
    st.floats(),  # NaN and infinities: PyJWT writes them as NaN/Infinity, which Python's json reads back
    st.just(int(time.time()) + 3600),
    st.just(PROJECT),
    st.text(max_size=300),
)
# Valid claims with some replaced, removed or added.
changed_claims = st.builds(
    lambda changes, removed, extra: {
        **{name: value for name, value in valid_claims().items() if name not in removed},
        **changes,
        **extra,
    },
    st.dictionaries(st.sampled_from(CLAIM_NAMES), claim_values, max_size=4),
    st.sets(st.sampled_from(CLAIM_NAMES), max_size=3),
    st.dictionaries(any_text, json_values, max_size=2),
)


def secret() -> str:
    return jwt_secret.verification_secrets()[0]


class ErrorRecords(logging.Handler):
    """ERROR records: validate_token logs one when a library raised where check_claim_types should have refused."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def judge(token: str) -> tokens.DesktopIdentity | None:
    handler = ErrorRecords()
    logger = logging.getLogger("connector.tokens")
    logger.addHandler(handler)
    try:
        identity = tokens.validate_token(token)
    except tokens.InvalidToken as error:
        assert str(error)
        identity = None
    finally:
        logger.removeHandler(handler)
    assert not handler.records, [record.getMessage() for record in handler.records]
    if identity is not None:
        assert isinstance(identity, tokens.DesktopIdentity)
        assert identity.project == PROJECT and isinstance(identity.user, str)
        identity.user.encode("utf-8")  # usable in a frame and a log line
    return identity


@PROPERTY_SETTINGS
@given(changed_claims)
def test_signed_claims_of_any_type_give_an_identity_or_invalid_token(claims: dict[str, Any]) -> None:
    token = jwt.encode(claims, secret(), algorithm="HS256")
    identity = judge(token)
    if identity is not None:
        # Accepted only when the claims that matter are what they must be.
        assert claims[tokens.PROJECT_CLAIM] == PROJECT and claims["token_type"] == "agent_assist"
        assert isinstance(claims["exp"], (int, float)) and claims["exp"] > time.time()


@PROPERTY_SETTINGS
@given(st.one_of(json_values.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass")),
                 st.binary(max_size=64)))
def test_signed_payloads_that_are_not_claims_are_invalid_tokens(payload: bytes) -> None:
    token = jwt.api_jws.encode(payload, secret(), algorithm="HS256")
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        decoded = None
    identity = judge(token)
    assert identity is None or isinstance(decoded, dict)


def test_the_valid_claims_are_accepted() -> None:
    """The strategies start from claims the service accepts, so the properties see both outcomes."""
    assert judge(jwt.encode(valid_claims(), secret(), algorithm="HS256")) == tokens.DesktopIdentity(PROJECT, "agent")
