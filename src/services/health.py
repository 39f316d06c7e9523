"""Liveness and readiness."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from errors import ServiceUnavailable
from models.health import read_probe_item
from observability import logger


def check_readiness() -> dict[str, str]:
    """The table answers, or ServiceUnavailable (the reason goes to the log, never to the client)."""
    try:
        read_probe_item()
    except PynamoDBException:
        logger.exception("readiness check failed: the table did not answer")
        raise ServiceUnavailable("The data store is not reachable.", retry_after_seconds=5) from None
    return {"status": "ready", "table": "ok"}
