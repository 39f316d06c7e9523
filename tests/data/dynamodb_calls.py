"""Records every AWS API call made through botocore, so tests can count what one request costs in DynamoDB
and prove that no code path scans the table.

Every botocore client (PynamoDB's, Powertools', boto3's) passes through tests/aws_calls.py's interception
point, with retries inside it: one recorded call per logical request to AWS, whoever made it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tests.aws_calls import AwsCall, intercepting_aws_calls


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
    """Records every AWS call made inside the block."""
    recorder = CallRecorder()

    def recording(call: AwsCall) -> Any:
        try:
            result = call.proceed()
        except ClientError as error:
            reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            code = error.response.get("Error", {}).get("Code", "")
            recorder.record(
                ApiCall(call.service, call.operation, _table_of(call.params), f"{code} {reasons or ''}")
            )
            raise
        recorder.record(ApiCall(call.service, call.operation, _table_of(call.params)))
        return result

    with intercepting_aws_calls(recording):
        yield recorder
