"""Records every AWS API call made through botocore, so tests can count what one request costs in DynamoDB
and prove that no code path scans the table.

PynamoDB 6 sends each operation through its botocore client's `_make_api_call` (retries happen inside it),
as do boto3 clients (Powertools idempotency, Cognito, Secrets Manager): one recorded call per logical
request to AWS, whoever made it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError


@dataclass(frozen=True)
class ApiCall:
    service: str
    operation: str
    table: str | None
    # The error code, and for refused transactions the reasons, when the call failed.
    error: str | None = None


@dataclass
class CallRecorder:
    """Every call since installation, in order; `during()` isolates the calls one block of code made."""

    calls: list[ApiCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: ApiCall) -> None:
        with self._lock:
            self.calls.append(call)

    def dynamodb(self, since: int = 0) -> list[ApiCall]:
        with self._lock:
            return [call for call in self.calls[since:] if call.service == "dynamodb"]

    def operations(self, since: int = 0) -> list[str]:
        return [call.operation for call in self.dynamodb(since)]

    def discard(self, unwanted: list[ApiCall]) -> None:
        with self._lock:
            for call in unwanted:
                self.calls.remove(call)

    @contextmanager
    def during(self) -> Iterator[list[str]]:
        """The DynamoDB operations made inside the block (filled in when the block ends).

        Requests made through a TestClient run in its portal thread but complete before the client call
        returns, so everything recorded between entry and exit belongs to the block.
        """
        start = len(self.calls)
        made: list[str] = []
        yield made
        made.extend(self.operations(start))


def _table_of(params: dict[str, Any]) -> str | None:
    name = params.get("TableName")
    return str(name) if name else None


@contextmanager
def recording_aws_calls() -> Iterator[CallRecorder]:
    """Wraps `BaseClient._make_api_call` for the duration of the block."""
    recorder = CallRecorder()
    original = BaseClient._make_api_call

    def recording(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        try:
            result = original(client, operation_name, api_params)
        except ClientError as error:
            reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            code = error.response.get("Error", {}).get("Code", "")
            recorder.record(
                ApiCall(service, operation_name, _table_of(api_params), f"{code} {reasons or ''}")
            )
            raise
        recorder.record(ApiCall(service, operation_name, _table_of(api_params)))
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recording)
        yield recorder
