"""Personal API keys end, are few, and die with their owner's account: expiry is mandatory and bounded,
a person holds at most MAX_ACTIVE_KEYS, and a key stops working when its owner is disabled, deleted or
signed out everywhere — by an admin here at once, outside the app within OWNER_RECHECK."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from local.resources import LocalResources, aws_client

import models
from models.api_key import ApiKey
from services import api_keys
from tests.aws_calls import AwsCall, client_error, intercepting_aws_calls
from tests.data.helpers import assert_problem
from tests.test_identity import bearer, create_key


@pytest.fixture(scope="module")
def app_environment(app_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    # Minting is in the expensive class (20 a minute): these tests mint more than that as one person.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RATE_LIMIT_EXPENSIVE", "1000/minute")
        yield {**app_environment, "RATE_LIMIT_EXPENSIVE": "1000/minute"}


def mint(client: TestClient, user: dict[str, str], **body: Any) -> Any:
    return client.post(
        "/api-keys", headers=bearer(user), json={"name": "k", "scopes": ["stratus/read"], **body}
    )


def moment(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_a_key_without_an_end_ends_after_the_default_lifetime(client: TestClient, make_user: Any) -> None:
    before = datetime.now(UTC)
    created = create_key(client, make_user())
    ends = datetime.fromisoformat(created["expires_at"])
    assert before + api_keys.DEFAULT_LIFETIME <= ends <= datetime.now(UTC) + api_keys.DEFAULT_LIFETIME


@pytest.mark.parametrize(
    "expires_at",
    [
        pytest.param(lambda: moment(days=367), id="beyond 366 days"),
        pytest.param(lambda: moment(minutes=-1), id="in the past"),
        pytest.param(lambda: "2027-01-01T00:00:00", id="naive date-time"),
        pytest.param(lambda: "2027-01-01", id="date only"),
        pytest.param(lambda: "1999-12-31T23:59:59Z", id="before 2000"),
        pytest.param(lambda: "+275760-09-13T00:00:00Z", id="out of range"),
        pytest.param(lambda: 1e308, id="a huge number"),
        pytest.param(lambda: 2**63, id="2^63"),
        pytest.param(lambda: "2027-02-30T00:00:00Z", id="no such day"),
    ],
)
def test_a_key_end_outside_the_allowed_range_is_422(
    client: TestClient, make_user: Any, expires_at: Any
) -> None:
    user = make_user()
    response = mint(client, user, expires_at=expires_at())
    assert_problem(response, 422)
    assert client.get("/api-keys", headers=bearer(user)).json()["items"] == []


def test_a_key_may_end_as_late_as_366_days_ahead(client: TestClient, make_user: Any) -> None:
    response = mint(client, make_user(), expires_at=moment(days=365, hours=23))
    assert response.status_code == 201, response.text


def test_a_person_holds_at_most_twenty_active_keys(client: TestClient, make_user: Any) -> None:
    user = make_user()
    keys = [create_key(client, user, name=f"k{i}") for i in range(api_keys.MAX_ACTIVE_KEYS)]
    refused = mint(client, user)
    assert "revoke one first" in assert_problem(refused, 409, "conflict")["detail"]
    assert client.delete(f"/api-keys/{keys[0]['id']}", headers=bearer(user)).status_code == 204
    assert mint(client, user).status_code == 201
    assert_problem(mint(client, user), 409, "conflict")
    # An ended key frees its place too.
    expire_key(keys[1]["id"])
    assert mint(client, user).status_code == 201


def expire_key(key_id: str) -> None:
    """Moves a key's end into the past, on the key and in its owner's list, as if its time had run out."""
    key = models.api_key.get_api_key(key_id)
    assert key is not None
    past = datetime.now(UTC) - timedelta(seconds=1)
    ApiKey(key.pk, key.sk).update(actions=[ApiKey.valid_until.set(past)])
    profile = models.profile.UserProfile(models.profile.profile_key(key.owner_subject), "PROFILE")
    profile.update(actions=[models.profile.UserProfile.api_keys[key_id].set(int(past.timestamp()))])


def test_minting_keys_in_a_race_never_passes_the_limit(client: TestClient, make_user: Any) -> None:
    from tests.data.helpers import run_together

    user = make_user()
    for i in range(api_keys.MAX_ACTIVE_KEYS - 2):
        create_key(client, user, name=f"k{i}")
    answers = run_together(*[lambda: mint(client, user) for _ in range(4)])
    assert sum(answer.status_code == 201 for answer in answers) <= 2
    assert {answer.status_code for answer in answers} <= {201, 409}
    holder = models.api_key.get_key_holder(user["sub"])
    assert len(holder.active_keys(datetime.now(UTC))) <= api_keys.MAX_ACTIVE_KEYS


def confirmed_long_ago(key_id: str) -> None:
    """As if the key's owner was last confirmed in the directory before OWNER_RECHECK."""
    ApiKey(f"APIKEY#{key_id}", "APIKEY").update(
        actions=[
            ApiKey.owner_checked_at.set(datetime.now(UTC) - api_keys.OWNER_RECHECK - timedelta(seconds=1))
        ]
    )


@pytest.mark.parametrize("outside_the_app", ["disabled", "deleted"])
def test_a_key_stops_when_its_owner_is_disabled_or_deleted_outside_the_app(
    client: TestClient, make_user: Any, aws_resources: LocalResources, outside_the_app: str
) -> None:
    user = make_user()
    keys = [create_key(client, user, name=f"k{i}") for i in range(2)]
    assert client.get("/me", headers={"X-API-Key": keys[0]["secret"]}).status_code == 200
    cognito = aws_client("cognito-idp", aws_resources.endpoint)
    if outside_the_app == "disabled":
        cognito.admin_disable_user(UserPoolId=aws_resources.user_pool_id, Username=user["sub"])
    else:
        cognito.admin_delete_user(UserPoolId=aws_resources.user_pool_id, Username=user["sub"])
    confirmed_long_ago(keys[0]["id"])
    refused = client.get("/me", headers={"X-API-Key": keys[0]["secret"]})
    assert "can no longer sign in" in assert_problem(refused, 401, "unauthorized")["detail"]
    # The owner's other keys went with it, whenever they were last confirmed.
    assert_problem(client.get("/me", headers={"X-API-Key": keys[1]["secret"]}), 401, "unauthorized")


def test_a_recent_confirmation_carries_a_key_through_a_directory_outage(
    client: TestClient, make_user: Any
) -> None:
    key = create_key(client, make_user())
    ApiKey(f"APIKEY#{key['id']}", "APIKEY").update(
        actions=[
            ApiKey.owner_checked_at.set(datetime.now(UTC) - api_keys.OWNER_RECHECK - timedelta(minutes=1))
        ]
    )
    with intercepting_aws_calls(_cognito_fails):
        assert client.get("/api-keys", headers={"X-API-Key": key["secret"]}).status_code == 200


def _cognito_fails(call: AwsCall) -> Any:
    if call.service == "cognito-idp":
        raise client_error(call.operation, "InternalErrorException")
    return call.proceed()


def test_without_a_recent_confirmation_a_directory_outage_is_503_never_an_admission(
    client: TestClient, make_user: Any
) -> None:
    key = create_key(client, make_user())
    ApiKey(f"APIKEY#{key['id']}", "APIKEY").update(
        actions=[ApiKey.owner_checked_at.set(datetime.now(UTC) - api_keys.OWNER_RECHECK_GRACE)]
    )
    with intercepting_aws_calls(_cognito_fails):
        response = client.get("/api-keys", headers={"X-API-Key": key["secret"]})
    assert_problem(response, 503, "service-unavailable")
    assert int(response.headers["retry-after"]) >= 1


def test_a_key_request_costs_one_consistent_read(client: TestClient, make_user: Any) -> None:
    key = create_key(client, make_user())
    assert client.get("/api-keys", headers={"X-API-Key": key["secret"]}).status_code == 200
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def record(call: AwsCall) -> Any:
        calls.append((call.service, call.operation, call.params))
        return call.proceed()

    with intercepting_aws_calls(record):
        assert client.get("/api-keys", headers={"X-API-Key": key["secret"]}).status_code == 200
    key_reads = [params for service, operation, params in calls if operation == "GetItem"]
    assert len(key_reads) == 1
    assert key_reads[0]["ConsistentRead"] is True
    assert [(s, o) for s, o, _ in calls] == [("dynamodb", "GetItem"), ("dynamodb", "Query")]


def test_a_key_minted_before_key_lists_stops_when_its_owners_sessions_end(
    client: TestClient, make_user: Any
) -> None:
    user = make_user()
    key = create_key(client, user)
    # As a key minted before key lists existed: not listed, no recorded end.
    ApiKey(f"APIKEY#{key['id']}", "APIKEY").update(
        actions=[ApiKey.listed.remove(), ApiKey.valid_until.remove()]
    )
    profile = models.profile.UserProfile(models.profile.profile_key(user["sub"]), "PROFILE")
    profile.update(actions=[models.profile.UserProfile.api_keys.remove()])
    assert client.get("/me", headers={"X-API-Key": key["secret"]}).status_code == 200
    models.profile.record_sessions_revoked(user["sub"], datetime.now(UTC))
    assert_problem(client.get("/me", headers={"X-API-Key": key["secret"]}), 401, "unauthorized")
