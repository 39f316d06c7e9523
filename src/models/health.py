"""The readiness probe's one read: a GetItem that proves the table answers."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from models.table import StratusItem
from observability import logger

_PROBE_KEY = "HEALTH#probe"


def table_answers() -> bool:
    """One GetItem; False (and the reason in the log, never to the client) when the table cannot answer."""
    try:
        StratusItem.get(_PROBE_KEY, _PROBE_KEY)
    except StratusItem.DoesNotExist:
        return True
    except PynamoDBException:
        logger.exception("readiness check failed: the table did not answer")
        return False
    return True
