"""SnapStart (template.yaml, SnapStart=true): what runs before Lambda snapshots the initialised API function,
and in every copy restored from that snapshot.

Before the snapshot, the path a request takes is primed: the deferred routes are installed, every module
the code imports on first use is imported, the shipped signing keys are constructed. No client is created
and nothing is fetched: a snapshot holds no connection and no credentials.

After a restore, each copy stops sharing what the snapshot froze: Python's `random` is reseeded from the
operating system (every copy would otherwise draw the same numbers, e.g. retry jitter); clients, cached
secrets and cached lookups are dropped, to be made again with this copy's credentials; the JWKS fetch
timers forget times measured in the container that took the snapshot. (Python's string-hash seed is fixed
at interpreter start and cannot be renewed: copies of one snapshot share it.)

Hooks register only when Lambda initialises for a snapshot (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start);
`snapshot_restore_py` exists only in Lambda's python runtime.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from observability import logger

if TYPE_CHECKING:
    from fastapi import FastAPI

SNAPSHOT_INITIALIZATION = "snap-start"
CODE_ROOT = Path(__file__).resolve().parent
# Entry points of the other functions (importing them starts their work) and this module's own callers.
_NOT_PRIMED = frozenset({"main", "runtime_hooks", "stream", "partner_authorizer", "functions"})


def register(app: FastAPI) -> bool:
    """Registers the hooks for `app` when this initialisation ends in a snapshot; True if it did."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAPSHOT_INITIALIZATION:
        return False
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found]  # only in Lambda
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        logger.warning("SnapStart initialisation without snapshot_restore_py: no runtime hooks")
        return False
    register_before_snapshot(prime, app)
    register_after_restore(refresh_after_restore, app)
    return True


def modules_imported_on_first_use(code_root: Path = CODE_ROOT) -> set[str]:
    """Every module the code imports inside a function (on first use) rather than at module level."""
    import ast

    found: set[str] = set()
    for path in sorted(code_root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for scope in ast.walk(tree):
            if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(scope):
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module)
                    # `from routers import projects` imports a submodule; `from jose import jwt` too.
                    found |= {
                        f"{node.module}.{alias.name}"
                        for alias in node.names
                        if _is_module(node.module, alias.name)
                    }
    return {name for name in found if name.split(".")[0] not in _NOT_PRIMED}


def _is_module(package: str, name: str) -> bool:
    import importlib.util

    if package.split(".", maxsplit=1)[0] in _NOT_PRIMED:
        return False
    try:
        return importlib.util.find_spec(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        # Not a package, so `name` is an attribute.
        return False


def prime(app: FastAPI) -> None:
    """Before the snapshot: everything a first request would load or build, without any I/O."""
    import importlib

    app.state.deferred_routes.ensure_installed(app)
    # Starlette builds its middleware stack on the first request; built now, it is part of the snapshot.
    app.middleware_stack = app.build_middleware_stack()
    for name in sorted(modules_imported_on_first_use()):
        try:
            importlib.import_module(name)
        except ImportError:
            logger.warning("could not prime a module", module=name)
    import models

    for name in models.__all__:
        getattr(models, name)
    app.state.token_verifier.signing_keys.preload()
    logger.info("primed for the snapshot", modules=len(sys.modules))


def refresh_after_restore(app: FastAPI) -> None:
    """In each restored copy: its own randomness, its own clients, fresh fetch timers."""
    import random

    random.seed()
    app.state.token_verifier.signing_keys.restart_timers()
    _drop_cached_clients_and_lookups()


# The app's per-container clients, each cached by a functools cache: "module.function". Other caches stay
# (some stand for identity, e.g. ratelimit.rate_limit). tests/test_cold_start_snapstart.py finds every
# cached function that makes a client and fails when one is missing here.
CLIENT_CACHES = ("directory._cognito", "idempotency._persistence", "partner_keys._apigateway")


def _drop_cached_clients_and_lookups() -> None:
    for qualified_name in CLIENT_CACHES:
        module_name, function_name = qualified_name.rsplit(".", 1)
        module = sys.modules.get(module_name)
        if module is not None:
            getattr(module, function_name).cache_clear()
    table = sys.modules.get("models.table")
    if table is not None:
        # PynamoDB keeps one connection (a botocore client) per model class.
        for model in table.table_models():
            model._connection = None
    parameters = sys.modules.get("aws_lambda_powertools.utilities.parameters.base")
    if parameters is not None:
        # Powertools' secret and parameter providers: their clients and the values they cached.
        parameters.clear_caches()
