"""Ending a user's sessions (sign-out everywhere, disabling) also ends what their unexpired access tokens
can mint: tokens from earlier sign-ins cannot create API keys, fresh sign-ins can."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jose import jwk, jwt
from local.resources import DEMO_PASSWORD, LocalResources, sign_in

import models
from auth import SigningKeys, TokenVerifier
from services.accounts import signed_in_before_revocation
from settings import Settings
from tests.data.helpers import assert_problem
from tests.test_identity import bearer

KEY_REQUEST = {"name": "nightly export", "scopes": ["stratus/read"]}


def signed_in_at(user: dict[str, str]) -> int:
    auth_time: int = jwt.get_unverified_claims(user["access"])["auth_time"]
    return auth_time


def wait_for_the_next_second(user: dict[str, str]) -> None:
    """Token times are whole seconds, and a token from the very second of a revocation is still accepted
    (see signed_in_before_revocation): the revocation must fall in a later second than the sign-in."""
    while time.time() < signed_in_at(user) + 1:
        time.sleep(0.05)


def sign_in_again(aws_resources: LocalResources, user: dict[str, str]) -> dict[str, str]:
    tokens = sign_in(aws_resources.endpoint, aws_resources.client_id, user["email"], DEMO_PASSWORD)
    return {**user, **tokens}


def assert_refused_as_revoked(response: Any) -> None:
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "sign in again" in body["detail"]


def test_a_token_from_before_a_sign_out_everywhere_cannot_mint_an_api_key(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin = bearer(make_user(("admin", "user")))
    target = make_user()
    wait_for_the_next_second(target)
    assert client.post(f"/admin/users/{target['sub']}/sign-out", headers=admin).status_code == 204

    assert_refused_as_revoked(client.post("/api-keys", headers=bearer(target), json=KEY_REQUEST))
    fresh = sign_in_again(aws_resources, target)
    minted = client.post("/api-keys", headers=bearer(fresh), json=KEY_REQUEST)
    assert minted.status_code == 201, minted.text
    assert client.get("/me", headers={"X-API-Key": minted.json()["secret"]}).status_code == 200


def test_a_token_from_before_disabling_cannot_mint_an_api_key_once_enabled_again(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin = bearer(make_user(("admin", "user")))
    target = make_user()
    wait_for_the_next_second(target)
    assert client.post(f"/admin/users/{target['sub']}/disable", headers=admin).status_code == 200
    assert client.post(f"/admin/users/{target['sub']}/enable", headers=admin).status_code == 200

    assert_refused_as_revoked(client.post("/api-keys", headers=bearer(target), json=KEY_REQUEST))
    fresh = sign_in_again(aws_resources, target)
    assert client.post("/api-keys", headers=bearer(fresh), json=KEY_REQUEST).status_code == 201


def test_ending_sessions_keeps_an_existing_profile_and_a_later_profile_keeps_the_revocation(
    client: TestClient, make_user: Any, aws_resources: LocalResources
) -> None:
    admin = bearer(make_user(("admin", "user")))
    known, newcomer = make_user(), make_user()
    renamed = client.patch("/me", headers=bearer(known), json={"display_name": "Known Person"})
    assert renamed.status_code == 200, renamed.text
    for user in (known, newcomer):
        wait_for_the_next_second(user)
        assert client.post(f"/admin/users/{user['sub']}/sign-out", headers=admin).status_code == 204

    # Recording the revocation left the existing profile as it was.
    profile = client.get("/me", headers=bearer(sign_in_again(aws_resources, known))).json()
    assert (profile["display_name"], profile["email"]) == ("Known Person", known["email"])
    # The newcomer's profile is made only now, around the revocation recorded before it existed.
    first = client.get("/me", headers=bearer(newcomer))
    assert first.status_code == 200, first.text
    assert first.json()["email"] == newcomer["email"]
    assert_refused_as_revoked(client.post("/api-keys", headers=bearer(newcomer), json=KEY_REQUEST))


def test_the_revocation_time_only_moves_forward(app: FastAPI) -> None:
    subject = str(uuid.uuid4())
    later = datetime(2030, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    models.profile.record_sessions_revoked(subject, later)
    models.profile.record_sessions_revoked(subject, datetime(2030, 5, 1, 11, 0, tzinfo=UTC))
    assert models.profile.get_sessions_revoked_at(subject) == later
    # An item that holds only the revocation time is no profile yet.
    assert models.profile.get_profile(subject) is None


@pytest.mark.parametrize(
    ("signed_in", "refused"),
    [
        (datetime(2030, 5, 1, 11, 59, 59, tzinfo=UTC), True),
        # The same second as the revocation: a sign-in just after it must pass, so this one does too.
        (datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC), False),
        (datetime(2030, 5, 1, 12, 0, 1, tzinfo=UTC), False),
        (None, True),
    ],
)
def test_a_sign_in_is_refused_only_when_a_whole_second_before_the_revocation(
    signed_in: datetime | None, refused: bool
) -> None:
    revoked_at = datetime(2030, 5, 1, 12, 0, 0, 700_000, tzinfo=UTC)
    assert signed_in_before_revocation(signed_in, revoked_at) is refused


# The sign-in time a token carries


@pytest.fixture(scope="module")
def own_key() -> tuple[str, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = jwk.construct(pem, "RS256").public_key().to_dict()
    return pem, {**public, "kid": "signout-test", "use": "sig", "alg": "RS256"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # A refreshed token: issued now, from a sign-in an hour ago.
        ({"auth_time": 1_900_000_000 - 3600}, 1_900_000_000 - 3600),
        ({}, 1_900_000_000),
        ({"auth_time": "1899990000"}, 1_900_000_000),
    ],
    ids=["auth_time", "iat-without-auth_time", "iat-when-auth_time-is-no-number"],
)
def test_a_principal_is_signed_in_at_the_tokens_auth_time_else_its_iat(
    app_environment: dict[str, str],
    own_key: tuple[str, dict[str, Any]],
    extra: dict[str, Any],
    expected: int,
) -> None:
    settings = Settings()
    pem, public = own_key
    keys = SigningKeys(settings.jwks_url, fetch=lambda _url, _timeout: {"keys": [public]})
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": settings.cognito_issuer,
        "client_id": settings.cognito_client_ids[0],
        "token_use": "access",
        "username": "someone",
        "iat": 1_900_000_000,
        "exp": int(time.time()) + 600,
        **extra,
    }
    token = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": public["kid"]})
    principal = TokenVerifier(settings, keys).verify(token)
    assert principal.authenticated_at == datetime.fromtimestamp(expected, UTC)
