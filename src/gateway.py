"""API Gateway event handling for Mangum: the app's root path (stage or base-path mapping) is derived
from each event, so /docs and /openapi.json work on the execute-api URL, behind a custom domain and
under `sam local start-api` without any configured prefix."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import Scope

from partner_entry import PARTNER_BASE_PATH, PARTNER_RESOURCES

_PATH_PARAMETER = re.compile(r"\{([^}+]+)\+?\}")
_DUPLICATE_SLASHES = re.compile(r"/{2,}")


def partner_entry_principal(scope: Scope) -> str | None:
    """The partner (client id) API Gateway's partner authorizer admitted, when the request came through the
    partner entry point; None for every other request (and outside Lambda)."""
    event = scope.get("aws.event")
    if not isinstance(event, dict) or event.get("resource") not in PARTNER_RESOURCES:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    principal = authorizer.get("principalId") if isinstance(authorizer, dict) else None
    return principal if isinstance(principal, str) and principal else None


def _app_path_of_rest_event(event: dict[str, Any]) -> str | None:
    """The path the app routes on: the matched resource with its parameters filled in.

    `/{proxy+}` with proxy=`docs` gives `/docs` whether the client called `/Prod/docs` (execute-api, where
    `path` lacks the stage) or `/v1/docs` (custom domain, where `path` carries the base-path mapping).
    """
    resource = event.get("resource")
    if not isinstance(resource, str):
        return None
    parameters = event.get("pathParameters") or {}
    # The template's catch-alls, answered without a regex: this runs on every invocation.
    if resource in ("/{proxy+}", f"{PARTNER_BASE_PATH}/{{proxy+}}"):
        proxy = parameters.get("proxy")
        return None if proxy is None else "/" + proxy.lstrip("/")
    if resource in ("/", PARTNER_BASE_PATH):
        return "/"
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = parameters.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return str(value)

    path = _PATH_PARAMETER.sub(fill, resource)
    return None if missing else _DUPLICATE_SLASHES.sub("/", path)


def _prefix_before(full_path: str, app_path: str) -> str:
    """What the client's path has in front of the app's path ('' when nothing or when they disagree).

    Compared decoded (path parameters arrive decoded, Mangum decodes `path`) and without a trailing slash
    (`/Prod/health/` has proxy `health/`)."""
    full_path = unquote(full_path).rstrip("/")
    app_path = app_path.rstrip("/")
    if not full_path.endswith(app_path):
        return ""
    prefix = full_path[: len(full_path) - len(app_path)]
    # A prefix is whole path segments, never part of one.
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        return ""
    return prefix


class RestApiGateway(APIGateway):
    """REST API (payload v1). `requestContext.path` is what the client asked for, stage or base path
    included; `sam local start-api` puts the resource template there instead, which matches nothing and
    yields no prefix."""

    @property
    def scope(self) -> Scope:
        scope: Scope = super().scope
        app_path = _app_path_of_rest_event(self.event)
        full_path = (self.event.get("requestContext") or {}).get("path")
        if app_path is None or not isinstance(full_path, str):
            return scope
        root_path = _prefix_before(full_path, app_path)
        if self.event.get("resource") in PARTNER_RESOURCES:
            # `path` holds the entry point's prefix too, whatever the URL: the app path is the proxied part.
            scope["root_path"] = root_path or PARTNER_BASE_PATH
            scope["path"] = scope["root_path"] + app_path
            return scope
        route_path = scope["path"]
        # Only a custom domain puts the prefix into `path` too (execute-api leaves the stage out of it, and
        # an app route may well begin with a segment that equals the stage name).
        path_carries_prefix = unquote(self.event.get("path") or "").rstrip("/") == unquote(full_path).rstrip(
            "/"
        )
        if (
            root_path
            and path_carries_prefix
            and (route_path == root_path or route_path.startswith(root_path + "/"))
        ):
            # `/v1` alone (a base-path mapping's root) is the app's `/`.
            route_path = route_path[len(root_path) :] or "/"
        # ASGI: `path` includes `root_path`; Starlette strips it again for routing.
        scope["root_path"] = root_path
        scope["path"] = root_path + route_path
        return scope


class HttpApiGateway(HTTPGateway):
    """HTTP API (payload v2): a named stage appears at the front of `rawPath`; `$default` has none."""

    @property
    def scope(self) -> Scope:
        scope: Scope = super().scope
        event = self.event
        if event.get("version") != "2.0":
            return scope
        stage = (event.get("requestContext") or {}).get("stage")
        path: str = scope["path"]
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            scope["root_path"] = f"/{stage}"
            if path == f"/{stage}":
                scope["path"] = f"/{stage}/"
        return scope
