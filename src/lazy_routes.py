"""Routes installed on first need: the deployed app starts with the routes a liveness check uses and builds
the rest (~30 routes, their dependencies and response models: about a fifth of a cold start) when the
first request that needs them arrives, or when anything reads the OpenAPI document. A SnapStart snapshot
installs them before it is taken (runtime_hooks.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

_SERVED_MAX = 64


class DeferredRoutes:
    """Installs a set of routes into an app exactly once, whichever request or thread asks first."""

    def __init__(self, install: Callable[[FastAPI], None]) -> None:
        self._install = install
        self._lock = threading.Lock()
        self.installed = False
        # Requests (method, root path, path) that the routes installed so far serve: a warm container that
        # only answers health checks matches each once, not on every request. Only what those few routes
        # serve is kept (anything else installs the rest at once), and at most _SERVED_MAX of them.
        self._served: set[tuple[str, str, str]] = set()

    def ensure_installed(self, app: FastAPI) -> None:
        if self.installed:
            return
        with self._lock:
            if not self.installed:
                self._install(app)
                self.installed = True

    def serves_without_them(self, app: FastAPI, scope: Scope) -> bool:
        """Whether a route already installed answers this request in full (path and method)."""
        key = (scope.get("method", ""), scope.get("root_path", ""), scope.get("path", ""))
        if key in self._served:
            return True
        served = any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)
        if served and len(self._served) < _SERVED_MAX:
            self._served.add(key)
        return served

    def guard_openapi(self, app: FastAPI) -> None:
        """The OpenAPI document lists every route: reading it installs them first (and the installer may
        replace `app.openapi` itself, as openapi.install_openapi does)."""
        fastapi_document = app.openapi

        def openapi() -> dict[str, Any]:
            self.ensure_installed(app)
            document = fastapi_document if app.openapi is openapi else app.openapi
            return document()

        app.openapi = openapi  # type: ignore[method-assign]


class InstallDeferredRoutesMiddleware:
    """Installs the deferred routes before routing the first request that no installed route serves.

    Innermost, so that what the other middleware answers alone (CORS preflights, refused bodies) never
    needs them."""

    def __init__(self, app: ASGIApp, *, deferred: DeferredRoutes) -> None:
        self.app = app
        self.deferred = deferred

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.deferred.installed and scope["type"] == "http":
            fastapi_app: FastAPI = scope["app"]
            if not self.deferred.serves_without_them(fastapi_app, scope):
                self.deferred.ensure_installed(fastapi_app)
        await self.app(scope, receive, send)
