"""`Idempotency-Key` on POST: a retry with the same key and body returns the original response; the same
key with another body is a 422; concurrent duplicates create one item. Records expire after 24 h.

Powertools idempotency (DynamoDB persistence layer, its own table) does the bookkeeping; this module only
adapts it to HTTP: the key is scoped to the caller and the route, and a duplicate that arrives while the
first request is still running waits for its result instead of failing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any

from fastapi import Header, Request

from errors import Conflict, ServiceUnavailable, UnprocessableContent
from observability import logger
from settings import Settings

IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600
_WAIT_FOR_IN_PROGRESS_SECONDS = 10.0

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Send the same key when retrying: the original response comes back (24 h).",
    ),
]


@cache
def _persistence(table_name: str) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from botocore.config import Config

    return DynamoDBPersistenceLayer(
        table_name=table_name,
        boto_config=Config(
            connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 2}
        ),
    )


def run_once(
    request: Request,
    settings: Settings,
    caller: str,
    key: str | None,
    body: dict[str, Any],
    produce: Callable[[], dict[str, Any]],
    *,
    operation: tuple[str, str] | None = None,
    path_parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`produce()` once per (caller, route, key); its JSON-able result is what every retry receives.

    The route is `request`'s own (method, path template and path parameters) unless `operation` (method,
    path template) and `path_parameters` name it: another surface of the same operation (its tRPC
    procedure) passes them, so that one key means one request on either surface."""
    if key is None:
        return produce()
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config = IdempotencyConfig(
        event_key_jmespath="scope",
        payload_validation_jmespath="body",
        expires_after_seconds=IDEMPOTENCY_WINDOW_SECONDS,
    )
    lambda_context = request.scope.get("aws.context")
    if lambda_context is not None:
        # Lets Powertools expire an in-progress record if this invocation dies mid-way.
        config.register_lambda_context(lambda_context)

    def execute(request_fingerprint: dict[str, Any]) -> dict[str, Any]:
        return produce()

    guarded = idempotent_function(
        data_keyword_argument="request_fingerprint",
        persistence_store=_persistence(settings.idempotency_table_name),
        config=config,
    )(execute)
    # The key is the caller's own, per route: the same key elsewhere or from someone else is another request.
    # The path's ids belong to the request like its body: the same key and body for another project is a
    # different request (422), not a replay of the first project's answer.
    method, route = operation or (
        request.method,
        getattr(request.scope.get("route"), "path", request.url.path),
    )
    parameters = dict(request.path_params if path_parameters is None else path_parameters)
    fingerprint = {
        "scope": f"{caller}|{method}|{route}|{key}",
        "body": {"path": parameters, "body": body},
    }
    deadline = time.monotonic() + _WAIT_FOR_IN_PROGRESS_SECONDS
    while True:
        try:
            with warnings.catch_warnings():
                # Outside Lambda there is no remaining time to read; the record then expires by TTL alone.
                warnings.filterwarnings("ignore", message="Couldn't determine the remaining time")
                result: dict[str, Any] = guarded(request_fingerprint=fingerprint)
        except IdempotencyValidationError:
            raise UnprocessableContent(
                "This Idempotency-Key was used with a different request body."
            ) from None
        except IdempotencyAlreadyInProgressError:
            if time.monotonic() > deadline:
                raise Conflict("A request with this Idempotency-Key is still in progress.") from None
            time.sleep(0.05)
            continue
        except IdempotencyPersistenceLayerError:
            logger.exception("the idempotency store failed")
            raise ServiceUnavailable("Could not record the request; retry with the same key.") from None
        return result
