"""The app across two rotations of its secret, over HTTP: cursors and personal API keys made before a
rotation keep working, whichever container serves them; a container that has not read the rotated secret
yet reads it once when it meets the new key; after the configured retirement an old cursor is a 400 and
an old key a 401, problems both, never a 500.

Containers are apps of their own, each with its own copy of the keyring: `client` (built before any
rotation, so it holds the original secret for its cache time) and `fresh_container()` (built after).
The rotation function retires keys after one rotation here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources
from local.standin import StandIn

from app_keyring import LEGACY_KID
from functions.rotate_app_secret import RETIREMENT_VARIABLE
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.data.helpers import assert_problem
from tests.secret_rotation import rotate, rotation_function_arn


def bearer(user: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user['access']}"}


def api_key(key: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": key["secret"]}


def mint_key(http: TestClient, user: dict[str, str]) -> dict[str, Any]:
    expires_at = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    response = http.post(
        "/api-keys",
        headers=bearer(user),
        json={"name": "script", "scopes": ["stratus/read"], "expires_at": expires_at},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def first_page_cursor(http: TestClient, user: dict[str, str]) -> str:
    """A cursor to the second page of the user's keys (they hold two or more)."""
    page = http.get("/api-keys", headers=bearer(user), params={"limit": 1})
    assert page.status_code == 200, page.text
    cursor: str = page.json()["next_cursor"]
    assert cursor
    return cursor


def next_page(http: TestClient, user: dict[str, str], cursor: str) -> Any:
    return http.get("/api-keys", headers=bearer(user), params={"limit": 1, "cursor": cursor})


def cursor_kid(cursor: str) -> str:
    parts = cursor.split(".")
    return parts[0] if len(parts) == 3 else LEGACY_KID


@contextmanager
def secret_reads() -> Iterator[list[str]]:
    """The GetSecretValue calls made inside the block."""
    reads: list[str] = []

    def count(call: AwsCall) -> Any:
        if call.service == "secretsmanager" and call.operation == "GetSecretValue":
            reads.append(call.params["SecretId"])
        return call.proceed()

    with intercepting_aws_calls(count):
        yield reads


@pytest.fixture(scope="module")
def containers(app_environment: dict[str, str]) -> Iterator[list[TestClient]]:
    opened: list[TestClient] = []
    yield opened
    for http in opened:
        http.__exit__(None, None, None)


@pytest.fixture(scope="module")
def fresh_container(containers: list[TestClient]):  # type: ignore[no-untyped-def]
    """A new container: an app with its own copy of the secret, read on its first need."""
    from main import create_app
    from settings import Settings

    def _fresh() -> TestClient:
        http = TestClient(create_app(Settings()), raise_server_exceptions=False)
        http.__enter__()
        containers.append(http)
        return http

    return _fresh


@pytest.fixture(scope="module")
def rotate_secret(standin: StandIn, aws_resources: LocalResources):  # type: ignore[no-untyped-def]
    function_arn = rotation_function_arn(standin.endpoint)

    def _rotate() -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(RETIREMENT_VARIABLE, "1")
            rotate(standin.endpoint, aws_resources.secret_arn, function_arn)

    return _rotate


def test_cursors_and_keys_survive_a_rotation_and_retire_after_the_next(
    client: TestClient, make_user: Any, fresh_container: Any, rotate_secret: Any
) -> None:
    user = make_user()
    # Made before any rotation, under the secret's original master_key.
    original_keys = [mint_key(client, user), mint_key(client, user)]
    original_cursor = first_page_cursor(client, user)
    assert cursor_kid(original_cursor) == LEGACY_KID

    rotate_secret()

    # The container that has not read the rotated secret goes on as before.
    assert client.get("/me", headers=api_key(original_keys[0])).status_code == 200
    assert next_page(client, user, original_cursor).status_code == 200

    # A container started after the rotation signs and hashes with the new key and accepts the old ones.
    newer = fresh_container()
    rotated_key = mint_key(newer, user)
    rotated_cursor = first_page_cursor(newer, user)
    rotated_kid = cursor_kid(rotated_cursor)
    assert rotated_kid != LEGACY_KID
    assert newer.get("/me", headers=api_key(original_keys[0])).status_code == 200
    assert next_page(newer, user, original_cursor).status_code == 200

    # The old container meets the new key: it reads the secret once, however many requests bring it.
    with secret_reads() as reads:
        for _ in range(3):
            assert client.get("/me", headers=api_key(rotated_key)).status_code == 200
            assert next_page(client, user, rotated_cursor).status_code == 200
    assert len(reads) == 1
    # And from then on signs with it too.
    assert cursor_kid(first_page_cursor(client, user)) == rotated_kid

    rotate_secret()

    # The original key retired with this rotation (one rotation after it stopped being current).
    latest = fresh_container()
    assert_problem(latest.get("/me", headers=api_key(original_keys[1])), 401, "unauthorized")
    assert_problem(next_page(latest, user, original_cursor), 400, "invalid-cursor")
    # Made one rotation ago: still accepted.
    assert latest.get("/me", headers=api_key(rotated_key)).status_code == 200
    assert next_page(latest, user, rotated_cursor).status_code == 200
    latest_cursor = first_page_cursor(latest, user)
    assert cursor_kid(latest_cursor) > rotated_kid
    # A container whose copy predates the second rotation accepts the retired key until its copy's cache
    # time runs out, and meets the newest key with one read of the secret.
    assert newer.get("/me", headers=api_key(original_keys[1])).status_code == 200
    with secret_reads() as reads:
        assert newer.get("/me", headers=api_key(mint_key(latest, user))).status_code == 200
        assert next_page(newer, user, latest_cursor).status_code == 200
    assert len(reads) == 1
    assert_problem(newer.get("/me", headers=api_key(original_keys[1])), 401, "unauthorized")


def test_a_cursor_naming_a_key_nobody_made_is_a_400_after_one_read_of_the_secret(
    make_user: Any, fresh_container: Any
) -> None:
    http = fresh_container()
    user = make_user()
    mint_key(http, user)
    mint_key(http, user)
    cursor = first_page_cursor(http, user)
    payload, signature = cursor.split(".")[-2:]
    forged = f"99991231235959.{payload}.{signature}"
    with secret_reads() as reads:
        for _ in range(3):
            assert_problem(next_page(http, user, forged), 400, "invalid-cursor")
    assert len(reads) == 1
    # Another unknown kid within the cooldown may be a key made since that read: not refused, deferred.
    deferred = next_page(http, user, f"99991231235958.{payload}.{signature}")
    assert_problem(deferred, 503, "service-unavailable")
    assert 1 <= int(deferred.headers["Retry-After"]) <= 15
    assert_problem(next_page(http, user, f"not-a-kid.{payload}.{signature}"), 400, "invalid-cursor")
