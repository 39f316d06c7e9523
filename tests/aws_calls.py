"""Intercepting AWS calls, for what the stand-in cannot be made to do (throttling, a cancelled transaction
under load, unprocessed batch items, DynamoDB's own paging quirks) and for counting calls. Every botocore
client, PynamoDB's included, sends its calls through `BaseClient._make_api_call`, so one interception
point serves them all; interceptions nest (the inner one sees what the outer one would answer)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError


@dataclass(frozen=True)
class AwsCall:
    """One call on its way out: `proceed()` makes it (for real, or through an outer interception)."""

    service: str
    operation: str
    params: dict[str, Any]
    proceed: Callable[[], Any]


Interception = Callable[[AwsCall], Any]


@contextmanager
def intercepting_aws_calls(intercept: Interception) -> Iterator[None]:
    """Inside the block every call goes to `intercept(call)`, whose answer (or error) the caller gets."""
    original = BaseClient._make_api_call

    def call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        return intercept(
            AwsCall(
                service=client.meta.service_model.service_name,
                operation=operation_name,
                params=api_params,
                proceed=lambda: original(client, operation_name, api_params),
            )
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", call)
        yield


def client_error(operation: str, code: str, message: str = "", **response: Any) -> ClientError:
    """The error botocore raises when AWS refuses a call with `code` (a 400)."""
    error = {"Code": code, "Message": message or f"refused by the test: {code}"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}, **response}, operation)
