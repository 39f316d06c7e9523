"""/api-keys and /admin/audit page like DynamoDB pages: an exactly full last page ends the walk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.test_identity import bearer, create_key
from tests.test_identity_admin import audit_trail

_INDEX_KEYS = {"gsi1": ("gsi1pk", "gsi1sk"), "gsi2": ("gsi2pk", "gsi2sk")}


@pytest.fixture(autouse=True)
def dynamodb_stops_at_the_limit() -> Iterator[None]:
    """DynamoDB answers a Query that filled its Limit with a LastEvaluatedKey, whether or not anything
    follows; the stand-in omits it when nothing does. Answer as DynamoDB does."""

    def answer(call: AwsCall) -> Any:
        response = call.proceed()
        if (
            call.service == "dynamodb"
            and call.operation == "Query"
            and response.get("Count") == call.params.get("Limit")
            and response.get("Items")
            and "LastEvaluatedKey" not in response
        ):
            last = response["Items"][-1]
            names = ("pk", "sk", *_INDEX_KEYS.get(call.params.get("IndexName", ""), ()))
            response["LastEvaluatedKey"] = {name: last[name] for name in names}
        return response

    with intercepting_aws_calls(answer):
        yield


def test_api_key_list_gives_no_cursor_after_an_exactly_full_last_page(
    client: TestClient, make_user: Any
) -> None:
    user = make_user()
    for i in range(3):
        create_key(client, user, name=f"k{i}")
    exact = client.get("/api-keys", headers=bearer(user), params={"limit": 3}).json()
    assert len(exact["items"]) == 3
    assert exact["next_cursor"] is None
    first = client.get("/api-keys", headers=bearer(user), params={"limit": 2}).json()
    last = client.get("/api-keys", headers=bearer(user), params={"limit": 2, "cursor": first["next_cursor"]})
    assert len(last.json()["items"]) == 1
    assert last.json()["next_cursor"] is None


def test_audit_trail_gives_no_cursor_after_an_exactly_full_last_page(
    client: TestClient, make_user: Any
) -> None:
    admin = make_user(("admin", "user"))
    target = make_user()
    for _ in range(2):
        assert client.post(f"/admin/users/{target['sub']}/enable", headers=bearer(admin)).status_code == 200
    total = len(audit_trail(client, admin))
    assert 2 <= total < 100
    exact = client.get("/admin/audit", headers=bearer(admin), params={"limit": total}).json()
    assert len(exact["items"]) == total
    assert exact["next_cursor"] is None
    short = client.get("/admin/audit", headers=bearer(admin), params={"limit": total - 1}).json()
    rest = client.get(
        "/admin/audit", headers=bearer(admin), params={"limit": total - 1, "cursor": short["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None
