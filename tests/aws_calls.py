"""Answering chosen AWS calls in place of the stand-in, for what it cannot be made to do (throttling, a
cancelled transaction under load, unprocessed batch items). Every botocore client, PynamoDB's included,
sends its calls through `BaseClient._make_api_call`, so one interception point serves them all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.client import BaseClient

# What an answer function returns to let the call reach the stand-in.
PASS: Any = object()

Answer = Callable[[str, str, dict[str, Any]], Any]


@contextmanager
def answering_aws_calls(answer: Answer) -> Iterator[None]:
    """Inside the block every call goes to `answer(service, operation, params)` first: it raises the
    error the caller should see, returns the response, or returns PASS to let the call through."""
    original = BaseClient._make_api_call

    def call(client: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        result = answer(client.meta.service_model.service_name, operation_name, api_params)
        return original(client, operation_name, api_params) if result is PASS else result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", call)
        yield
