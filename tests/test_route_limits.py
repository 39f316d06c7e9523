"""Every route of the real app that does work for a caller is rate limited, reports its budget, and says
so in the OpenAPI document; only the free public routes are not, and those make no DynamoDB call and tell
caches how long to keep them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from main import create_app, create_handler
from openapi import dependency_calls
from ratelimit import is_rate_limit
from settings import Settings
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.ratelimit_app import invoke

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


# What each free public route answers a GET with (Cache-Control), and the CORS preflight: liveness must
# reach the function every time; the index, the docs pages and the OpenAPI document change only with a
# deployment; the docs assets are the installed packages' files.
PUBLIC_GETS = {
    "/health": "no-store",
    "/": "public, max-age=300",
    "/openapi.json": "public, max-age=300",
    "/docs": "public, max-age=300",
    "/redoc": "public, max-age=300",
    "/docs/vendor/redoc.standalone.js": "public, max-age=86400",
    "/docs/vendor/swagger-ui-bundle.js": "public, max-age=86400",
    "/docs/vendor/swagger-ui.css": "public, max-age=86400",
    "/docs/assets/swagger-init.js": "public, max-age=86400",
    "/docs/assets/redoc-init.js": "public, max-age=86400",
}


@pytest.fixture
def deployed_like_handler(app_environment: dict[str, str], rate_limit_storage_uri: str) -> Any:
    """A fresh app as deployed: counters in the rate-limit table, leased; nothing cached from a request."""
    return create_handler(create_app(Settings(rate_limit_storage_uri=rate_limit_storage_uri)))


def test_every_free_route_is_among_the_public_routes_checked_below() -> None:
    free_gets = {path for method, path in UNLIMITED if method == "GET"}
    assert free_gets <= set(PUBLIC_GETS)


@pytest.mark.parametrize(("path", "cache_control"), sorted(PUBLIC_GETS.items()))
def test_public_routes_make_no_aws_call_and_tell_caches_how_long_to_keep_them(
    deployed_like_handler: Any, path: str, cache_control: str
) -> None:
    with recording_aws_calls() as calls:
        # Twice: the first request of a container and a later one.
        answers = [invoke(deployed_like_handler, path) for _ in range(2)]
    assert [answer["status"] for answer in answers] == [200, 200]
    assert [(call.service, call.operation) for call in calls] == []
    for answer in answers:
        assert answer["headers"]["cache-control"] == cache_control
        assert "x-ratelimit-limit" not in answer["headers"]


def test_cors_preflights_make_no_aws_call(
    deployed_like_handler: Any, app_environment: dict[str, str]
) -> None:
    preflight: dict[str, list[str] | str] = {
        "Origin": Settings().cors_allow_origins[0],
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    with recording_aws_calls() as calls:
        answers = [
            invoke(deployed_like_handler, path, method="OPTIONS", headers=preflight)
            for path in ("/projects", "/me", "/health/ready", "/api-keys", "/health", "/openapi.json")
        ]
    assert {answer["status"] for answer in answers} == {200}
    assert calls == []
    for answer in answers:
        # Browsers keep the preflight's answer for this long (CORSMiddleware's max_age).
        assert answer["headers"]["access-control-max-age"] == "600"


@contextmanager
def recording_aws_calls() -> Iterator[list[AwsCall]]:
    """Every AWS call made inside the block, by any botocore client (PynamoDB's, the limiter's...)."""
    calls: list[AwsCall] = []

    def record(call: AwsCall) -> Any:
        calls.append(call)
        return call.proceed()

    with intercepting_aws_calls(record):
        yield calls


def test_errors_and_limited_routes_get_no_public_cache_header(client: TestClient) -> None:
    missing_asset = client.get("/docs/vendor/no-such-file.js")
    assert missing_asset.status_code == 404
    assert "cache-control" not in missing_asset.headers
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert "cache-control" not in ready.headers
    assert json.loads(ready.text)["status"]
