"""Every route of the real app that does work for a caller is rate limited, reports its budget, and says
so in the OpenAPI document; only the free public routes are not."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from openapi import dependency_calls
from ratelimit import is_rate_limit
from settings import Settings

# Liveness, the landing page and the docs do no I/O and cost nothing to answer.
UNLIMITED = {
    ("GET", "/"),
    ("GET", "/health"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/vendor/redoc.standalone.js"),
}


def _operations(app: FastAPI) -> dict[tuple[str, str], set[Any]]:
    operations = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            for method in context.methods or ():
                operations[(method, str(context.path_format))] = dependency_calls(context.dependant)
    return operations


def test_every_route_but_the_free_public_ones_is_rate_limited(app: FastAPI) -> None:
    operations = _operations(app)
    assert len(operations) > 30, sorted(operations)
    unlimited = {operation for operation, calls in operations.items() if not any(map(is_rate_limit, calls))}
    assert unlimited == UNLIMITED


def test_the_openapi_document_lists_429_exactly_on_limited_operations(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for (method, path), calls in _operations(app).items():
        operation = paths.get(path, {}).get(method.lower())
        if operation is None:  # the docs pages are not in the document
            continue
        assert ("429" in operation["responses"]) == any(map(is_rate_limit, calls)), (method, path)


def test_readiness_is_documented_as_open_to_anonymous_callers(app: FastAPI) -> None:
    ready = app.openapi()["paths"]["/health/ready"]["get"]
    assert {} in ready["security"]
    assert "403" not in ready["responses"]
    me = app.openapi()["paths"]["/me"]["get"]
    assert {} not in me["security"]
    assert {"401", "403", "429"} <= set(me["responses"])


def test_real_routes_report_the_budget_of_their_class(client: TestClient, make_user: Any) -> None:
    user = make_user()
    headers = {"Authorization": f"Bearer {user['access']}"}
    settings = Settings()
    first = client.get("/me", headers=headers)
    second = client.get("/me", headers=headers)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["X-RateLimit-Limit"] == settings.rate_limit_read.split("/")[0]
    assert int(second.headers["X-RateLimit-Remaining"]) == int(first.headers["X-RateLimit-Remaining"]) - 1

    minted = client.post("/api-keys", headers=headers, json={"name": "ci", "scopes": ["stratus/read"]})
    assert minted.status_code == 201, minted.text
    assert minted.headers["X-RateLimit-Limit"] == settings.rate_limit_expensive.split("/")[0]
