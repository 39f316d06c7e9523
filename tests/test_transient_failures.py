"""DynamoDB throttling, an AWS-side 5xx, or an unreachable endpoint is a 503 problem with Retry-After,
never a 500, and never shows AWS's own words."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from main import create_app
from settings import Settings
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.test_identity import bearer

AWS_TEXT = "Throughput exceeds the current capacity of your table"


def refusal(operation_name: str, reasons: tuple[str, ...] = ("ThrottlingError",)) -> ClientError:
    """What DynamoDB answers when it is busy: a throttled call, or for TransactWriteItems (which never
    answers ProvisionedThroughputExceeded) a cancelled transaction whose reasons say why, one per item."""
    if operation_name != "TransactWriteItems":
        return ClientError(
            {
                "Error": {"Code": "ProvisionedThroughputExceededException", "Message": AWS_TEXT},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            operation_name,
        )
    cancelled = [{"Code": code, "Message": AWS_TEXT} for code in reasons]
    return ClientError(
        {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                f"[{', '.join(reasons)}, None]",
            },
            "CancellationReasons": [*cancelled, {"Code": "None"}],
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        operation_name,
    )


@dataclass
class Throttle:
    refused: list[str] = field(default_factory=list)
    active: bool = True


@pytest.fixture
def throttled_dynamodb() -> Iterator[Throttle]:
    """While active, every DynamoDB call is refused as DynamoDB refuses it when busy (the stand-in cannot
    be made to)."""
    throttle = Throttle()

    def answer(call: AwsCall) -> Any:
        if call.service != "dynamodb" or not throttle.active:
            return call.proceed()
        throttle.refused.append(call.operation)
        raise refusal(call.operation)

    with intercepting_aws_calls(answer):
        yield throttle


@pytest.fixture
def cancel_transactions() -> Iterator[Callable[..., list[str]]]:
    """Once called, every TransactWriteItems is cancelled with the given reasons; other calls go through."""
    cancelled: list[str] = []
    reasons: list[str] = []

    def cancel(call: AwsCall) -> Any:
        if not reasons or call.operation != "TransactWriteItems":
            return call.proceed()
        cancelled.append(call.operation)
        raise refusal(call.operation, tuple(reasons))

    def start(*given: str) -> list[str]:
        reasons[:] = given
        return cancelled

    with intercepting_aws_calls(cancel):
        yield start


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert AWS_TEXT not in response.text
    assert "Exception" not in response.text


@pytest.mark.parametrize("path", ["/me", "/projects", "/health/ready"])
def test_throttled_table_is_503_with_retry_after(
    client: TestClient, make_user: Any, throttled_dynamodb: Throttle, path: str
) -> None:
    user = make_user()
    response = client.get(path, headers=bearer(user))
    assert_unavailable(response)
    assert throttled_dynamodb.refused


def test_throttled_write_is_503_and_the_item_is_not_half_written(
    client: TestClient, make_user: Any, throttled_dynamodb: Throttle
) -> None:
    user = make_user()
    assert_unavailable(client.post("/projects", headers=bearer(user), json={"name": "Throttled"}))
    throttled_dynamodb.active = False
    assert client.get("/projects", headers=bearer(user)).json()["items"] == []


def test_unreachable_table_is_a_prompt_503(
    app_environment: dict[str, str], make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    unreachable = create_app(Settings(table_name="unreachable-table"))
    try:
        with TestClient(unreachable, raise_server_exceptions=False) as client:
            started = time.monotonic()
            response = client.get("/me", headers=bearer(user))
            elapsed = time.monotonic() - started
    finally:
        monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")
        create_app(Settings())  # bind the models back to this module's table
    assert_unavailable(response)
    # Connect timeout 1 s and at most 3 attempts: far below API Gateway's 29 s.
    assert elapsed < 15


BUSY_REASONS = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "TransactionConflict",
]


def _project_with_member(client: TestClient, make_user: Any) -> tuple[dict[str, str], dict[str, str], str]:
    owner, member = make_user(), make_user()
    project_id = client.post("/projects", headers=bearer(owner), json={"name": "Busy"}).json()["id"]
    added = client.post(
        f"/projects/{project_id}/members",
        headers=bearer(owner),
        json={"subject": member["sub"], "role": "editor"},
    )
    assert added.status_code == 201, added.text
    return owner, member, project_id


@pytest.mark.parametrize("reason", BUSY_REASONS)
def test_a_transaction_cancelled_under_load_is_503_not_a_conflict(
    client: TestClient, make_user: Any, cancel_transactions: Callable[..., list[str]], reason: str
) -> None:
    owner, member, project_id = _project_with_member(client, make_user)
    newcomer = make_user()
    cancelled = cancel_transactions(reason)

    members = f"/projects/{project_id}/members"
    for response in (
        client.post("/projects", headers=bearer(owner), json={"name": "Another"}),
        client.post(f"/projects/{project_id}/tasks", headers=bearer(member), json={"title": "t"}),
        client.post(members, headers=bearer(owner), json={"subject": newcomer["sub"]}),
        client.patch(f"{members}/{member['sub']}", headers=bearer(owner), json={"role": "viewer"}),
        client.delete(f"{members}/{member['sub']}", headers=bearer(owner)),
    ):
        assert_unavailable(response)
        assert response.json()["type"] == "urn:stratus:problem:service-unavailable"
    assert len(cancelled) == 5


def test_a_transaction_refused_by_a_condition_stays_a_conflict_even_when_also_throttled(
    client: TestClient, make_user: Any, cancel_transactions: Callable[..., list[str]]
) -> None:
    owner, member, project_id = _project_with_member(client, make_user)
    cancel_transactions("ConditionalCheckFailed", "ThrottlingError")
    response = client.patch(
        f"/projects/{project_id}/members/{member['sub']}", headers=bearer(owner), json={"role": "viewer"}
    )
    assert response.status_code == 409, response.text
    assert response.json()["type"] == "urn:stratus:problem:conflict"
