"""DynamoDB throttling, an AWS-side 5xx, or an unreachable endpoint is a 503 problem with Retry-After,
never a 500, and never shows AWS's own words."""

from __future__ import annotations

import time
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient

from main import create_app
from settings import Settings
from tests.test_identity import bearer

AWS_TEXT = "Throughput exceeds the current capacity of your table"


@pytest.fixture
def throttled_dynamodb(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DynamoDB call answers ProvisionedThroughputExceeded (the stand-in cannot be made to throttle)."""
    original = botocore.client.BaseClient._make_api_call
    refused: list[str] = []

    def throttle(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            refused.append(operation_name)
            raise ClientError(
                {
                    "Error": {"Code": "ProvisionedThroughputExceededException", "Message": AWS_TEXT},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                operation_name,
            )
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", throttle)
    return refused


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert AWS_TEXT not in response.text
    assert "Exception" not in response.text


@pytest.mark.parametrize("path", ["/me", "/projects", "/health/ready"])
def test_throttled_table_is_503_with_retry_after(
    client: TestClient, make_user: Any, throttled_dynamodb: list[str], path: str
) -> None:
    user = make_user()
    response = client.get(path, headers=bearer(user))
    assert_unavailable(response)
    assert throttled_dynamodb


def test_throttled_write_is_503_and_the_item_is_not_half_written(
    client: TestClient, make_user: Any, monkeypatch: pytest.MonkeyPatch, throttled_dynamodb: list[str]
) -> None:
    user = make_user()
    assert_unavailable(client.post("/projects", headers=bearer(user), json={"name": "Throttled"}))
    monkeypatch.undo()
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
