"""The CloudFront Function (viewer request, cloudfront-js-2.0) exactly as templates/cdn.yaml deploys it, run in
node: methods the API does not serve are refused with a problem, paths and queries are normalised, and the
headers only CloudFront may set are stripped before the request goes on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from main import create_app
from settings import Settings
from tests.cloudformation import load_template
from tests.events.cloudfront import DISTRIBUTION_HOST, viewer_function_event
from tests.prerequisites import missing_prerequisite

ROOT = Path(__file__).resolve().parent.parent
CDN_TEMPLATE = ROOT / "templates" / "cdn.yaml"
# CloudFront Functions' quota on a function's code.
FUNCTION_SIZE_LIMIT = 10 * 1024

# Loads the function in a fresh V8 context (no require, no process: as little as the CloudFront runtime
# offers), runs handler(event) and prints what it returned (awaited: the 2.0 runtime allows async handlers).
HARNESS = """
const fs = require('fs');
const vm = require('vm');
const code = fs.readFileSync(process.argv[2], 'utf8');
const event = JSON.parse(fs.readFileSync(0, 'utf8'));
const handler = vm.runInNewContext(code + '\\n;handler;', {}, { filename: 'viewer-request.js' });
Promise.resolve(handler(event)).then((result) => process.stdout.write(JSON.stringify(result)));
"""


@pytest.fixture(scope="module")
def function_code() -> str:
    resource = load_template(CDN_TEMPLATE)["Resources"]["ViewerRequestFunction"]["Properties"]
    assert resource["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    code: str = resource["FunctionCode"]
    return code


@pytest.fixture(scope="module")
def run(function_code: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    node = shutil.which("node")
    if node is None:
        missing_prerequisite(
            "node is not installed: the CloudFront Function cannot run", "apt-get install nodejs"
        )
    directory = tmp_path_factory.mktemp("cloudfront-function")
    (directory / "function.js").write_text(function_code)
    (directory / "harness.js").write_text(HARNESS)

    def _run(event: dict[str, Any]) -> dict[str, Any]:
        result = subprocess.run(
            [node, str(directory / "harness.js"), str(directory / "function.js")],
            input=json.dumps(event),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        returned: dict[str, Any] = json.loads(result.stdout)
        return returned

    return _run


def problem_of(response: dict[str, Any]) -> dict[str, Any]:
    assert response["headers"]["content-type"] == {"value": "application/problem+json"}
    assert response["headers"]["cache-control"] == {"value": "no-store"}
    assert response["body"]["encoding"] == "text"
    problem: dict[str, Any] = json.loads(response["body"]["data"])
    assert set(problem) == {"type", "title", "status", "detail", "instance", "request_id"}
    assert problem["status"] == response["statusCode"]
    return problem


def test_the_function_fits_cloudfront_functions_size_limit(function_code: str) -> None:
    assert len(function_code.encode()) < FUNCTION_SIZE_LIMIT


def test_the_function_uses_no_module_system(function_code: str) -> None:
    # The runtime has no require() or import; the code must stand alone.
    assert not re.search(r"\brequire\s*\(|^\s*import\s", function_code, re.MULTILINE)


# --- methods -----------------------------------------------------------------------------------------------


def _allowed_methods(function_code: str) -> set[str]:
    (listed,) = re.findall(r"var ALLOWED_METHODS = \[([^\]]*)\]", function_code)
    return set(re.findall(r"'([A-Z]+)'", listed))


def test_the_allowed_methods_are_the_ones_the_app_serves(function_code: str) -> None:
    app = create_app(Settings())
    # The API's operations, and the routes outside the OpenAPI document (the docs pages, the document).
    served = {method.upper() for item in app.openapi()["paths"].values() for method in item}
    served |= {method for route in app.routes for method in getattr(route, "methods", None) or ()}
    # Preflights are answered on every path by the app's CORS middleware.
    assert _allowed_methods(function_code) == served | {"OPTIONS"}


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_a_method_the_api_does_not_serve_is_refused_at_the_edge(
    run: Any, function_code: str, method: str
) -> None:
    event = viewer_function_event(method, "/projects/p-1")
    response = run(event)
    assert response["statusCode"] == 405
    assert set(response["headers"]["allow"]["value"].split(", ")) == _allowed_methods(function_code)
    problem = problem_of(response)
    assert problem["type"] == "urn:stratus:problem:method-not-allowed"
    assert problem["instance"] == "/projects/p-1"
    assert problem["request_id"] == event["context"]["requestId"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_the_methods_the_api_serves_go_on(run: Any, method: str) -> None:
    assert run(viewer_function_event(method, "/projects"))["method"] == method


# --- paths and queries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "normalised"),
    [
        ("/", "/"),
        ("//", "/"),
        ("/projects", "/projects"),
        ("//projects///p-1", "/projects/p-1"),
        ("/projects/./p-1", "/projects/p-1"),
        ("/projects/p-1/..", "/projects/"),
        ("/projects/x/../p-1/tasks", "/projects/p-1/tasks"),
        ("/../../health", "/health"),
        ("/health/", "/health/"),
        ("/docs/vendor/../assets/swagger-init.js", "/docs/assets/swagger-init.js"),
        ("/projects/a%2eb", "/projects/a%2eb"),
        ("/tasks/t%20one", "/tasks/t%20one"),
    ],
)
def test_paths_are_normalised(run: Any, uri: str, normalised: str) -> None:
    assert run(viewer_function_event("GET", uri))["uri"] == normalised


@pytest.mark.parametrize(
    "uri",
    [
        "/projects/%2e%2e/admin",
        "/projects/%2E/x",
        "/projects/.%2e/x",
        "/projects%2Fp-1",
        "/a%5cb",
        "/health%00",
    ],
)
def test_paths_hiding_separators_or_dot_segments_are_refused(run: Any, uri: str) -> None:
    response = run(viewer_function_event("GET", uri))
    assert response["statusCode"] == 400
    assert problem_of(response)["type"] == "urn:stratus:problem:bad-request"


def test_query_parameters_are_put_in_name_order_and_keep_their_repeats(run: Any) -> None:
    event = viewer_function_event(
        "GET", "/projects/p-1/tasks", query={"tag": ["b", "a"], "status": "open", "": "x", "assignee": "u-1"}
    )
    request = run(event)
    assert list(request["querystring"]) == ["assignee", "status", "tag"]
    assert request["querystring"]["tag"]["multiValue"] == [{"value": "b"}, {"value": "a"}]


# --- headers ------------------------------------------------------------------------------------------------


def test_headers_only_cloudfront_may_set_are_stripped(run: Any) -> None:
    event = viewer_function_event(
        "GET",
        "/projects",
        headers={
            "x-origin-verify": "guessed",
            "cloudfront-viewer-address": "6.6.6.6:443",
            "x-forwarded-for": "6.6.6.6",
            "forwarded": "for=6.6.6.6",
            "x-forwarded-host": "evil.example",
            "authorization": "Bearer abc",
        },
    )
    headers = run(event)["headers"]
    for stripped in ("x-origin-verify", "cloudfront-viewer-address", "x-forwarded-for", "forwarded"):
        assert stripped not in headers
    # The viewer's host, from the Host it called: the app builds the viewer's URLs from it.
    assert headers["x-forwarded-host"] == {"value": DISTRIBUTION_HOST}
    assert headers["authorization"] == {"value": "Bearer abc"}
    assert headers["host"] == {"value": DISTRIBUTION_HOST}


def test_the_viewer_host_follows_an_alternate_domain(run: Any) -> None:
    event = viewer_function_event("GET", "/docs", headers={"host": "api.example.com"})
    assert run(event)["headers"]["x-forwarded-host"] == {"value": "api.example.com"}
