"""Property-based: requests generated from the OpenAPI document, valid and invalid, for every operation,
with random ids and with ids of real items, never get a 5xx, and every answer is one the document
declares (status code, content type, headers, body schema)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from main import create_app
from ratelimit import RateLimits, install_rate_limits
from settings import Settings

EXAMPLES_PER_CASE = 15
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_app(app_environment: dict[str, str]) -> FastAPI:
    app = create_app(Settings())
    # Generated traffic is not what the limits are for: with them, most answers would be 429s.
    unlimited = "1000000/minute"
    limits = RateLimits(read=unlimited, write=unlimited, expensive=unlimited, anonymous=unlimited)
    install_rate_limits(app, Settings(), limits)
    return app


@pytest.fixture(scope="module")
def real_ids(fuzzed_app: FastAPI, make_user: Any) -> dict[str, Any]:
    """An admin who owns a project with a task and a second member, and that member: ids that exist."""
    admin, member = make_user(("admin", "user")), make_user()
    headers = {"Authorization": f"Bearer {admin['access']}"}
    with TestClient(fuzzed_app) as client:
        project = client.post("/projects", headers=headers, json={"name": "Fuzzed"}).json()
        path = f"/projects/{project['id']}"
        added = client.post(
            f"{path}/members", headers=headers, json={"subject": member["sub"], "role": "editor"}
        )
        assert added.status_code == 201, added.text
        task = client.post(f"{path}/tasks", headers=headers, json={"title": "Fuzzed"}).json()
        key = client.post(
            "/api-keys", headers=headers, json={"name": "fuzzed", "scopes": ["stratus/read"]}
        ).json()
    return {
        "headers": headers,
        "path_parameters": {
            "project_id": project["id"],
            "task_id": task["id"],
            "member_id": member["sub"],
            "user_id": member["sub"],
            "key_id": key["id"],
        },
    }


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error_or_an_undocumented_answer(
    fuzzed_app: FastAPI, real_ids: dict[str, Any]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    server_errors: list[str] = []
    undocumented: set[str] = set()
    statuses: Counter[int] = Counter()

    def check(case: Any) -> None:
        # The credentials are the admin's; generated ones would only be refused (401).
        case.headers = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() not in ("authorization", "x-api-key")
        }
        response = case.call(headers=real_ids["headers"])
        statuses[response.status_code] += 1
        where = f"{case.method} {case.path} -> {response.status_code}"
        if response.status_code >= 500:
            server_errors.append(f"{where} query={case.query} body={case.body!r}: {response.text[:200]}")
        try:
            case.validate_response(response, checks=CONFORMANCE)
        except BaseException as failures:  # schemathesis raises a group of check failures
            for failure in getattr(failures, "exceptions", [failures]):
                undocumented.add(f"{where}: {getattr(failure, 'title', type(failure).__name__)}")

    for operation in operations:
        real = {
            name: value
            for name, value in real_ids["path_parameters"].items()
            if f"{{{name}}}" in operation.path
        }
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in ({}, real) if real else ({},):
                run = settings(
                    max_examples=EXAMPLES_PER_CASE,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                    # The same examples on every run: CI stays reproducible (raise the count to explore).
                    derandomize=True,
                )(given(case=operation.as_strategy(mode, path_parameters=path_parameters or None))(check))
                try:
                    run()
                except Unsatisfiable:
                    # Nothing of this operation can be made invalid (no parameters, no body).
                    if mode is not GenerationMode.NEGATIVE:
                        raise

    assert not server_errors, "\n".join(server_errors[:20])
    assert not undocumented, "\n".join(sorted(undocumented)[:40])
    # The run reached the routes' logic, not only their validation: items were found and changed.
    assert all(statuses[code] for code in (200, 201, 204, 404, 422)), statuses
