"""``connector.tokens``: the desktop JWT, issued and validated, and every forged or stale variant refused.

Bad tokens are crafted with PyJWT (or by hand where PyJWT refuses, as for an
empty key), so each test breaks exactly one property of an otherwise valid token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from connector import jwt_secret, tokens
from connector.tokens import InvalidToken, issue_token, validate_token

TEST_PROJECT = "test-project"


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete, currently valid claim set; ``overrides`` replace claims, ``None`` values drop them."""
    now = int(time.time())
    values: dict[str, Any] = {
        "token_type": tokens.AgentAssistToken.token_type,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        tokens.PROJECT_CLAIM: TEST_PROJECT,
        tokens.USER_CLAIM: "mallory",
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def craft(*, key: Any = None, algorithm: str = "HS256", **overrides: Any) -> str:
    """A token signed with PyJWT; by default with the service's own secret, so only ``overrides`` differ."""
    return jwt.encode(claims(**overrides), jwt_secret.verification_secrets()[0] if key is None else key, algorithm=algorithm)


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as JWS segments are written."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def segments(token: str) -> list[str]:
    """The header, payload and signature segments."""
    return token.split(".")


def decode_segment(segment: str) -> dict[str, Any]:
    """A JWS header or payload segment as JSON."""
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def test_crafted_control_token_is_accepted() -> None:
    """The crafting helper makes valid tokens, so each refusal below is due to the one thing it changes."""
    assert validate_token(craft()) == tokens.DesktopIdentity(project=TEST_PROJECT, user="mallory")


def test_issue_then_validate_round_trip() -> None:
    """A freshly issued token validates to its project and user."""
    token = issue_token(user="alice@example.com")
    assert validate_token(token) == tokens.DesktopIdentity(project=TEST_PROJECT, user="alice@example.com")


def test_issued_token_is_hs256_with_the_contract_claims(settings: Any) -> None:
    """Header alg HS256; claims exp (lifetime from settings), gcp_agent_assist_project and gcp_agent_assist_user."""
    settings.JWT_LIFETIME_MINUTES = 7
    token = issue_token(user="alice")
    assert decode_segment(segments(token)[0])["alg"] == "HS256"
    payload = jwt.decode(token, jwt_secret.verification_secrets()[0], algorithms=["HS256"])
    assert payload[tokens.PROJECT_CLAIM] == TEST_PROJECT
    assert payload[tokens.USER_CLAIM] == "alice"
    assert payload["exp"] - payload["iat"] == 7 * 60
    assert payload["exp"] > time.time()


def test_issued_token_is_signed_with_the_configured_secret() -> None:
    """Verification with any other key fails: the token is not signed with a default or empty key."""
    token = issue_token(user="alice")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "some-other-secret-that-is-long-enough-000", algorithms=["HS256"])


def test_issued_tokens_are_unique() -> None:
    """Two tokens for the same user differ (their jti), so one can be told from another in logs."""
    assert issue_token(user="alice") != issue_token(user="alice")


@pytest.mark.parametrize("form", ["{t}", "Bearer {t}", "bearer {t}", "BEARER   {t}  ", "  {t}\n"])
def test_bare_and_bearer_forms_are_accepted(form: str) -> None:
    """The UI modules send the bare token; other platforms prefix ``Bearer`` (any case, any spacing)."""
    token = issue_token(user="alice")
    assert validate_token(form.format(t=token)).user == "alice"


@pytest.mark.parametrize("raw", [None, "", "   ", "Bearer", "Bearer   "])
def test_missing_token_says_so(raw: str | None) -> None:
    """No token at all is reported with the contract's exact message."""
    with pytest.raises(InvalidToken) as caught:
        validate_token(raw)
    assert str(caught.value) == "Token is missing."


def test_expired_token_is_refused() -> None:
    """A correctly signed token whose exp has passed is refused as expired."""
    past = int(time.time()) - 120
    with pytest.raises(InvalidToken, match="expired"):
        validate_token(craft(exp=past, iat=past - 600))


def test_token_without_exp_is_refused() -> None:
    """A token that never expires is not accepted."""
    with pytest.raises(InvalidToken, match="exp"):
        validate_token(craft(exp=None))


def test_token_for_another_project_is_refused() -> None:
    """A token from the same secret but another project is refused, saying so."""
    with pytest.raises(InvalidToken) as caught:
        validate_token(craft(**{tokens.PROJECT_CLAIM: "other-project"}))
    assert str(caught.value) == "Token is for another project"


def test_token_without_project_is_refused() -> None:
    """The project claim is required."""
    with pytest.raises(InvalidToken, match=tokens.PROJECT_CLAIM):
        validate_token(craft(**{tokens.PROJECT_CLAIM: None}))


def test_token_becomes_invalid_when_the_project_changes(settings: Any) -> None:
    """Validation compares against the current GCP_PROJECT_ID."""
    token = issue_token(user="alice")
    settings.GCP_PROJECT_ID = "moved-project"
    with pytest.raises(InvalidToken, match="another project"):
        validate_token(token)


def test_token_of_another_type_is_refused() -> None:
    """A simplejwt access token signed with the same key is not a desktop token."""
    with pytest.raises(InvalidToken, match="wrong type"):
        validate_token(craft(token_type="access"))


def test_token_signed_with_another_key_is_refused() -> None:
    """A token signed with any other secret is refused."""
    with pytest.raises(InvalidToken, match="invalid"):
        validate_token(craft(key="an-attacker-secret-of-sufficient-length-123"))


def test_token_signed_with_the_empty_key_is_refused() -> None:
    """The sample signed with an empty key, so such tokens exist in the wild; they must not validate."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims()).encode())
    signature = hmac.new(b"", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{b64url(signature)}"
    with pytest.raises(InvalidToken):
        validate_token(forged)


def test_unsigned_alg_none_token_is_refused() -> None:
    """``alg: none`` (no signature at all) is refused."""
    forged = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(InvalidToken):
        validate_token(forged)


def test_alg_none_with_a_copied_signature_is_refused() -> None:
    """Relabelling a genuine token's header as ``none`` does not make its signature optional."""
    header, payload, signature = segments(issue_token(user="alice"))
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    with pytest.raises(InvalidToken):
        validate_token(f"{none_header}.{payload}.{signature}")


# The service secret is shorter than PyJWT recommends for SHA-512; irrelevant to a token that must be refused.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_hs512_with_the_right_secret_is_refused() -> None:
    """The algorithm is pinned to HS256: the same secret under HS512 is not accepted."""
    with pytest.raises(InvalidToken):
        validate_token(craft(algorithm="HS512"))


def test_rs256_token_is_refused() -> None:
    """An asymmetrically signed token (the attacker's own RSA key) is refused."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        validate_token(craft(key=private_key, algorithm="RS256"))


@pytest.mark.parametrize(
    "change",
    [{tokens.USER_CLAIM: "admin"}, {"exp": 4102444800}, {tokens.PROJECT_CLAIM: TEST_PROJECT + "x"}],
    ids=["user", "exp", "project"],
)
def test_tampered_payload_is_refused(change: dict[str, Any]) -> None:
    """Changing any claim of a genuine token, keeping its signature, is detected."""
    header, payload, signature = segments(issue_token(user="alice"))
    altered = b64url(json.dumps({**decode_segment(payload), **change}).encode())
    with pytest.raises(InvalidToken, match="invalid"):
        validate_token(f"{header}.{altered}.{signature}")


def test_truncated_signature_is_refused() -> None:
    """A genuine token with its signature cut short is refused."""
    token = issue_token(user="alice")
    with pytest.raises(InvalidToken):
        validate_token(token[:-4])


@pytest.mark.parametrize(
    "raw",
    ["garbage", "a.b.c", "....", "Basic dXNlcjpwYXNz", "eyJhbGciOiJIUzI1NiJ9", "\u00e9\u00e9.\u00e9.\u00e9",
     # A lone surrogate: what a JSON "\ud800" escape in a WebSocket authenticate frame decodes to.
     "\ud800.e30.abc"],
)
def test_garbage_is_refused_with_a_reason(raw: str) -> None:
    """Strings that are not JWTs raise ``InvalidToken`` with a message, never another exception."""
    with pytest.raises(InvalidToken) as caught:
        validate_token(raw)
    assert str(caught.value)


def test_token_signed_before_a_secret_change_is_refused(settings: Any) -> None:
    """After the secret is rotated, tokens signed with the old one no longer validate."""
    token = issue_token(user="alice")
    settings.JWT_SECRET_KEY = "rotated-secret-0123456789-abcdefghijklmnopq"
    with pytest.raises(InvalidToken):
        validate_token(token)
    assert validate_token(issue_token(user="alice")).user == "alice"


OLD_SECRET = "old-signing-secret-0123456789-abcdefghijklmnopqrs"


def test_token_signed_with_the_previous_secret_validates_during_a_rotation(settings: Any) -> None:
    """With JWT_PREVIOUS_SECRET_KEY set, a token the old secret signed keeps validating until it expires."""
    settings.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    assert validate_token(craft(key=OLD_SECRET)).user == "mallory"


def test_new_tokens_are_signed_with_the_current_secret_during_a_rotation(settings: Any) -> None:
    """The previous secret only verifies: issued tokens carry the current secret's signature."""
    current = jwt_secret.verification_secrets()[0]
    settings.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    token = issue_token(user="alice")
    assert jwt.decode(token, current, algorithms=["HS256"])[tokens.USER_CLAIM] == "alice"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OLD_SECRET, algorithms=["HS256"])


def test_previous_secret_token_is_refused_once_the_secret_is_removed(settings: Any) -> None:
    """Ending the rotation (removing the previous secret) ends the old tokens."""
    settings.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    token = craft(key=OLD_SECRET)
    validate_token(token)
    settings.JWT_PREVIOUS_SECRET_KEY = ""
    with pytest.raises(InvalidToken, match="invalid"):
        validate_token(token)


def test_previous_secret_is_pinned_to_hs256_too(settings: Any) -> None:
    """The previous secret under another HMAC algorithm is refused like the current one."""
    settings.JWT_PREVIOUS_SECRET_KEY = OLD_SECRET
    with pytest.raises(InvalidToken):
        validate_token(craft(key=OLD_SECRET, algorithm="HS384"))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "1796160950"),  # simplejwt's datetime conversion raised TypeError
        ("exp", 10**20),  # ... and OverflowError
        ("exp", float("inf")),  # PyJWT's int() raised OverflowError
        ("iat", float("inf")),
        ("nbf", 10**20),
        (tokens.USER_CLAIM, {"name": "x"}),  # accepted before, as the user "{'name': 'x'}"
        ("jti", 7),  # PyJWT refused it, but without naming the claim
    ],
)
def test_a_claim_of_the_wrong_type_or_range_raises_only_invalid_token(claim: str, value: Any) -> None:
    """validate_token raises InvalidToken naming the claim, never another exception (an HTTP 500, a 1011 close)."""
    with pytest.raises(InvalidToken, match=f"^Token has an invalid {claim} claim$"):
        validate_token(craft(**{claim: value}))


def test_missing_user_claim_validates_as_empty_user() -> None:
    """The user claim is informational: absent, the identity's user is empty."""
    assert validate_token(craft(**{tokens.USER_CLAIM: None})).user == ""
