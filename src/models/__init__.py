"""PynamoDB models: the single source of truth for the table's schema (keys, indexes, TTL, stream)."""

from models.table import StratusItem, bind_models, table_models

__all__ = ["StratusItem", "bind_models", "table_models"]
