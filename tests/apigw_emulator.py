"""A local stand-in for API Gateway REST in front of one Lambda function: an HTTP server on 127.0.0.1 that
turns each request into the Lambda proxy event (payload v1) of a `/{proxy+}` resource with a stage, calls
the handler in-process and writes its proxy response back; it records every request it answered.

Two ways a client reaches a REST API are emulated:
- the execute-api URL, where the stage leads the path (`/Prod/docs`: event `path` is `/docs`,
  `requestContext.path` is `/Prod/docs`);
- a custom domain with a base-path mapping (`/v1/docs`: `path` and `requestContext.path` are both
  `/v1/docs`, the stage appears only in `requestContext.stage`).
Both route `/docs` to resource `/{proxy+}` with `pathParameters.proxy` = `docs`, and the bare prefix to
resource `/` (no path parameters).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]

ACCOUNT_ID = "123456789012"
API_ID = "emulated01"
REGION = "us-east-1"

# Connection-level headers end at the gateway; the integration never sees them.
_HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
# The emulator frames the response itself, as API Gateway does.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str = "stratus-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_seconds: float = 29.0
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"2024/01/01/[{self.function_version}]emulated"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass(frozen=True)
class RoutedPath:
    """Where API Gateway sends a client path: the event's `path`, the matched resource and its proxy value."""

    event_path: str
    resource: str
    proxy: str | None


class ExecuteApiStage:
    """`https://{api}.execute-api.{region}.amazonaws.com/{stage}/...`: the stage leads the path and is
    removed from the event's `path`."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.prefix = f"/{stage}"

    def route(self, client_path: str) -> RoutedPath | None:
        rest = _after_prefix(client_path, self.prefix)
        if rest is None:
            return None
        return _proxy_route(event_path=rest or "/", rest=rest)


class CustomDomainBasePath:
    """`https://api.example.com/{base_path}/...` mapped to a stage: the base path stays in the event's
    `path` and in `requestContext.path`; only the part after it selects the resource."""

    def __init__(self, base_path: str, stage: str) -> None:
        self.stage = stage
        self.prefix = "/" + base_path.strip("/")

    def route(self, client_path: str) -> RoutedPath | None:
        rest = _after_prefix(client_path, self.prefix)
        if rest is None:
            return None
        return _proxy_route(event_path=client_path, rest=rest)


PathMapping = ExecuteApiStage | CustomDomainBasePath


def _after_prefix(client_path: str, prefix: str) -> str | None:
    if client_path == prefix:
        return ""
    if client_path.startswith(prefix + "/"):
        return client_path[len(prefix) :]
    return None


def _proxy_route(*, event_path: str, rest: str) -> RoutedPath:
    if rest in ("", "/"):
        return RoutedPath(event_path=event_path, resource="/", proxy=None)
    # API Gateway passes `path` as the client encoded it but decodes path parameters.
    return RoutedPath(event_path=event_path, resource="/{proxy+}", proxy=unquote(rest.lstrip("/")))


def _single_and_multi(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """REST payload v1: `x` keeps the last value of each name, `multiValueX` all of them; both null if none."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return (single or None), (multi or None)


def _is_binary(content_type: str, binary_media_types: Iterable[str]) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return any(fnmatch.fnmatch(media_type, pattern.lower()) for pattern in binary_media_types)


_FORWARDING_HEADERS = ("x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id")


def _with_forwarding_headers(
    header_pairs: list[tuple[str, str]], *, source_ip: str, scheme: str, port: int
) -> list[tuple[str, str]]:
    """The client's headers plus what API Gateway sets: the client chain, port, scheme and a trace id."""
    forwarded_for = [value for name, value in header_pairs if name.lower() == "x-forwarded-for"]
    kept = [(name, value) for name, value in header_pairs if name.lower() not in _FORWARDING_HEADERS]
    trace_id = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return [
        *kept,
        ("X-Forwarded-For", ", ".join([*forwarded_for, source_ip])),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", scheme),
        ("X-Amzn-Trace-Id", trace_id),
    ]


def rest_proxy_event(
    *,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    mapping: PathMapping,
    source_ip: str = "127.0.0.1",
    scheme: str = "https",
    port: int = 443,
    binary_media_types: Iterable[str] = (),
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any] | None:
    """The event API Gateway REST sends a Lambda proxy integration for one request, or None when the path
    is outside the stage or base path (API Gateway then answers 403 itself)."""
    split = urlsplit(target)
    client_path = split.path or "/"
    routed = mapping.route(client_path)
    if routed is None:
        return None
    header_pairs = _with_forwarding_headers(
        [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP_HEADERS],
        source_ip=source_ip,
        scheme=scheme,
        port=port,
    )
    single_headers, multi_headers = _single_and_multi(header_pairs)
    query, multi_query = _single_and_multi(parse_qsl(split.query, keep_blank_values=True))
    content_type = next((value for name, value in header_pairs if name.lower() == "content-type"), "")
    request_id = request_id or str(uuid.uuid4())
    now = time.time() if now is None else now

    event_body: str | None = None
    is_base64 = False
    if body:
        if _is_binary(content_type, binary_media_types):
            event_body, is_base64 = base64.b64encode(body).decode("ascii"), True
        else:
            try:
                event_body = body.decode("utf-8")
            except UnicodeDecodeError:
                event_body, is_base64 = base64.b64encode(body).decode("ascii"), True

    host = (single_headers or {}).get("Host") or (single_headers or {}).get("host") or "localhost"
    user_agent = next((value for name, value in header_pairs if name.lower() == "user-agent"), None)
    return {
        "resource": routed.resource,
        "path": routed.event_path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": None if routed.proxy is None else {"proxy": routed.proxy},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": routed.resource,
            "httpMethod": method,
            "extendedRequestId": base64.urlsafe_b64encode(uuid.uuid4().bytes)[:16].decode("ascii"),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": client_path,
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": mapping.stage,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
            },
            "domainName": host.split(":", 1)[0],
            "apiId": API_ID,
        },
        "body": event_body,
        "isBase64Encoded": is_base64,
    }


@dataclass(frozen=True)
class GatewayResponse:
    """What the client receives: status, headers in order (repeats kept) and the body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _gateway_error(status: int, message: str, error_type: str, request_id: str) -> GatewayResponse:
    body = json.dumps({"message": message}).encode()
    return GatewayResponse(
        status,
        [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        body,
    )


def gateway_response(proxy_response: Any, request_id: str) -> GatewayResponse:
    """Turn a Lambda proxy response into the HTTP response API Gateway sends (502 when it is malformed)."""
    if not isinstance(proxy_response, Mapping) or not isinstance(proxy_response.get("statusCode"), int):
        return _gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)
    # When a name is in both, API Gateway keeps the multiValueHeaders values.
    merged: dict[str, list[str]] = {}
    for name, value in (proxy_response.get("headers") or {}).items():
        merged[name.lower()] = [str(value)]
    for name, values in (proxy_response.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = [str(value) for value in values]
    headers = [
        (name, value) for name, values in merged.items() if name not in _FRAMING_HEADERS for value in values
    ]
    headers.append(("x-amzn-RequestId", request_id))
    body_text = proxy_response.get("body") or ""
    if proxy_response.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body_text, validate=True)
        except (binascii.Error, ValueError):
            return _gateway_error(502, "Internal server error", "InternalServerErrorException", request_id)
    else:
        body = str(body_text).encode("utf-8")
    return GatewayResponse(int(proxy_response["statusCode"]), headers, body)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered: what the client asked and what it got."""

    method: str
    target: str
    path: str
    status: int
    content_type: str
    event: dict[str, Any] | None
    # The handler's exception, when the function crashed (the client then got a 502).
    error: str | None = None


class ApiGatewayEmulator:
    """Serves a Lambda handler the way API Gateway REST would, on 127.0.0.1 and a free port.

    `base_path=None` emulates the execute-api URL (`/{stage}/...`); a base path emulates a custom domain
    mapping (`/{base_path}/...` to the stage). Invocations run one at a time, like one Lambda container.

        with ApiGatewayEmulator(main.handler, stage="Prod") as gateway:
            urllib.request.urlopen(gateway.url + "/health")  # GET /Prod/health -> event path /health
    """

    def __init__(
        self,
        handler: LambdaHandler,
        *,
        stage: str = "Prod",
        base_path: str | None = None,
        binary_media_types: Iterable[str] = (),
        function_name: str = "stratus-api",
        memory_limit_in_mb: int = 1024,
    ) -> None:
        self.handler = handler
        self.mapping: PathMapping = (
            ExecuteApiStage(stage) if base_path is None else CustomDomainBasePath(base_path, stage)
        )
        self.binary_media_types = tuple(binary_media_types)
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self._container: ThreadPoolExecutor | None = None
        self._records_lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ApiGatewayEmulator:
        if self._server is not None:
            return self
        # One worker: a Lambda container serves one invocation at a time, and on a thread that has an
        # event loop (Mangum asks for the current one), like the runtime's main thread.
        self._container = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lambda-container", initializer=_give_thread_an_event_loop
        )
        server = ThreadingHTTPServer(("127.0.0.1", 0), _request_handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="apigw-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._container is not None:
            self._container.shutdown(wait=True)
        self._server = None
        self._thread = None
        self._container = None

    def __enter__(self) -> ApiGatewayEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def origin(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API's base URL as a client sees it: origin plus stage or base path (no trailing slash)."""
        return self.origin + self.mapping.prefix

    # -- records -----------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._records_lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def invoke(self, event: dict[str, Any]) -> tuple[Any, str | None]:
        """Run the function on the container thread: its proxy response, or None and the traceback."""
        if self._container is None:
            raise RuntimeError("the emulator is not running")
        context = FakeLambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.memory_limit_in_mb,
            aws_request_id=str(uuid.uuid4()),
        )
        try:
            return self._container.submit(self.handler, event, context).result(), None
        except Exception:
            # A crashing function is a 502 at the gateway; its traceback goes to the "function log".
            error = traceback.format_exc()
            print(error, file=sys.stderr)
            return None, error

    # -- one request -------------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> GatewayResponse:
        request_id = str(uuid.uuid4())
        event = rest_proxy_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            mapping=self.mapping,
            source_ip=source_ip,
            # The emulator speaks plain HTTP on a local port; the app builds absolute URLs (redirects) from these.
            scheme="http",
            port=self.port,
            binary_media_types=self.binary_media_types,
            request_id=request_id,
        )
        error: str | None = None
        if event is None:
            response = _gateway_error(403, "Forbidden", "ForbiddenException", request_id)
        else:
            proxy_response, error = self.invoke(event)
            response = gateway_response(proxy_response, request_id)
        content_type = next((value for name, value in response.headers if name.lower() == "content-type"), "")
        record = RecordedRequest(
            method=method,
            target=target,
            path=urlsplit(target).path,
            status=response.status,
            content_type=content_type,
            event=event,
            error=error,
        )
        with self._records_lock:
            self._records.append(record)
        return response


def _give_thread_an_event_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


def _request_handler_for(emulator: ApiGatewayEmulator) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        # Keep-alive as a browser expects; every response carries Content-Length.
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            response = emulator.handle(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0]
            )
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Date", formatdate(usegmt=True))
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        # http.server dispatches on these names.
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve  # noqa: N815

        def send_response(self, code: int, message: str | None = None) -> None:
            # Without http.server's Server header (and its Date: `_serve` sends one, as API Gateway does).
            self.send_response_only(code, message)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Handler
