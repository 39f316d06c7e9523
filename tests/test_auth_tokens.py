"""Forged and misused bearer tokens are refused with a 401 problem (never 5xx, never accepted), against the
stand-in's real tokens and JWKS and against tokens minted here with keys of our own; a JWKS outage is a
503 with Retry-After, and keys already cached keep working through it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from jose import jwk, jwt
from local.resources import DEMO_PASSWORD, LOCAL_AUTH_FLOWS, LocalResources, aws_client, sign_in

from auth import (
    CurrentUser,
    OptionalUser,
    Principal,
    SigningKeys,
    TokenVerifier,
    require_groups,
    require_scopes,
)
from errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_BASE
from main import create_app
from settings import Settings

STANDIN_KID = "dummy"  # moto signs every pool with one key of this id
OWN_KID = "stratus-test-key"
LEEWAY_SECONDS = 30
# What a response body must never reveal about why a token failed.
INTERNAL_MARKERS = (
    "Traceback",
    "JOSEError",
    "JWTError",
    "JWSError",
    "JWKError",
    "JWTClaimsError",
    "ExpiredSignatureError",
    "ValueError",
    "KeyError",
    "OverflowError",
    "HTTPException",
    "URLError",
    'File "',
)

Mint = Callable[..., str]
MakeUser = Callable[[tuple[str, ...]], dict[str, str]]


# --- keys and minting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OwnKey:
    private_pem: str
    public_jwk: dict[str, str]


def _new_own_key(kid: str) -> OwnKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = jwk.construct(pem, "RS256").public_key().to_dict()
    return OwnKey(private_pem=pem, public_jwk={**public, "kid": kid, "use": "sig", "alg": "RS256"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(value: Any) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _segments(token: str) -> tuple[str, str, str]:
    header, payload, signature = token.split(".")
    return header, payload, signature


def _rs256_token(key: OwnKey, header: dict[str, Any], payload: bytes) -> str:
    # By hand, for payloads no JWT library would write.
    private = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signing_input = f"{_b64url_json(header)}.{_b64url(payload)}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _hs256_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    # Built by hand: python-jose (rightly) refuses a PEM as an HMAC secret, an attacker's tool does not.
    signing_input = f"{_b64url_json(header)}.{_b64url_json(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


@pytest.fixture(scope="module")
def own_key() -> OwnKey:
    return _new_own_key(OWN_KID)


@pytest.fixture(scope="module")
def own_jwks(own_key: OwnKey) -> dict[str, Any]:
    return {"keys": [own_key.public_jwk]}


@pytest.fixture(scope="module")
def settings(app_environment: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture(scope="module")
def access_claims(bob_claims: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """Claims shaped like the stand-in's access tokens, issuer and client copied from a real one; keyword
    arguments override (a value of None removes the claim)."""

    def _claims(**overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(uuid.uuid4()),
            "iss": bob_claims["iss"],
            "client_id": bob_claims["client_id"],
            "token_use": "access",
            "scope": bob_claims["scope"],
            "username": "minted-user",
            "auth_time": now,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    return _claims


@pytest.fixture(scope="module")
def mint(own_key: OwnKey) -> Mint:
    """Signs claims with our own RSA key (RS256 unless told), naming whatever kid the test wants."""

    def _mint(claims: dict[str, Any], *, kid: str = OWN_KID, algorithm: str = "RS256", **headers: Any) -> str:
        return jwt.encode(claims, own_key.private_pem, algorithm=algorithm, headers={"kid": kid, **headers})

    return _mint


# --- the apps under test -----------------------------------------------------------------------------------


def add_probe_routes(app: FastAPI) -> FastAPI:
    """Test-only routes: who the caller is, optionally; and the two guards."""

    def describe(principal: Principal) -> dict[str, Any]:
        return {
            "subject": principal.subject,
            "auth_method": principal.auth_method,
            "username": principal.username,
            "groups": sorted(principal.groups),
            "scopes": sorted(principal.scopes),
            "client_id": principal.client_id,
            "is_machine": principal.is_machine,
        }

    @app.get("/_test/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return describe(user)

    @app.get("/_test/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"anonymous": True} if user is None else {"anonymous": False, **describe(user)}

    @app.get("/_test/admin", dependencies=[Depends(require_groups("admin"))])
    async def admin_only() -> dict[str, bool]:
        return {"admin": True}

    @app.get("/_test/write", dependencies=[Depends(require_scopes("stratus/write"))])
    async def write_only() -> dict[str, bool]:
        return {"write": True}

    return app


@pytest.fixture(scope="module")
def auth_app(settings: Settings) -> FastAPI:
    """The app as deployed: it trusts only the stand-in pool's JWKS."""
    return add_probe_routes(create_app(settings))


@pytest.fixture(scope="module")
def http(auth_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(auth_app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def trusting_verifier(settings: Settings, own_jwks: dict[str, Any]) -> TokenVerifier:
    """Same pool and clients, but the JWKS is ours: tokens we mint reach the claim checks."""
    return TokenVerifier(settings, SigningKeys(settings.jwks_url, fetch=lambda url, timeout: own_jwks))


@pytest.fixture(scope="module")
def trusting_http(settings: Settings, trusting_verifier: TokenVerifier) -> Iterator[TestClient]:
    app = add_probe_routes(create_app(settings))
    app.state.token_verifier = trusting_verifier
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def fresh_app(app_environment: dict[str, str]) -> Callable[..., FastAPI]:
    """A new app with an empty key cache, for tests that count JWKS fetches."""

    def _fresh_app(**setting_overrides: Any) -> FastAPI:
        return add_probe_routes(create_app(Settings(**setting_overrides)))

    return _fresh_app


# --- real users and tokens from the stand-in ---------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(make_user: MakeUser) -> dict[str, str]:
    return make_user(("admin", "user"))


@pytest.fixture(scope="module")
def bob(make_user: MakeUser) -> dict[str, str]:
    return make_user(("user",))


@pytest.fixture(scope="module")
def bob_claims(bob: dict[str, str]) -> dict[str, Any]:
    return jwt.get_unverified_claims(bob["access"])


@pytest.fixture(scope="module")
def standin_jwk(aws_resources: LocalResources) -> dict[str, Any]:
    with urllib.request.urlopen(aws_resources.jwks_url, timeout=5) as response:
        document = json.load(response)
    return next(key for key in document["keys"] if key["kid"] == STANDIN_KID)


@pytest.fixture
def dead_jwks_url() -> Iterator[str]:
    """A URL on a loopback port nothing listens on (connection refused at once). The port stays bound,
    never listening, for the whole test: no other server can take it meanwhile, and no outgoing connection
    can get it as its own port and end up connected to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}/pool/.well-known/jwks.json"


# --- assertions --------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_no_internals(response: Any, token: str = "") -> None:
    for marker in INTERNAL_MARKERS:
        assert marker not in response.text, marker
    for part in (token, *token.split(".")):
        if len(part) >= 8:
            assert part not in response.text


def assert_problem(response: Any, status: int, problem: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == PROBLEM_TYPE_BASE + problem
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def assert_unauthorized(
    response: Any, *, token: str = "", error: str = "invalid_token", detail: str = ""
) -> dict[str, Any]:
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == f'Bearer error="{error}"'
    assert detail.lower() in body["detail"].lower()
    assert_no_internals(response, token)
    return body


def assert_unavailable(response: Any, token: str = "") -> None:
    assert_problem(response, 503, "service-unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert_no_internals(response, token)


# --- the real thing works ----------------------------------------------------------------------------------


def test_real_access_token_yields_the_human_principal(http: TestClient, alice: dict[str, str]) -> None:
    response = http.get("/_test/me", headers=bearer(alice["access"]))
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["subject"] == alice["sub"]
    assert me["auth_method"] == "jwt"
    assert me["username"]
    assert me["is_machine"] is False
    assert me["groups"] == ["admin", "user"]
    assert {"stratus/read", "stratus/write"} <= set(me["scopes"])
    assert me["client_id"] == jwt.get_unverified_claims(alice["access"])["client_id"]


def test_bearer_scheme_is_case_insensitive(http: TestClient, bob: dict[str, str]) -> None:
    response = http.get("/_test/me", headers={"Authorization": f"bearer {bob['access']}"})
    assert response.status_code == 200
    assert response.json()["subject"] == bob["sub"]


def test_admin_passes_the_admin_group_guard(http: TestClient, alice: dict[str, str]) -> None:
    response = http.get("/_test/admin", headers=bearer(alice["access"]))
    assert response.status_code == 200
    assert response.json() == {"admin": True}


def test_user_outside_the_group_gets_403_not_401(http: TestClient, bob: dict[str, str]) -> None:
    response = http.get("/_test/admin", headers=bearer(bob["access"]))
    body = assert_problem(response, 403, "forbidden")
    assert "admin" in body["detail"]
    assert "www-authenticate" not in response.headers


def test_human_passes_the_write_scope_guard(http: TestClient, bob: dict[str, str]) -> None:
    response = http.get("/_test/write", headers=bearer(bob["access"]))
    assert response.status_code == 200
    assert response.json() == {"write": True}


# --- no credentials or a malformed header -------------------------------------------------------------------


def test_no_token_on_a_protected_route_is_401(http: TestClient) -> None:
    assert_unauthorized(http.get("/_test/me"), error="invalid_request")


def test_no_token_on_an_optional_route_is_anonymous(http: TestClient) -> None:
    response = http.get("/_test/maybe")
    assert response.status_code == 200
    assert response.json() == {"anonymous": True}


@pytest.mark.parametrize(
    "authorization",
    [
        "Token x",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic dXNlcjpTdHJhdHVzLWRlbW8tMjAyNiE=",
        "",
        "Bearertoken.abc.def",
    ],
    ids=["token-scheme", "bearer-alone", "bearer-space", "bearer-spaces", "basic", "empty", "no-space"],
)
@pytest.mark.parametrize("path", ["/_test/me", "/_test/maybe"])
def test_malformed_authorization_header_is_401_even_where_optional(
    http: TestClient, path: str, authorization: str
) -> None:
    # A broken header is a client bug to surface, not a reason to carry on as anonymous.
    response = http.get(path, headers={"Authorization": authorization})
    assert_unauthorized(response, error="invalid_request")


def test_bearer_token_and_api_key_together_are_401(http: TestClient, bob: dict[str, str]) -> None:
    response = http.get("/_test/me", headers={**bearer(bob["access"]), "X-API-Key": "sk_test_whatever"})
    assert_unauthorized(response, token=bob["access"], error="invalid_request")


# --- garbage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        "!!!.@@@.###",
        "%%%%.$$$$.^^^^",
        "x" * 10_240,
        ".".join(["eyJhbGciOiJSUzI1NiJ9", "a" * 10_240, "b"]),
        "..",
        "a.b",
        "a.b.c.d",
        "e30.e30.",  # {} as header: no alg, no kid
        "W10.e30.",  # a JSON array as header
        _b64url(bytes([0xFF, 0xFE, 0xFD])) + ".e30.",  # a header that is not UTF-8
        "bnVsbA.e30.",  # null as header
        f"{_b64url_json({'alg': 'RS256'})}.e30.c2ln",  # no kid
        f"{_b64url_json({'alg': 'RS256', 'kid': ''})}.e30.c2ln",
        f"{_b64url_json({'alg': 'RS256', 'kid': 7})}.e30.c2ln",
        f"{_b64url_json({'alg': 'RS256', 'kid': ['dummy']})}.e30.c2ln",
        f"{_b64url_json({'alg': ['RS256'], 'kid': 'dummy'})}.e30.c2ln",
        f"{_b64url_json({'alg': 'RS256', 'kid': 'dummy'})}.bm90IGpzb24.c2ln",  # payload not JSON
        f"{_b64url_json({'alg': 'RS256', 'kid': 'dummy'})}.e30.",  # empty signature
    ],
    ids=[
        "three-words",
        "non-base64",
        "percent-signs",
        "10kb-no-dots",
        "10kb-jwt-shaped",
        "only-dots",
        "two-segments",
        "four-segments",
        "empty-header",
        "array-header",
        "non-utf8-header",
        "null-header",
        "no-kid",
        "empty-kid",
        "numeric-kid",
        "list-kid",
        "list-alg",
        "payload-not-json",
        "empty-signature",
    ],
)
def test_garbage_token_is_401(http: TestClient, token: str) -> None:
    assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token)


def test_garbage_token_on_an_optional_route_is_401_not_anonymous(http: TestClient) -> None:
    assert_unauthorized(http.get("/_test/maybe", headers=bearer("abc.def.ghi")))


# --- forged signatures and algorithm confusion -------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_alg_none_token_is_401(http: TestClient, bob_claims: dict[str, Any], alg: str) -> None:
    forged = {**bob_claims, "cognito:groups": ["admin"]}
    for kid_header in ({"kid": STANDIN_KID}, {}):
        token = f"{_b64url_json({'alg': alg, 'typ': 'JWT', **kid_header})}.{_b64url_json(forged)}."
        assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token)


def _public_key_secrets(standin_jwk: dict[str, Any]) -> dict[str, bytes]:
    spki_pem: bytes = jwk.construct(standin_jwk, "RS256").to_pem()
    public = serialization.load_pem_public_key(spki_pem)
    pkcs1_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return {
        "pem-spki": spki_pem,
        "pem-spki-no-newline": spki_pem.rstrip(b"\n"),
        "pem-pkcs1": pkcs1_pem,
        "jwk-json": json.dumps(standin_jwk).encode(),
        "jwk-json-compact": json.dumps(standin_jwk, separators=(",", ":")).encode(),
        "jwks-json": json.dumps({"keys": [standin_jwk]}).encode(),
        "modulus": standin_jwk["n"].encode(),
    }


@pytest.mark.parametrize(
    "secret_form",
    ["pem-spki", "pem-spki-no-newline", "pem-pkcs1", "jwk-json", "jwk-json-compact", "jwks-json", "modulus"],
)
def test_hs256_signed_with_the_pools_public_key_is_401(
    http: TestClient, bob_claims: dict[str, Any], standin_jwk: dict[str, Any], secret_form: str
) -> None:
    secret = _public_key_secrets(standin_jwk)[secret_form]
    token = _hs256_token({"alg": "HS256", "typ": "JWT", "kid": STANDIN_KID}, bob_claims, secret)
    assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token, detail="algorithm")


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "HS256"])
def test_any_algorithm_but_rs256_is_401(
    http: TestClient,
    trusting_http: TestClient,
    mint: Mint,
    access_claims: Callable[..., dict[str, Any]],
    algorithm: str,
) -> None:
    if algorithm == "HS256":
        token = _hs256_token({"alg": "HS256", "kid": OWN_KID}, access_claims(), b"a shared secret of our own")
    else:
        token = mint(access_claims(), algorithm=algorithm)
    # Refused even by the app that trusts our key: RS256 is the only algorithm, whatever the key.
    for client in (http, trusting_http):
        assert_unauthorized(client.get("/_test/me", headers=bearer(token)), token=token, detail="algorithm")


def test_tampered_groups_with_the_original_signature_is_401(
    http: TestClient, bob: dict[str, str], bob_claims: dict[str, Any]
) -> None:
    header, _, signature = _segments(bob["access"])
    tampered = f"{header}.{_b64url_json({**bob_claims, 'cognito:groups': ['admin']})}.{signature}"
    assert_unauthorized(http.get("/_test/admin", headers=bearer(tampered)), token=tampered)
    assert_unauthorized(http.get("/_test/me", headers=bearer(tampered)), token=tampered)
    # The untouched token still works: the signature, not the claims, made the difference.
    assert http.get("/_test/me", headers=bearer(bob["access"])).status_code == 200


def test_truncated_or_swapped_signature_is_401(
    http: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    bob_header, bob_payload, bob_signature = _segments(bob["access"])
    alice_signature = _segments(alice["access"])[2]
    for token in (
        f"{bob_header}.{bob_payload}.{bob_signature[:-4]}",
        f"{bob_header}.{bob_payload}.{alice_signature}",
        f"{bob_header}.{bob_payload}.{bob_signature[::-1]}",
    ):
        assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token)


def test_own_key_token_claiming_the_pools_kid_is_401(
    http: TestClient, mint: Mint, bob_claims: dict[str, Any]
) -> None:
    token = mint({**bob_claims, "cognito:groups": ["admin"]}, kid=STANDIN_KID)
    assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token, detail="signature")


def test_own_key_token_with_a_random_kid_is_401(
    http: TestClient, mint: Mint, bob_claims: dict[str, Any]
) -> None:
    token = mint(bob_claims, kid=uuid.uuid4().hex)
    assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token, detail="unknown key")


def test_key_embedded_in_the_header_is_not_trusted(
    http: TestClient, mint: Mint, own_key: OwnKey, bob_claims: dict[str, Any]
) -> None:
    # jwk / jku / x5u headers let a token name its own key; only the pool's JWKS may do that.
    for kid in (STANDIN_KID, OWN_KID):
        token = mint(
            bob_claims,
            kid=kid,
            jwk=own_key.public_jwk,
            jku="http://127.0.0.1:1/evil/jwks.json",
            x5u="http://127.0.0.1:1/evil.pem",
        )
        assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token)


def test_unknown_kids_refetch_the_jwks_at_most_once_per_cooldown(
    fresh_app: Callable[..., FastAPI], mint: Mint, bob: dict[str, str], bob_claims: dict[str, Any]
) -> None:
    app = fresh_app()
    signing_keys: SigningKeys = app.state.token_verifier.signing_keys
    with TestClient(app, raise_server_exceptions=False) as client:
        before = signing_keys.fetch_count
        for _ in range(20):
            token = mint(bob_claims, kid=uuid.uuid4().hex)
            assert_unauthorized(
                client.get("/_test/me", headers=bearer(token)), token=token, detail="unknown key"
            )
        # The first unknown kid filled the empty cache; the other 19 fell inside the 60 s cooldown.
        assert signing_keys.fetch_count - before == 1
        assert client.get("/_test/me", headers=bearer(bob["access"])).status_code == 200
        assert signing_keys.fetch_count - before == 1


# --- real tokens used where they do not belong ---------------------------------------------------------------


def test_id_token_is_not_an_access_token(http: TestClient, bob: dict[str, str]) -> None:
    assert jwt.get_unverified_claims(bob["id"])["token_use"] == "id"
    assert_unauthorized(
        http.get("/_test/me", headers=bearer(bob["id"])), token=bob["id"], detail="access token"
    )


def test_refresh_token_is_not_an_access_token(http: TestClient, bob: dict[str, str]) -> None:
    assert_unauthorized(http.get("/_test/me", headers=bearer(bob["refresh"])), token=bob["refresh"])


def test_access_token_of_another_app_client_in_the_same_pool_is_401(
    http: TestClient, aws_resources: LocalResources, bob: dict[str, str]
) -> None:
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    other_client_id: str = cognito.create_user_pool_client(
        UserPoolId=aws_resources.user_pool_id,
        ClientName=f"other-{uuid.uuid4().hex[:6]}",
        ExplicitAuthFlows=LOCAL_AUTH_FLOWS,
        GenerateSecret=False,
    )["UserPoolClient"]["ClientId"]
    token = sign_in(aws_resources.endpoint, other_client_id, bob["email"], DEMO_PASSWORD)["access"]
    claims = jwt.get_unverified_claims(token)
    assert claims["client_id"] == other_client_id
    assert claims["sub"] == bob["sub"]  # same user, same pool, same key: only the client differs
    assert_unauthorized(http.get("/_test/me", headers=bearer(token)), token=token, detail="another client")


# --- claims checked once the signature holds (our key, trusted by `trusting_http`) --------------------------


def test_minted_token_with_valid_claims_is_accepted_by_the_trusting_app(
    trusting_http: TestClient, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    # The control for every claim case below: each differs from this token in one claim only.
    claims = access_claims()
    response = trusting_http.get("/_test/me", headers=bearer(mint(claims)))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == claims["sub"]


def test_expiry_within_the_leeway_is_accepted(
    trusting_http: TestClient, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    token = mint(access_claims(exp=int(time.time()) - LEEWAY_SECONDS // 2))
    assert trusting_http.get("/_test/me", headers=bearer(token)).status_code == 200


ClaimOverrides = Callable[[Settings, int], dict[str, Any]]


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        pytest.param(
            lambda s, now: {"iss": f"https://cognito-idp.{s.aws_region}.amazonaws.com/{s.aws_region}_Other"},
            "",
            id="wrong-issuer",
        ),
        pytest.param(lambda s, now: {"iss": s.cognito_issuer + "/"}, "", id="issuer-with-trailing-slash"),
        pytest.param(
            lambda s, now: {"iss": "https://evil.example/" + s.cognito_user_pool_id},
            "",
            id="issuer-elsewhere",
        ),
        pytest.param(lambda s, now: {"iss": None}, "", id="no-issuer"),
        pytest.param(lambda s, now: {"exp": now - LEEWAY_SECONDS - 60}, "expired", id="expired"),
        pytest.param(lambda s, now: {"nbf": now + LEEWAY_SECONDS + 60}, "", id="not-yet-valid"),
        pytest.param(lambda s, now: {"exp": None}, "", id="no-exp"),
        pytest.param(lambda s, now: {"exp": "tomorrow"}, "", id="exp-not-a-number"),
        pytest.param(lambda s, now: {"iat": None}, "", id="no-iat"),
        pytest.param(lambda s, now: {"sub": None}, "", id="no-sub"),
        pytest.param(lambda s, now: {"sub": ""}, "", id="empty-sub"),
        pytest.param(lambda s, now: {"token_use": "id"}, "access token", id="id-token-use"),
        pytest.param(lambda s, now: {"token_use": None}, "access token", id="no-token-use"),
        pytest.param(
            lambda s, now: {"client_id": "someone-elses-client"}, "another client", id="other-client"
        ),
        pytest.param(lambda s, now: {"client_id": None}, "another client", id="no-client"),
        pytest.param(
            lambda s, now: {"client_id": s.cognito_client_ids}, "another client", id="client-as-list"
        ),
    ],
)
def test_token_with_a_bad_claim_is_401(
    trusting_http: TestClient,
    mint: Mint,
    access_claims: Callable[..., dict[str, Any]],
    settings: Settings,
    overrides: ClaimOverrides,
    detail: str,
) -> None:
    token = mint(access_claims(**overrides(settings, int(time.time()))))
    assert_unauthorized(trusting_http.get("/_test/me", headers=bearer(token)), token=token, detail=detail)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_infinite_time_claim_is_401_not_500(
    trusting_http: TestClient, own_key: OwnKey, access_claims: Callable[..., dict[str, Any]], claim: str
) -> None:
    # 1e400 is valid JSON that parses to infinity. Only a trusted key gets this far, but a signed token
    # must never make the verifier crash.
    claims = access_claims(**{claim: 0})
    payload = json.dumps(claims).replace(f'"{claim}": 0', f'"{claim}": 1e400').encode()
    token = _rs256_token(own_key, {"alg": "RS256", "typ": "JWT", "kid": OWN_KID}, payload)
    assert_unauthorized(trusting_http.get("/_test/me", headers=bearer(token)), token=token)


def test_oversized_token_is_401_even_when_validly_signed(
    trusting_http: TestClient, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    token = mint(access_claims(padding="p" * 9_000))
    assert_unauthorized(
        trusting_http.get("/_test/me", headers=bearer(token)), token=token, detail="malformed"
    )


@pytest.mark.parametrize(
    ("groups_claim", "groups"),
    [
        (["admin", 7, None, {"name": "root"}], ["admin"]),
        ("admin", []),
        ({"admin": True}, []),
        (None, []),
    ],
    ids=["non-strings-dropped", "string-not-a-list", "object", "null"],
)
def test_only_string_groups_from_a_list_count(
    trusting_http: TestClient,
    mint: Mint,
    access_claims: Callable[..., dict[str, Any]],
    groups_claim: Any,
    groups: list[str],
) -> None:
    token = mint({**access_claims(), "cognito:groups": groups_claim})
    response = trusting_http.get("/_test/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["groups"] == groups
    expected_admin = 200 if groups else 403
    assert trusting_http.get("/_test/admin", headers=bearer(token)).status_code == expected_admin


# --- machine (client_credentials) tokens ---------------------------------------------------------------------


def test_token_without_username_is_a_machine_with_only_its_granted_scopes(
    trusting_verifier: TokenVerifier,
    mint: Mint,
    access_claims: Callable[..., dict[str, Any]],
    settings: Settings,
) -> None:
    client_id = settings.cognito_client_ids[0]
    token = mint(access_claims(sub=client_id, username=None, scope="stratus/read"))
    principal = trusting_verifier.verify(token)
    assert principal.is_machine is True
    assert principal.username is None
    assert principal.subject == client_id
    assert principal.scopes == frozenset({"stratus/read"})
    assert principal.groups == frozenset()


def test_machine_groups_claim_does_not_widen_its_scopes(
    trusting_verifier: TokenVerifier, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    token = mint(access_claims(username="", scope="stratus/read", **{"cognito:groups": ["admin"]}))
    principal = trusting_verifier.verify(token)
    assert principal.is_machine is True
    assert principal.scopes == frozenset({"stratus/read"})


def test_machine_with_read_scope_gets_403_on_the_write_route(
    trusting_http: TestClient, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    token = mint(access_claims(username=None, scope="stratus/read"))
    me = trusting_http.get("/_test/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["is_machine"] is True
    assert me.json()["scopes"] == ["stratus/read"]
    body = assert_problem(trusting_http.get("/_test/write", headers=bearer(token)), 403, "forbidden")
    assert "stratus/write" in body["detail"]


def test_machine_with_write_scope_passes_the_write_route(
    trusting_http: TestClient, mint: Mint, access_claims: Callable[..., dict[str, Any]]
) -> None:
    token = mint(access_claims(username=None, scope="stratus/read stratus/write"))
    assert trusting_http.get("/_test/write", headers=bearer(token)).status_code == 200


# --- the JWKS is unreachable --------------------------------------------------------------------------------


def test_unreachable_jwks_with_nothing_cached_is_503_and_not_refetched_in_a_storm(
    fresh_app: Callable[..., FastAPI],
    dead_jwks_url: str,
    bob: dict[str, str],
    mint: Mint,
    bob_claims: dict[str, Any],
) -> None:
    app = fresh_app(cognito_jwks_url=dead_jwks_url)
    signing_keys: SigningKeys = app.state.token_verifier.signing_keys
    started = time.monotonic()
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(10):
            assert_unavailable(client.get("/_test/me", headers=bearer(bob["access"])), token=bob["access"])
            forged = mint(bob_claims, kid=uuid.uuid4().hex)
            assert_unavailable(client.get("/_test/me", headers=bearer(forged)), token=forged)
    elapsed = time.monotonic() - started
    # One attempt per 2 s window while nothing is cached: 20 requests, not 20 fetches.
    assert 1 <= signing_keys.fetch_count <= 1 + int(elapsed // 2.0)


@pytest.mark.parametrize("cooldown_seconds", [60.0, 0.0], ids=["within-cooldown", "refetch-fails"])
def test_cached_keys_keep_working_when_the_jwks_goes_down(
    fresh_app: Callable[..., FastAPI],
    dead_jwks_url: str,
    bob: dict[str, str],
    mint: Mint,
    bob_claims: dict[str, Any],
    cooldown_seconds: float,
) -> None:
    app = fresh_app(jwks_refetch_cooldown_seconds=cooldown_seconds)
    signing_keys: SigningKeys = app.state.token_verifier.signing_keys
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/_test/me", headers=bearer(bob["access"])).status_code == 200
        assert signing_keys.fetch_count == 1
        signing_keys.url = dead_jwks_url
        assert client.get("/_test/me", headers=bearer(bob["access"])).status_code == 200
        forged = mint(bob_claims, kid=uuid.uuid4().hex)
        assert_unauthorized(
            client.get("/_test/me", headers=bearer(forged)), token=forged, detail="unknown key"
        )
        # With no cooldown the unknown kid really tried the dead JWKS; the failure kept the cached keys.
        assert signing_keys.fetch_count == (2 if cooldown_seconds == 0 else 1)
        assert client.get("/_test/me", headers=bearer(bob["access"])).status_code == 200


class MisbehavingJwks:
    """A loopback HTTP 'server' that answers every connection with one canned reply (or none)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/pool/.well-known/jwks.json"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            if self.reply is not None:
                connection.recv(65536)
                connection.sendall(self.reply)
                connection.close()

    def close(self) -> None:
        # shutdown, unlike close, wakes the thread blocked in accept().
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for connection in self._connections:
            connection.close()
        self._thread.join(timeout=1)


def _http_reply(body: bytes, *, status: str = "200 OK") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(None, id="never-answers"),
        pytest.param(b"", id="closes-at-once"),
        pytest.param(_http_reply(b"oops", status="500 Internal Server Error"), id="http-500"),
        pytest.param(_http_reply(b"<html>not json</html>"), id="html"),
        pytest.param(_http_reply(b"[1, 2]"), id="json-list"),
        pytest.param(_http_reply(b'{"keys": "dummy"}'), id="keys-not-a-list"),
        pytest.param(_http_reply(b'{"keys": []}'), id="no-keys"),
        pytest.param(_http_reply(b'{"keys": [{"kid": "dummy", "kty": "RSA", "n": "!!"}]}'), id="broken-key"),
        pytest.param(
            _http_reply(b'{"keys": [{"kid": "dummy", "kty": "oct", "k": "c2VjcmV0"}]}'), id="hmac-key"
        ),
        pytest.param(b"garbage\r\n\r\n", id="bad-status-line"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            id="broken-chunking",
        ),
    ],
)
def test_misbehaving_jwks_endpoint_is_503_never_500_or_accepted(
    fresh_app: Callable[..., FastAPI], bob: dict[str, str], reply: bytes | None
) -> None:
    server = MisbehavingJwks(reply)
    try:
        app = fresh_app(cognito_jwks_url=server.url, jwks_timeout_seconds=0.3)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert_unavailable(client.get("/_test/me", headers=bearer(bob["access"])), token=bob["access"])
    finally:
        server.close()
