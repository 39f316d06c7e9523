"""Every error is application/problem+json with type, title, status, detail, instance and request id;
nothing internal leaks; CORS headers survive a 500."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

import errors
from main import create_app
from settings import Settings

ALLOWED_ORIGIN = "https://app.example.com"
SECRET_TEXT = "AccessDeniedException: arn:aws:dynamodb:us-east-1:123456789012:table/secret"


class Widget(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    size: int = Field(ge=1)


@pytest.fixture(scope="module")
def error_app(app_environment: dict[str, str]) -> FastAPI:
    app = create_app(Settings(cors_allow_origins=[ALLOWED_ORIGIN]))

    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET_TEXT)

    @app.get("/_test/missing")
    async def missing() -> None:
        raise errors.NotFound("Widget 42 does not exist.")

    @app.get("/_test/stale")
    async def stale() -> None:
        raise errors.PreconditionFailed("The widget changed since you read it.")

    @app.get("/_test/busy")
    async def busy() -> None:
        raise errors.ServiceUnavailable("The data store is throttling.", retry_after_seconds=3)

    @app.get("/_test/who")
    async def who() -> None:
        raise errors.Unauthorized("Missing bearer token.", error="invalid_request")

    @app.post("/_test/widgets", status_code=201)
    async def create_widget(widget: Widget, limit: int = 10) -> Widget:
        return widget

    return app


@pytest.fixture(scope="module")
def http(error_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(error_app, raise_server_exceptions=False) as client:
        yield client


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    for member in ("type", "title", "status", "detail", "instance", "request_id"):
        assert member in body, member
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_unknown_path_is_404_problem(http: TestClient) -> None:
    body = assert_problem(http.get("/no/such/thing"), 404)
    assert body["instance"] == "/no/such/thing"
    assert body["type"].endswith("not-found")
    assert body["title"] == "Not found"  # sentence case, as the domain errors write it


def test_wrong_method_is_405_problem_with_allow(http: TestClient) -> None:
    response = http.delete("/health")
    body = assert_problem(response, 405)
    assert response.headers["allow"] == "GET"
    assert body["title"] == "Method not allowed"


def test_non_json_body_is_415_problem(http: TestClient) -> None:
    response = http.post("/_test/widgets", content="name=x", headers={"content-type": "text/plain"})
    body = assert_problem(response, 415)
    assert "application/json" in body["detail"]


def test_malformed_json_is_400_problem(http: TestClient) -> None:
    response = http.post("/_test/widgets", content='{"name": ', headers={"content-type": "application/json"})
    body = assert_problem(response, 400)
    # Where the JSON broke is said in the message; there is no field to name.
    (error,) = body["errors"]
    assert (error["location"], error["field"]) == ("body", "")
    assert "at character 9" in error["message"]


def test_validation_lists_every_offending_field_with_location(http: TestClient) -> None:
    response = http.post("/_test/widgets?limit=many", json={"name": "", "size": 0, "extra": "x"})
    body = assert_problem(response, 422)
    located = {(error["location"], error["field"]) for error in body["errors"]}
    assert located == {("body", "name"), ("body", "size"), ("query", "limit")}
    assert all(error["message"] for error in body["errors"])


def test_validation_never_echoes_input_values(http: TestClient) -> None:
    response = http.post("/_test/widgets", json={"name": "s3cr3t-value-xxxxxxxxxxxxxxxx", "size": 1})
    assert response.status_code == 422
    assert "s3cr3t" not in response.text


@pytest.mark.parametrize(
    ("path", "status", "problem"),
    [
        ("/_test/missing", 404, "not-found"),
        ("/_test/stale", 412, "precondition-failed"),
        ("/_test/busy", 503, "service-unavailable"),
        ("/_test/who", 401, "unauthorized"),
    ],
)
def test_domain_errors_map_to_their_status(http: TestClient, path: str, status: int, problem: str) -> None:
    body = assert_problem(http.get(path), status)
    assert body["type"] == errors.PROBLEM_TYPE_BASE + problem


def test_service_unavailable_carries_retry_after(http: TestClient) -> None:
    assert http.get("/_test/busy").headers["retry-after"] == "3"


def test_unauthorized_carries_bearer_challenge(http: TestClient) -> None:
    assert http.get("/_test/who").headers["www-authenticate"] == 'Bearer error="invalid_request"'


def test_unhandled_error_is_500_problem_without_internals(http: TestClient) -> None:
    response = http.get("/_test/boom")
    body = assert_problem(response, 500)
    assert SECRET_TEXT not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"]


def test_500_still_carries_cors_headers_for_an_allowed_origin(http: TestClient) -> None:
    response = http.get("/_test/boom", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]


def test_cors_ignores_an_origin_that_is_not_allowed(http: TestClient) -> None:
    response = http.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_preflight_is_answered_with_a_request_id(http: TestClient) -> None:
    response = http.options(
        "/_test/widgets",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("origin", "method", "headers", "refused"),
    [
        ("https://evil.example", "POST", "content-type", "origin"),
        (ALLOWED_ORIGIN, "TRACE", "content-type", "method"),
        (ALLOWED_ORIGIN, "POST", "content-type, x-debug-everything", "headers"),
    ],
)
def test_a_refused_preflight_is_a_problem(
    http: TestClient, origin: str, method: str, headers: str, refused: str
) -> None:
    response = http.options(
        "/_test/widgets",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("cors-preflight-refused")
    assert refused in body["detail"]
    assert body["instance"] == "/_test/widgets"
    assert body["request_id"] == response.headers["x-request-id"]
    # The browser still learns what the policy allows; a foreign origin is never echoed.
    assert "access-control-allow-methods" in response.headers
    assert response.headers.get("access-control-allow-origin") in (None, ALLOWED_ORIGIN)


def test_every_log_line_of_a_request_carries_its_request_id(http: TestClient, app_log: io.StringIO) -> None:
    response = http.get("/_test/boom")
    request_id = response.headers["x-request-id"]
    lines = [json.loads(line) for line in app_log.getvalue().splitlines()]
    assert len(lines) >= 2  # the error and the access line
    assert {line.get("request_id") for line in lines} == {request_id}
    access = lines[-1]
    assert access["status"] == 500
    assert access["route"] == "GET /_test/boom"
    assert "latency_ms" in access


def test_request_ids_differ_between_requests(http: TestClient) -> None:
    first = http.get("/health").headers["x-request-id"]
    second = http.get("/health").headers["x-request-id"]
    assert first != second


def test_with_the_access_log_off_only_cold_start_and_server_errors_are_logged(
    app_environment: dict[str, str], app_log: io.StringIO
) -> None:
    quiet = create_app(Settings(access_log=False))

    @quiet.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("x")

    with TestClient(quiet, raise_server_exceptions=False) as client:
        client.get("/health")
        client.get("/health")
        client.get("/_test/boom")
    access = [json.loads(line) for line in app_log.getvalue().splitlines() if '"message":"request"' in line]
    assert [(line["status"], line["cold_start"]) for line in access] == [(200, True), (500, False)]


@pytest.mark.parametrize("path", ["/health", "/no/such/thing", "/_test/boom", "/docs"])
def test_every_response_carries_the_security_headers(http: TestClient, path: str) -> None:
    response = http.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["strict-transport-security"].startswith("max-age=")
    # Added once, whatever made the response (a route, an error handler, the docs pages).
    for name in ("x-request-id", "x-content-type-options", "referrer-policy", "strict-transport-security"):
        assert len(response.headers.get_list(name)) == 1, name


def test_the_openapi_document_declares_problem_json_for_every_error(http: TestClient) -> None:
    document = http.get("/openapi.json").json()
    assert "Problem" in document["components"]["schemas"]
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert operations
    for operation in operations:
        for status in ("422", "500", "503"):
            assert status in operation["responses"], operation["operationId"]
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (
                    operation["operationId"],
                    status,
                )
    secured = [op for op in operations if op.get("security")]
    assert secured
    assert all("401" in op["responses"] for op in secured)
