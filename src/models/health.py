"""The readiness probe's one read: a GetItem that proves the table answers."""

from __future__ import annotations

from models.table import StratusItem

_PROBE_KEY = "HEALTH#probe"


def read_probe_item() -> None:
    """One strongly consistent-free GetItem; raises PynamoDB errors when the table cannot be reached."""
    try:
        StratusItem.get(_PROBE_KEY, _PROBE_KEY)
    except StratusItem.DoesNotExist:
        return
