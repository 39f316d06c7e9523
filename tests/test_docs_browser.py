"""The API docs pages render in a real headless Chromium: Swagger UI (/docs) lists every operation and ReDoc
(/redoc) every operation id, each asset the page references comes from the API itself with a 200, no request
leaves for another origin and no Content-Security-Policy rule is broken. Served three ways: directly
(uvicorn, no root path), under an execute-api stage (`/Prod/docs`) and behind a custom-domain base-path
mapping (`/v1/docs`), the last two through tests/apigw_emulator.py and `main.handler`."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import main
from docs import DOCS_CONTENT_SECURITY_POLICY
from tests.apigw_emulator import ApiGatewayEmulator, CustomDomainBasePath, ExecuteApiStage, rest_proxy_event
from tests.prerequisites import missing_prerequisite

EVENTS = Path(__file__).parent / "events"


# -- Chromium ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrowserVisit:
    """What one page load left behind: the rendered DOM, the console and every request the page made."""

    url: str
    dom: str
    console: list[str]
    # URLs the page itself asked the network for (from Chromium's NetLog; the browser's own traffic is
    # excluded). Requests blocked by CSP never reach the network and appear in `console` instead.
    page_requests: list[str]

    @property
    def origin(self) -> str:
        return _origin(self.url)

    def csp_violations(self) -> list[str]:
        return [message for message in self.console if "Content Security Policy" in message]

    def foreign_requests(self) -> list[str]:
        return [url for url in self.page_requests if _origin(url) != self.origin]


def _origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


_CONSOLE_LINE = re.compile(r':CONSOLE[^\]]*\] "(?P<message>.*?)", source: ', re.DOTALL)


class HeadlessChromium:
    """Debian's chromium in headless mode: loads a URL, lets its scripts and fetches settle, dumps the DOM."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self._visits = 0

    def visit(self, url: str) -> BrowserVisit:
        self._visits += 1
        run_dir = self.workdir / f"visit-{self._visits}"
        run_dir.mkdir(parents=True)
        net_log = run_dir / "netlog.json"
        command = [
            self.executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            f"--user-data-dir={run_dir / 'profile'}",
            # Every host but the local servers fails to resolve: a CDN dependency cannot load by accident.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            # Console messages (CSP violations among them) go to stderr.
            "--enable-logging=stderr",
            "--v=0",
            f"--log-net-log={net_log}",
            # Virtual time waits for pending fetches, so this is an upper bound, not a sleep.
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        if finished.returncode != 0:
            raise AssertionError(f"chromium exited with {finished.returncode}:\n{finished.stderr[-3000:]}")
        console = [match["message"] for match in _CONSOLE_LINE.finditer(finished.stderr)]
        return BrowserVisit(url, finished.stdout, console, _page_requests(net_log, _origin(url)))


def _page_requests(net_log: Path, page_origin: str) -> list[str]:
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] != start_job or "url" not in params:
            continue
        if params.get("request_type") == "main frame" or params.get("initiator") == page_origin:
            requests.append(params["url"])
    if not requests:
        raise AssertionError("the NetLog shows no request of the page: its format may have changed")
    return requests


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> HeadlessChromium:
    executable = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    if executable is None:
        missing_prerequisite(
            "chromium is not installed: the docs pages cannot be rendered",
            "make browser, or apt-get install -y chromium",
        )
    return HeadlessChromium(executable, tmp_path_factory.mktemp("chromium"))


# -- Servers -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedRequest:
    method: str
    path: str
    status: int


class RequestRecorder:
    """ASGI middleware: records method, path and status of every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[ServedRequest] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # Read before the app runs: routing (Mount) rewrites the scope. ASGI's `path` includes the root path.
        method, path = scope["method"], scope["path"]

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.requests.append(ServedRequest(method, path, message["status"]))
            await send(message)

        await self.app(scope, receive, record_status)


class MissingAsset:
    """ASGI middleware: answers 404 for paths ending in `suffix`, as a broken deployment would."""

    def __init__(self, app: ASGIApp, suffix: str) -> None:
        self.app = app
        self.suffix = suffix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith(self.suffix):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


class ProbePages:
    """ASGI middleware adding two pages that must trip the checks: an inline script under the docs CSP, and
    an image from a CDN on a page without CSP."""

    PAGES: ClassVar[dict[str, tuple[bytes, str | None]]] = {
        "/probe/inline-script": (
            b"<!DOCTYPE html><html><body><p id='probe'>probe</p>"
            b"<script>document.getElementById('probe').textContent = 'ran';</script></body></html>",
            DOCS_CONTENT_SECURITY_POLICY,
        ),
        "/probe/cdn-image": (
            b"<!DOCTYPE html><html><body><img src='https://cdn.example.com/logo.svg'></body></html>",
            None,
        ),
    }

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = self.PAGES.get(scope["path"]) if scope["type"] == "http" else None
        if page is None:
            await self.app(scope, receive, send)
            return
        body, policy = page
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        if policy:
            headers.append((b"content-security-policy", policy.encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class UvicornThread:
    """uvicorn on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        # proxy_headers off: nothing trusted stands in front of this server.
        config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self._socket.getsockname()
        return f"http://{host}:{port}"

    def __enter__(self) -> UvicornThread:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class Deployment:
    """The API as a browser reaches it: its base URL and what the server in front of it answered."""

    name: str
    url: str
    served: Callable[[], list[ServedRequest]]
    forget: Callable[[], None]


def _direct(server: UvicornThread, recorder: RequestRecorder, name: str) -> Deployment:
    return Deployment(name, server.origin, lambda: list(recorder.requests), recorder.requests.clear)


def _emulated(gateway: ApiGatewayEmulator, name: str) -> Deployment:
    return Deployment(
        name=name,
        url=gateway.url,
        served=lambda: [ServedRequest(r.method, r.path, r.status) for r in gateway.requests],
        forget=gateway.clear_requests,
    )


@pytest.fixture(scope="module", params=["uvicorn", "execute-api-stage", "custom-domain-base-path"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    if request.param == "uvicorn":
        recorder = RequestRecorder(main.app)
        with UvicornThread(recorder) as server:
            yield _direct(server, recorder, request.param)
    elif request.param == "execute-api-stage":
        with ApiGatewayEmulator(main.handler, stage="Prod") as gateway:
            yield _emulated(gateway, request.param)
    else:
        with ApiGatewayEmulator(main.handler, stage="Prod", base_path="v1") as gateway:
            yield _emulated(gateway, request.param)


@pytest.fixture
def api(deployment: Deployment) -> Deployment:
    deployment.forget()
    return deployment


# -- What a page shows and fetched -----------------------------------------------------------------------
class _PageElements(HTMLParser):
    """Asset references, Swagger UI operation paths and element ids of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.asset_references: list[str] = []
        self.swagger_operation_paths: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "script" and attributes.get("src"):
            self.asset_references.append(attributes["src"])
        elif tag == "link" and attributes.get("href"):
            self.asset_references.append(attributes["href"])
        elif tag == "img" and attributes.get("src"):
            self.asset_references.append(attributes["src"])
        if attributes.get("data-openapi-url"):
            self.asset_references.append(attributes["data-openapi-url"])
        if "opblock-summary-path" in attributes.get("class", "").split() and "data-path" in attributes:
            self.swagger_operation_paths.add(attributes["data-path"])
        if attributes.get("id"):
            self.ids.add(attributes["id"])


def page_elements(visit: BrowserVisit) -> _PageElements:
    parser = _PageElements()
    parser.feed(visit.dom)
    parser.close()
    return parser


def asset_problems(visit: BrowserVisit, api: Deployment) -> list[str]:
    """Every way the page's loading went wrong; empty when each asset came from the API with a 200."""
    problems = []
    served = api.served()
    for reference in page_elements(visit).asset_references:
        if reference.startswith("data:"):
            continue
        url = urljoin(visit.url, reference)
        if _origin(url) != visit.origin:
            problems.append(f"{reference}: referenced from another origin")
            continue
        path = urlsplit(url).path
        statuses = [request.status for request in served if request.path == path]
        if not statuses:
            problems.append(f"{path}: referenced but never requested")
        elif any(status != 200 for status in statuses):
            problems.append(f"{path}: answered {statuses}")
    problems += [
        f"{request.method} {request.path}: answered {request.status}"
        for request in served
        if request.status >= 400
    ]
    problems += [f"{url}: requested from a non-local origin" for url in visit.foreign_requests()]
    return problems


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = main.app.openapi()
    return document


def _operations(openapi: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for item in openapi["paths"].values() for operation in item.values()]


# -- The docs pages --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_swagger_ui_lists_every_operation_from_assets_served_by_the_api(
    chromium: HeadlessChromium, api: Deployment, openapi: dict[str, Any]
) -> None:
    visit = chromium.visit(f"{api.url}/docs")

    assert page_elements(visit).swagger_operation_paths == set(openapi["paths"])
    assert asset_problems(visit, api) == []
    assert visit.csp_violations() == []
    # The spec came from this deployment's own prefix (e.g. /Prod/openapi.json), not the host's root.
    assert urlsplit(f"{api.url}/openapi.json").path in {request.path for request in api.served()}


@pytest.mark.slow
def test_redoc_lists_every_operation_from_assets_served_by_the_api(
    chromium: HeadlessChromium, api: Deployment, openapi: dict[str, Any]
) -> None:
    visit = chromium.visit(f"{api.url}/redoc")
    ids = page_elements(visit).ids

    assert {f"operation/{operation['operationId']}" for operation in _operations(openapi)} <= ids
    assert {f"tag/{tag}" for operation in _operations(openapi) for tag in operation.get("tags", [])} <= ids
    assert asset_problems(visit, api) == []
    assert visit.csp_violations() == []


# -- The checks can fail -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_missing_swagger_bundle_leaves_no_operations_and_is_reported(chromium: HeadlessChromium) -> None:
    recorder = RequestRecorder(MissingAsset(main.app, "/swagger-ui-bundle.js"))
    with UvicornThread(recorder) as server:
        api = _direct(server, recorder, "missing-bundle")
        visit = chromium.visit(f"{api.url}/docs")

    assert page_elements(visit).swagger_operation_paths == set()
    assert "/docs/vendor/swagger-ui-bundle.js: answered [404]" in asset_problems(visit, api)


@pytest.mark.slow
def test_a_missing_swagger_bundle_behind_the_stage_is_reported(chromium: HeadlessChromium) -> None:
    def handler_without_bundle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["path"].endswith("/swagger-ui-bundle.js"):
            return {"statusCode": 404, "headers": {}, "body": "", "isBase64Encoded": False}
        return main.handler(event, context)

    with ApiGatewayEmulator(handler_without_bundle, stage="Prod") as gateway:
        api = _emulated(gateway, "missing-bundle-behind-stage")
        visit = chromium.visit(f"{api.url}/docs")

    assert page_elements(visit).swagger_operation_paths == set()
    assert "/Prod/docs/vendor/swagger-ui-bundle.js: answered [404]" in asset_problems(visit, api)


@pytest.mark.slow
def test_an_inline_script_under_the_docs_policy_is_reported_as_a_csp_violation(
    chromium: HeadlessChromium,
) -> None:
    with UvicornThread(ProbePages(main.app)) as server:
        visit = chromium.visit(f"{server.origin}/probe/inline-script")

    assert visit.csp_violations(), visit.console
    assert ">probe<" in visit.dom  # the script was blocked, not run


@pytest.mark.slow
def test_a_cdn_asset_is_reported_as_a_non_local_request(chromium: HeadlessChromium) -> None:
    with UvicornThread(ProbePages(main.app)) as server:
        visit = chromium.visit(f"{server.origin}/probe/cdn-image")

    assert visit.foreign_requests() == ["https://cdn.example.com/logo.svg"]


# -- The emulator sends what API Gateway sends -------------------------------------------------------------
def _event(target: str, mapping: ExecuteApiStage | CustomDomainBasePath, **kwargs: Any) -> dict[str, Any]:
    event = rest_proxy_event(
        method="GET",
        target=target,
        headers=[("Host", "127.0.0.1:9"), ("Accept", "*/*")],
        body=b"",
        mapping=mapping,
        **kwargs,
    )
    assert event is not None
    return event


def test_the_execute_api_event_has_the_stage_only_in_the_request_context() -> None:
    event = _event("/Prod/docs/vendor/a%20b.js?x=1&x=2", ExecuteApiStage("Prod"))

    assert event["path"] == "/docs/vendor/a%20b.js"
    assert event["resource"] == "/{proxy+}"
    assert event["pathParameters"] == {"proxy": "docs/vendor/a b.js"}
    assert event["requestContext"]["path"] == "/Prod/docs/vendor/a%20b.js"
    assert event["requestContext"]["stage"] == "Prod"
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_the_custom_domain_event_keeps_the_base_path_in_path() -> None:
    event = _event("/v1/docs", CustomDomainBasePath("v1", stage="Prod"))

    assert event["path"] == "/v1/docs"
    assert event["requestContext"]["path"] == "/v1/docs"
    assert event["pathParameters"] == {"proxy": "docs"}
    assert event["requestContext"]["stage"] == "Prod"
    assert event["queryStringParameters"] is None


def test_the_bare_stage_reaches_the_root_resource() -> None:
    event = _event("/Prod/", ExecuteApiStage("Prod"))

    assert (event["resource"], event["path"], event["pathParameters"]) == ("/", "/", None)


def test_paths_outside_the_stage_get_no_event() -> None:
    assert (
        rest_proxy_event(method="GET", target="/docs", headers=[], body=b"", mapping=ExecuteApiStage("Prod"))
        is None
    )
    mapping = CustomDomainBasePath("v1", stage="Prod")
    assert rest_proxy_event(method="GET", target="/v10/docs", headers=[], body=b"", mapping=mapping) is None


def test_binary_bodies_are_base64_encoded() -> None:
    event = rest_proxy_event(
        method="POST",
        target="/Prod/upload",
        headers=[("Content-Type", "image/png")],
        body=b"\x89PNG",
        mapping=ExecuteApiStage("Prod"),
        binary_media_types=["image/*"],
    )

    assert event is not None
    assert (event["body"], event["isBase64Encoded"]) == (base64.b64encode(b"\x89PNG").decode(), True)


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Dotted key paths of a JSON object, without the request-specific names inside the maps."""
    if not isinstance(value, dict) or prefix.rstrip(".") in _REQUEST_MAPS:
        return set()
    keys = set()
    for key, child in value.items():
        keys.add(prefix + key)
        keys |= _keys(child, f"{prefix}{key}.")
    return keys


_REQUEST_MAPS = {
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "stageVariables",
}


def test_the_emulator_event_has_every_field_of_the_sam_generated_rest_event() -> None:
    fixture = json.loads((EVENTS / "apigateway-aws-proxy.json").read_text())

    assert _keys(fixture) - _keys(_event("/Prod/docs", ExecuteApiStage("Prod"))) == set()


def test_the_emulator_answers_with_the_proxy_response() -> None:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {
            "statusCode": 201,
            "headers": {"content-type": "image/png"},
            "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
        }

    with ApiGatewayEmulator(handler, stage="Prod") as gateway:
        connection = HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        connection.request("GET", "/Prod/image")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        connection = HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        connection.request("GET", "/elsewhere")
        outside = connection.getresponse()
        outside.read()
        connection.close()

    assert (response.status, body) == (201, b"\x89PNG")
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert outside.status == 403
    assert [request.status for request in gateway.requests] == [201, 403]
