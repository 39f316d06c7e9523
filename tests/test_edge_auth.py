"""The edge token check (edge/edge_auth.py) with real CloudFront origin-request events: a good token goes on
untouched, every bad one is refused with a 401 problem+json and a WWW-Authenticate challenge, public paths
and personal API keys pass to the region, and on every token the edge decides exactly as the app's
TokenVerifier does (the region still verifies every token; the edge must never refuse one it accepts)."""

from __future__ import annotations

import base64
import copy
import gzip
import importlib.resources
import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from edge_auth import EdgeAuth, TokenCheck, keys_from_jwks
from jose import jwk, jwt
from local.resources import LocalResources

from auth import SigningKeys, TokenVerifier
from errors import PROBLEM_CONTENT_TYPE, Unauthorized
from settings import Settings
from tests.events.cloudfront import origin_request_event

STANDIN_KID = "dummy"
OWN_KID = "edge-test-key"
ALLOWED_ORIGIN = "https://app.example.com"

Mint = Callable[..., str]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def settings(app_environment: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def standin_jwks(aws_resources: LocalResources) -> dict[str, Any]:
    with urllib.request.urlopen(aws_resources.jwks_url, timeout=5) as response:
        jwks: dict[str, Any] = json.loads(response.read())
    return jwks


@pytest.fixture(scope="module")
def own_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def jwks(standin_jwks: dict[str, Any], own_private_pem: str) -> dict[str, Any]:
    """What the edge has baked in: the pool's keys and one more of our own (a pool with two keys)."""
    own_public = jwk.construct(own_private_pem, "RS256").public_key().to_dict()
    return {"keys": [*standin_jwks["keys"], {**own_public, "kid": OWN_KID, "use": "sig", "alg": "RS256"}]}


@pytest.fixture(scope="module")
def edge_config(settings: Settings, jwks: dict[str, Any]) -> dict[str, Any]:
    return {
        "issuer": settings.cognito_issuer,
        "client_ids": settings.cognito_client_ids,
        "cors_allow_origins": [ALLOWED_ORIGIN],
        "jwks": jwks,
    }


@pytest.fixture(scope="module")
def edge(edge_config: dict[str, Any]) -> EdgeAuth:
    return EdgeAuth(edge_config)


@pytest.fixture(scope="module")
def region_verifier(settings: Settings, jwks: dict[str, Any]) -> TokenVerifier:
    """The app's verifier over the same keys (as fetched from the JWKS URL)."""
    return TokenVerifier(settings, SigningKeys(settings.jwks_url, fetch=lambda _url, _timeout: jwks))


@pytest.fixture(scope="module")
def standin_private_key() -> dict[str, Any]:
    packed = importlib.resources.files("moto.cognitoidp") / "resources" / "jwks-private.json.gz"
    key: dict[str, Any] = json.loads(gzip.decompress(packed.read_bytes()))
    assert key["kid"] == STANDIN_KID
    return key


@pytest.fixture(scope="module")
def claims(settings: Settings) -> Callable[..., dict[str, Any]]:
    """Access-token claims as the pool issues them; keyword arguments override (None removes a claim)."""

    def _claims(**overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        values: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "iss": settings.cognito_issuer,
            "client_id": settings.cognito_client_ids[0],
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin",
            "username": "edge-user",
            "auth_time": now,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            **overrides,
        }
        return {name: value for name, value in values.items() if value is not None}

    return _claims


@pytest.fixture(scope="module")
def mint(standin_private_key: dict[str, Any], own_private_pem: str) -> Mint:
    """Signs claims with the stand-in's key (kid "dummy") or, with own=True, with our second key."""

    # Key objects built once: python-jose would rebuild (and check) a private key on every call.
    keys = {False: jwk.construct(standin_private_key, "RS256"), True: jwk.construct(own_private_pem, "RS256")}

    def _mint(claims: dict[str, Any], *, own: bool = False, **headers: Any) -> str:
        kid = OWN_KID if own else STANDIN_KID
        return jwt.encode(claims, keys[own], algorithm="RS256", headers={"kid": kid, **headers})

    return _mint


def _signed_by_hand(mint: Mint, claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A token whose header no JWT library would write, with a valid signature of a real token pasted in
    (so only the header decides)."""
    _, payload, signature = mint(claims).split(".")
    return f"{_b64url(json.dumps(header).encode())}.{payload}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(result: dict[str, Any], detail: str, error: str = "invalid_token") -> dict[str, Any]:
    assert result["status"] == "401"
    headers = result["headers"]
    assert headers["content-type"] == [{"key": "Content-Type", "value": PROBLEM_CONTENT_TYPE}]
    assert headers["www-authenticate"][0]["value"] == f'Bearer error="{error}"'
    assert headers["cache-control"][0]["value"] == "no-store"
    problem: dict[str, Any] = json.loads(result["body"])
    assert set(problem) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert problem["type"] == "urn:stratus:problem:unauthorized"
    assert problem["status"] == 401
    assert problem["detail"] == detail
    return problem


# --- what passes --------------------------------------------------------------------------------------------


def test_a_good_token_from_the_pool_goes_on_to_the_region_untouched(
    edge: EdgeAuth, make_user: Callable[[], dict[str, str]]
) -> None:
    event = origin_request_event("GET", "/me", headers=bearer(make_user()["access"]))
    request = event["Records"][0]["cf"]["request"]
    before = copy.deepcopy(request)
    result = edge.handle(event)
    assert result is request
    assert result == before


def test_a_token_signed_by_the_pools_second_key_passes(
    edge: EdgeAuth, mint: Mint, claims: Callable[..., dict[str, Any]]
) -> None:
    event = origin_request_event("POST", "/projects", headers=bearer(mint(claims(), own=True)))
    assert edge.handle(event) is event["Records"][0]["cf"]["request"]


def test_the_bearer_scheme_is_case_insensitive(
    edge: EdgeAuth, mint: Mint, claims: Callable[..., dict[str, Any]]
) -> None:
    event = origin_request_event(headers={"Authorization": f"bEaReR {mint(claims())}"})
    assert edge.handle(event) is event["Records"][0]["cf"]["request"]


@pytest.mark.parametrize(
    ("method", "uri"),
    [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/health/ready"),
        ("GET", "/docs"),
        ("GET", "/docs/vendor/swagger-ui-bundle.js"),
        ("GET", "/docs/assets/swagger-init.js"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("HEAD", "/health"),
        ("OPTIONS", "/projects"),
        ("OPTIONS", "/admin/users"),
    ],
)
def test_public_paths_and_preflights_need_no_token(edge: EdgeAuth, method: str, uri: str) -> None:
    event = origin_request_event(method, uri)
    assert edge.handle(event) is event["Records"][0]["cf"]["request"]


def test_a_public_path_with_a_bad_token_still_reaches_the_app(edge: EdgeAuth) -> None:
    # The app decides what a token means on its public routes (an optional user, say).
    event = origin_request_event("GET", "/health", headers=bearer("not-a-token"))
    assert edge.handle(event) is event["Records"][0]["cf"]["request"]


def test_a_personal_api_key_goes_on_to_the_region(edge: EdgeAuth) -> None:
    # Its hash needs the app's secret pepper: only the region can check it.
    event = origin_request_event("GET", "/projects", headers={"X-API-Key": "stratus_abc_def"})
    assert edge.handle(event) is event["Records"][0]["cf"]["request"]


# --- what is refused ------------------------------------------------------------------------------------------


def test_a_protected_path_without_credentials_is_refused(edge: EdgeAuth) -> None:
    event = origin_request_event("GET", "/projects/p-1/tasks")
    problem = assert_refused(edge.handle(event), "Authentication is required.", "invalid_request")
    assert problem["instance"] == "/projects/p-1/tasks"
    assert problem["request_id"] == event["Records"][0]["cf"]["config"]["requestId"]


def test_a_token_and_an_api_key_together_are_refused(edge: EdgeAuth, mint: Mint, claims: Any) -> None:
    event = origin_request_event(headers={**bearer(mint(claims())), "X-API-Key": "stratus_abc_def"})
    assert_refused(
        edge.handle(event), "Send either a bearer token or an API key, not both.", "invalid_request"
    )


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "Token abc"])
def test_an_authorization_header_that_is_no_bearer_token_is_refused(
    edge: EdgeAuth, authorization: str
) -> None:
    event = origin_request_event(headers={"Authorization": authorization})
    assert_refused(edge.handle(event), "Use `Authorization: Bearer <access token>`.", "invalid_request")


def test_an_unknown_key_id_is_refused_at_the_edge(edge: EdgeAuth, mint: Mint, claims: Any) -> None:
    # The keys are baked in: a kid the pool never published (or published after the build) stops here.
    token = mint(claims(), kid="not-a-key-of-the-pool")
    assert_refused(
        edge.handle(origin_request_event(headers=bearer(token))), "The token was signed by an unknown key."
    )


def test_a_refusal_lets_an_allowed_browser_origin_read_it(edge: EdgeAuth) -> None:
    allowed = edge.handle(origin_request_event(headers={"Origin": ALLOWED_ORIGIN}))
    assert allowed["headers"]["access-control-allow-origin"][0]["value"] == ALLOWED_ORIGIN
    assert allowed["headers"]["vary"][0]["value"] == "Origin"
    other = edge.handle(origin_request_event(headers={"Origin": "https://evil.example"}))
    assert "access-control-allow-origin" not in other["headers"]


def test_the_baked_handler_reads_its_configuration_once(
    edge_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import edge_auth

    (tmp_path / edge_auth.CONFIG_FILE).write_text(json.dumps(edge_config))
    monkeypatch.setattr(edge_auth, "__file__", str(tmp_path / "edge_auth.py"))
    monkeypatch.setattr(edge_auth, "_edge_auth", None)
    first = edge_auth.handler(origin_request_event(), None)
    assert first["status"] == "401"
    (tmp_path / edge_auth.CONFIG_FILE).unlink()
    # A warm container does not read the file again.
    assert edge_auth.handler(origin_request_event(), None)["status"] == "401"


# --- the edge decides as the region does ---------------------------------------------------------------------

TokenCase = Callable[[Mint, Callable[..., dict[str, Any]]], str]

TOKEN_CASES: dict[str, TokenCase] = {
    "valid": lambda mint, claims: mint(claims()),
    "valid-own-key": lambda mint, claims: mint(claims(), own=True),
    "machine-token": lambda mint, claims: mint(claims(username=None, scope="stratus/read")),
    "expired-beyond-leeway": lambda mint, claims: mint(claims(exp=int(time.time()) - 31 - 5)),
    "expired-within-leeway": lambda mint, claims: mint(claims(exp=int(time.time()) - 10)),
    "not-yet-valid": lambda mint, claims: mint(claims(nbf=int(time.time()) + 120)),
    "nbf-within-leeway": lambda mint, claims: mint(claims(nbf=int(time.time()) + 10)),
    "wrong-issuer": lambda mint, claims: mint(
        claims(iss="https://cognito-idp.us-east-1.amazonaws.com/other")
    ),
    "id-token": lambda mint, claims: mint(claims(token_use="id")),
    "no-token-use": lambda mint, claims: mint(claims(token_use=None)),
    "other-client": lambda mint, claims: mint(claims(client_id="someone-elses-client")),
    "no-client": lambda mint, claims: mint(claims(client_id=None)),
    "no-exp": lambda mint, claims: mint(claims(exp=None)),
    "no-iat": lambda mint, claims: mint(claims(iat=None)),
    "no-sub": lambda mint, claims: mint(claims(sub=None)),
    "empty-sub": lambda mint, claims: mint(claims(sub="")),
    "sub-not-a-string": lambda mint, claims: mint(claims(sub=42)),
    "jti-not-a-string": lambda mint, claims: mint(claims(jti=7)),
    "at-hash": lambda mint, claims: mint(claims(at_hash="abc")),
    "iat-not-a-number": lambda mint, claims: mint(claims(iat="yesterday")),
    "exp-as-numeric-string": lambda mint, claims: mint(claims(exp=str(int(time.time()) + 600))),
    "exp-a-list": lambda mint, claims: mint(claims(exp=[1])),
    "exp-huge": lambda mint, claims: mint(claims(exp=10**30)),
    "payload-not-an-object": lambda mint, claims: _with_payload(mint(claims()), b"[1,2]"),
    "payload-not-json": lambda mint, claims: _with_payload(mint(claims()), b"{nope"),
    "tampered-payload": lambda mint, claims: _tampered_payload(mint(claims()), claims(sub="someone-else")),
    "tampered-signature": lambda mint, claims: _flip_signature_bit(mint(claims())),
    "signature-of-the-other-key": lambda mint, claims: _swap_signature(
        mint(claims()), mint(claims(), own=True)
    ),
    "hs256": lambda mint, claims: _signed_by_hand(mint, claims(), {"alg": "HS256", "kid": STANDIN_KID}),
    "alg-none": lambda mint, claims: _signed_by_hand(mint, claims(), {"alg": "none", "kid": STANDIN_KID}),
    "no-kid": lambda mint, claims: _signed_by_hand(mint, claims(), {"alg": "RS256"}),
    "kid-not-a-string": lambda mint, claims: _signed_by_hand(mint, claims(), {"alg": "RS256", "kid": 1}),
    "unknown-kid": lambda mint, claims: mint(claims(), kid="rotated-later"),
    "header-not-json": lambda mint, claims: "bm90IGpzb24." + mint(claims()).split(".", 1)[1],
    "header-a-list": lambda mint, claims: _b64url(b"[1]") + "." + mint(claims()).split(".", 1)[1],
    "bad-padding": lambda mint, claims: "a." + mint(claims()).split(".", 1)[1],
    "two-segments": lambda mint, claims: mint(claims()).rsplit(".", 1)[0],
    "four-segments": lambda mint, claims: mint(claims()) + ".x",
    "too-long": lambda mint, claims: mint(claims(padding="x" * 9000)),
    "empty-segments": lambda mint, claims: "..",
}


def _with_payload(token: str, payload: bytes) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{_b64url(payload)}.{signature}"


def _tampered_payload(token: str, claims: dict[str, Any]) -> str:
    return _with_payload(token, json.dumps(claims).encode())


def _flip_signature_bit(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{_b64url(bytes(raw))}"


def _swap_signature(token: str, other: str) -> str:
    return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _region_decision(verifier: TokenVerifier, token: str) -> str:
    try:
        verifier.verify(token)
    except Unauthorized as refusal:
        return f"refused: {refusal.detail}"
    return "accepted"


def _edge_decision(edge: EdgeAuth, token: str) -> str:
    result = edge.handle(origin_request_event(headers=bearer(token)))
    if "status" not in result:
        return "accepted"
    return f"refused: {json.loads(result['body'])['detail']}"


@pytest.mark.parametrize("case", sorted(TOKEN_CASES))
def test_the_edge_decides_every_token_as_the_region_does(
    case: str,
    edge: EdgeAuth,
    region_verifier: TokenVerifier,
    mint: Mint,
    claims: Callable[..., dict[str, Any]],
) -> None:
    token = TOKEN_CASES[case](mint, claims)
    region = _region_decision(region_verifier, token)
    assert _edge_decision(edge, token) == region
    # The table exercises both outcomes (a case that every verifier refuses proves nothing about them).
    assert region == "accepted" or case not in {"valid", "valid-own-key", "machine-token"}


def test_the_agreement_table_holds_acceptances_and_refusals(
    region_verifier: TokenVerifier, mint: Mint, claims: Callable[..., dict[str, Any]]
) -> None:
    decisions = {
        case: _region_decision(region_verifier, make(mint, claims)) for case, make in TOKEN_CASES.items()
    }
    accepted = {case for case, decision in decisions.items() if decision == "accepted"}
    assert accepted == {
        "valid",
        "valid-own-key",
        "machine-token",
        "expired-within-leeway",
        "nbf-within-leeway",
        "exp-as-numeric-string",
        "exp-huge",
    }


def test_a_real_token_of_the_pool_is_accepted_by_both(
    edge: EdgeAuth, region_verifier: TokenVerifier, make_user: Callable[[], dict[str, str]]
) -> None:
    token = make_user()["access"]
    assert _edge_decision(edge, token) == _region_decision(region_verifier, token) == "accepted"


def test_the_edge_refuses_the_pools_id_token_as_the_region_does(
    edge: EdgeAuth, region_verifier: TokenVerifier, make_user: Callable[[], dict[str, str]]
) -> None:
    token = make_user()["id"]
    assert _edge_decision(edge, token) == _region_decision(region_verifier, token)
    assert _edge_decision(edge, token) == "refused: Only access tokens are accepted."


def test_the_clock_leeway_is_the_regions(
    settings: Settings, jwks: dict[str, Any], mint: Mint, claims: Any
) -> None:
    now = time.time()
    check = TokenCheck(
        settings.cognito_issuer, settings.cognito_client_ids, keys_from_jwks(jwks), clock=lambda: now
    )
    token = mint(claims(exp=int(now) - 30))
    assert check.verify(token)["exp"] == int(now) - 30
    later = TokenCheck(
        settings.cognito_issuer, settings.cognito_client_ids, keys_from_jwks(jwks), clock=lambda: now + 1
    )
    with pytest.raises(Exception, match="expired"):
        later.verify(token)
