"""The Lambda handler with real API Gateway event shapes: REST (v1) and HTTP API (v2), stage prefixes,
custom-domain base paths, `sam local`, base64 bodies, repeated query keys and cookies."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from fastapi import FastAPI, Query, Request, Response
from mangum import Mangum
from pydantic import BaseModel

import main
from main import create_app, create_handler
from settings import Settings
from tests.events import LambdaContext, http_api_event, rest_event


class Note(BaseModel):
    text: str


@pytest.fixture(scope="module")
def echo_handler() -> Mangum:
    app: FastAPI = create_app(Settings())

    @app.post("/_test/echo", status_code=201)
    async def echo(note: Note, request: Request, tag: list[str] = Query(default=[])) -> dict[str, Any]:  # noqa: B008
        return {"text": note.text, "tags": tag, "client": request.client.host if request.client else None}

    @app.get("/_test/cookies")
    async def cookies(response: Response) -> dict[str, str]:
        response.set_cookie("first", "1")
        response.set_cookie("second", "2")
        return {"set": "two"}

    return create_handler(app)


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = main.handler(event, LambdaContext())
    return result


def body_of(result: dict[str, Any]) -> str:
    body: str = result["body"]
    return base64.b64decode(body).decode() if result["isBase64Encoded"] else body


def header(result: dict[str, Any], name: str) -> str | None:
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return str(values[-1])
    return None


def test_rest_event_reaches_the_route_and_returns_gateway_request_id() -> None:
    event = rest_event("GET", "/health")
    result = invoke(event)
    assert result["statusCode"] == 200
    assert json.loads(body_of(result)) == {"status": "ok"}
    assert header(result, "x-request-id") == event["requestContext"]["requestId"]


def test_http_api_event_reaches_the_route() -> None:
    event = http_api_event("GET", "/health")
    result = invoke(event)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"status": "ok"}
    assert result["headers"]["x-request-id"] == event["requestContext"]["requestId"]


def _asset_urls(html: str) -> list[str]:
    # Without the assets' version (`?v=`), which every asset URL carries.
    urls = re.findall(r'(?:src|href)="(/[^"]*)"', html) + re.findall(r'data-openapi-url="([^"]*)"', html)
    return [url.split("?", 1)[0] for url in urls]


@pytest.mark.parametrize(
    ("event", "prefix"),
    [
        (rest_event("GET", "/docs", stage="Prod"), "/Prod"),
        (rest_event("GET", "/docs", stage="dev"), "/dev"),
        (rest_event("GET", "/docs", base_path="v1"), "/v1"),
        (rest_event("GET", "/docs", sam_local=True), ""),
        (http_api_event("GET", "/docs"), ""),
        (http_api_event("GET", "/docs", stage="staging"), "/staging"),
    ],
    ids=[
        "execute-api-Prod",
        "execute-api-dev",
        "custom-domain-v1",
        "sam-local",
        "http-api-default",
        "http-api-stage",
    ],
)
def test_docs_page_loads_its_spec_and_assets_under_the_clients_prefix(
    event: dict[str, Any], prefix: str
) -> None:
    result = invoke(event)
    assert result["statusCode"] == 200
    html = body_of(result)
    urls = _asset_urls(html)
    assert f"{prefix}/openapi.json" in urls
    assert f"{prefix}/docs/vendor/swagger-ui-bundle.js" in urls
    assert all(url.startswith(prefix + "/") for url in urls), urls
    assert "script-src 'self'" in (header(result, "content-security-policy") or "")


@pytest.mark.parametrize(
    ("event", "server"),
    [
        (rest_event("GET", "/openapi.json", stage="Prod"), "/Prod"),
        (rest_event("GET", "/openapi.json", base_path="v1"), "/v1"),
    ],
)
def test_openapi_servers_point_try_it_out_at_the_prefix(event: dict[str, Any], server: str) -> None:
    result = invoke(event)
    assert result["statusCode"] == 200
    spec = json.loads(body_of(result))
    assert spec["servers"] == [{"url": server}]
    assert "/health" in spec["paths"]


def test_custom_domain_base_path_is_stripped_before_routing() -> None:
    result = invoke(rest_event("GET", "/health", base_path="v1"))
    assert result["statusCode"] == 200


def test_docs_assets_are_served_as_text_not_base64() -> None:
    result = invoke(rest_event("GET", "/docs/vendor/swagger-ui-bundle.js"))
    assert result["statusCode"] == 200
    assert result["isBase64Encoded"] is False
    assert "javascript" in (header(result, "content-type") or "")
    assert "SwaggerUIBundle" in result["body"]


def test_root_resource_links_to_the_docs_under_the_stage() -> None:
    result = invoke(rest_event("GET", "/"))
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["docs"] == "/Prod/docs"


def test_unknown_path_problem_names_the_path_the_client_used() -> None:
    result = invoke(rest_event("GET", "/nowhere"))
    assert result["statusCode"] == 404
    assert result["isBase64Encoded"] is False
    assert header(result, "content-type") == "application/problem+json"
    assert json.loads(result["body"])["instance"] == "/Prod/nowhere"


def test_problem_json_is_not_base64_encoded_over_http_api() -> None:
    result = invoke(http_api_event("GET", "/nowhere"))
    assert result["statusCode"] == 404
    assert result["isBase64Encoded"] is False
    assert json.loads(result["body"])["status"] == 404


@pytest.mark.parametrize("make_event", [rest_event, http_api_event], ids=["rest", "http-api"])
def test_base64_json_body_and_repeated_query_keys(echo_handler: Mangum, make_event: Any) -> None:
    event = make_event(
        "POST",
        "/_test/echo",
        headers={"content-type": "application/json"},
        query={"tag": ["a", "b", "c"]},
        body={"text": "héllo"},
        base64_body=True,
    )
    result = echo_handler(event, LambdaContext())
    assert result["statusCode"] == 201, body_of(result)
    assert json.loads(body_of(result)) == {"text": "héllo", "tags": ["a", "b", "c"], "client": "203.0.113.10"}


def test_client_address_is_the_gateways_source_ip_not_x_forwarded_for(echo_handler: Mangum) -> None:
    event = rest_event(
        "POST",
        "/_test/echo",
        headers={"content-type": "application/json", "X-Forwarded-For": "6.6.6.6"},
        body={"text": "x"},
    )
    result = echo_handler(event, LambdaContext())
    assert json.loads(body_of(result))["client"] == "203.0.113.10"


def test_multiple_set_cookie_headers_survive_rest(echo_handler: Mangum) -> None:
    result = echo_handler(rest_event("GET", "/_test/cookies"), LambdaContext())
    cookies = result["multiValueHeaders"]["set-cookie"]
    assert len(cookies) == 2
    assert {cookie.split("=")[0] for cookie in cookies} == {"first", "second"}


def test_multiple_set_cookie_headers_survive_http_api(echo_handler: Mangum) -> None:
    result = echo_handler(http_api_event("GET", "/_test/cookies"), LambdaContext())
    assert len(result["cookies"]) == 2


def test_validation_error_through_the_handler_is_a_text_problem(echo_handler: Mangum) -> None:
    event = rest_event("POST", "/_test/echo", headers={"content-type": "application/json"}, body={"nope": 1})
    result = echo_handler(event, LambdaContext())
    assert result["statusCode"] == 422
    assert result["isBase64Encoded"] is False
    problem = json.loads(result["body"])
    assert problem["errors"][0]["location"] == "body"
    assert problem["request_id"] == event["requestContext"]["requestId"]


def test_an_app_path_that_starts_with_the_stage_name_is_not_cut() -> None:
    # Stage "health" and route /health: execute-api sends path /health (the stage left out).
    result = invoke(rest_event("GET", "/health", stage="health"))
    assert result["statusCode"] == 200
    assert json.loads(body_of(result)) == {"status": "ok"}


def test_trailing_slash_keeps_the_stage_prefix_on_redirect() -> None:
    result = invoke(rest_event("GET", "/health/", stage="Prod"))
    assert result["statusCode"] == 307
    assert (header(result, "location") or "").endswith("/Prod/health")


def test_base_path_mapping_root_is_the_apps_root() -> None:
    event = rest_event("GET", "/", base_path="v1")
    event["path"] = "/v1"
    event["requestContext"]["path"] = "/v1"
    result = invoke(event)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["docs"] == "/v1/docs"


def test_percent_encoded_paths_keep_the_stage_prefix() -> None:
    event = rest_event("GET", "/a b")
    event["requestContext"]["path"] = "/Prod/a%20b"
    result = invoke(event)
    assert result["statusCode"] == 404
    assert json.loads(result["body"])["instance"] == "/Prod/a b"


@pytest.mark.parametrize(
    ("resource", "path", "parameters"),
    [
        ("/health", "/health", None),
        ("/docs", "/docs", None),
        ("/docs/{proxy+}", "/docs/vendor/swagger-ui.css", {"proxy": "vendor/swagger-ui.css"}),
        ("/openapi.json", "/openapi.json", None),
    ],
)
def test_the_templates_explicit_public_resources_keep_the_stage_prefix(
    resource: str, path: str, parameters: dict[str, str] | None
) -> None:
    # template.yaml declares these public routes as their own resources (no authorizer).
    event = rest_event("GET", path, stage="Prod")
    event["resource"] = resource
    event["requestContext"]["resourcePath"] = resource
    event["pathParameters"] = parameters
    result = invoke(event)
    assert result["statusCode"] == 200
    if path == "/docs":
        assert "/Prod/openapi.json" in body_of(result)
    if path == "/openapi.json":
        assert json.loads(body_of(result))["servers"] == [{"url": "/Prod"}]


# --- Under a custom domain's base path mapping (DomainName without the CDN, templates/domain.yaml) ----------

DOMAIN = "api.example.com"


@pytest.fixture(scope="module")
def domain_handler(app_environment: dict[str, str]) -> Mangum:
    """The deployed handler (main.create_handler) against the stand-in."""
    return create_handler(create_app(Settings()))


def on_domain(method: str, path: str, token: str, **options: Any) -> dict[str, Any]:
    """A request to https://api.example.com/v1<path> (the base-path mapping puts /v1 in both paths)."""
    headers = {"Host": DOMAIN, "Authorization": f"Bearer {token}", **options.pop("headers", {})}
    return rest_event(method, path, base_path="v1", headers=headers, **options)


def test_created_resources_are_located_under_the_base_path(domain_handler: Mangum, make_user: Any) -> None:
    token = make_user()["access"]
    event = on_domain(
        "POST", "/projects", token, headers={"content-type": "application/json"}, body={"name": "p"}
    )
    result = domain_handler(event, LambdaContext())
    assert result["statusCode"] == 201, body_of(result)
    project_id = json.loads(body_of(result))["id"]
    assert header(result, "location") == f"/v1/projects/{project_id}"
    fetched = domain_handler(on_domain("GET", f"/projects/{project_id}", token), LambdaContext())
    assert fetched["statusCode"] == 200


def test_cursors_page_on_under_the_base_path(domain_handler: Mangum, make_user: Any) -> None:
    token = make_user()["access"]
    for name in ("first", "second", "third"):
        event = on_domain(
            "POST", "/projects", token, headers={"content-type": "application/json"}, body={"name": name}
        )
        assert domain_handler(event, LambdaContext())["statusCode"] == 201
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        query = {"limit": ["2"], **({"cursor": [cursor]} if cursor else {})}
        page = json.loads(
            body_of(domain_handler(on_domain("GET", "/projects", token, query=query), LambdaContext()))
        )
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == ["first", "second", "third"]


def test_a_redirect_stays_on_the_domain_and_its_base_path(domain_handler: Mangum, make_user: Any) -> None:
    result = domain_handler(on_domain("GET", "/health/", make_user()["access"]), LambdaContext())
    assert result["statusCode"] == 307
    assert header(result, "location") == f"https://{DOMAIN}/v1/health"


def test_problems_name_the_path_under_the_base_path(domain_handler: Mangum, make_user: Any) -> None:
    result = domain_handler(on_domain("GET", "/nowhere/at-all", make_user()["access"]), LambdaContext())
    assert result["statusCode"] == 404
    assert json.loads(body_of(result))["instance"] == "/v1/nowhere/at-all"
