"""Liveness and readiness."""

from __future__ import annotations

import models
from errors import ServiceUnavailable


def check_readiness() -> dict[str, str]:
    """The table answers, or ServiceUnavailable."""
    if not models.health.table_answers():
        raise ServiceUnavailable("The data store is not reachable.", retry_after_seconds=5)
    return {"status": "ready", "table": "ok"}
