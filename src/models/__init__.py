"""PynamoDB models: the single source of truth for the table's schema (keys, indexes, TTL, stream).

Submodules load on first use (`models.profile.get_profile(...)`): PynamoDB and botocore then cost nothing
on a cold start whose first request never touches the table (health checks, docs, refused tokens).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from settings import Settings

    from . import api_key, audit, health, ids, invitation, profile, project, table, task

__all__ = [
    "api_key",
    "audit",
    "bind_models",
    "health",
    "ids",
    "invitation",
    "profile",
    "project",
    "table",
    "task",
]
_SUBMODULES = frozenset(
    {"api_key", "audit", "health", "ids", "invitation", "profile", "project", "table", "task"}
)
_pending_binding: Settings | None = None


def bind_models(settings: Settings) -> None:
    """Point every model at the configured table, now if the models are loaded, else when they load."""
    global _pending_binding  # noqa: PLW0603 - one binding per process, applied lazily
    _pending_binding = settings
    loaded = sys.modules.get(f"{__name__}.table")
    if loaded is not None:
        loaded.apply_binding(settings)


def pending_binding() -> Settings | None:
    return _pending_binding


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
