"""API Gateway events for tests: the JSON files here come from `sam local generate-event apigateway
aws-proxy`, `... http-api-proxy` and `... authorizer`; the factories vary method, path, stage, headers,
query and body."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

EVENTS = Path(__file__).parent


@cache
def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def _encode_body(body: str | bytes | dict[str, Any] | None, as_base64: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    if isinstance(body, dict):
        body = json.dumps(body)
    raw = body.encode() if isinstance(body, str) else body
    if as_base64 or isinstance(body, bytes):
        return base64.b64encode(raw).decode(), True
    return raw.decode(), False


def rest_event(
    method: str = "GET",
    path: str = "/health",
    *,
    stage: str = "Prod",
    base_path: str | None = None,
    sam_local: bool = False,
    headers: dict[str, list[str] | str] | None = None,
    query: dict[str, list[str]] | None = None,
    body: str | bytes | dict[str, Any] | None = None,
    base64_body: bool = False,
    source_ip: str = "203.0.113.10",
    partner: str | None = None,
) -> dict[str, Any]:
    """A REST API (payload v1) proxy event for `ANY /{proxy+}` (or `ANY /` for path "/").

    - execute-api: the client sees `/<stage><path>`; `path` lacks the stage.
    - `base_path="v1"`: a custom domain's base-path mapping; `path` and `requestContext.path` both carry it.
    - `sam_local=True`: `sam local start-api` puts the resource template in `requestContext.path`.
    - `partner="<client id>"`: through the partner entry point (`ANY /partner/{proxy+}`), admitted by the
      partner authorizer as that client; `path` is the app's path, the event's paths carry `/partner`.
    """
    event = copy.deepcopy(_fixture("apigateway-aws-proxy.json"))
    is_root = path == "/"
    mount = "/partner" if partner else ""
    event["httpMethod"] = method
    event["resource"] = (mount or "/") if is_root else f"{mount}/{{proxy+}}"
    event["pathParameters"] = None if is_root else {"proxy": path.lstrip("/")}
    entry_path = f"{mount}{path}" if mount and not is_root else (mount or path)
    if base_path:
        event["path"] = f"/{base_path}{entry_path}"
        client_path = event["path"]
    else:
        event["path"] = entry_path
        client_path = f"/{stage}{entry_path}"
    context = event["requestContext"]
    context.update(
        {
            "httpMethod": method,
            "stage": stage,
            "resourcePath": event["resource"],
            "path": event["resource"] if sam_local else client_path,
            "requestId": str(uuid.uuid4()),
        }
    )
    context["identity"]["sourceIp"] = source_ip
    if partner:
        # What API Gateway passes on from a Lambda authorizer (none runs for the other routes).
        context["authorizer"] = {"principalId": partner, "integrationLatency": 0}
    multi_headers: dict[str, list[str]] = {"Host": ["abc123.execute-api.us-east-1.amazonaws.com"]}
    for name, value in (headers or {}).items():
        multi_headers[name] = value if isinstance(value, list) else [value]
    event["multiValueHeaders"] = multi_headers
    event["headers"] = {name: values[-1] for name, values in multi_headers.items()}
    event["multiValueQueryStringParameters"] = query or None
    event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} if query else None
    event["body"], event["isBase64Encoded"] = _encode_body(body, base64_body)
    event["stageVariables"] = None
    return event


def http_api_event(
    method: str = "GET",
    path: str = "/health",
    *,
    stage: str = "$default",
    headers: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    cookies: list[str] | None = None,
    body: str | bytes | dict[str, Any] | None = None,
    base64_body: bool = False,
    source_ip: str = "203.0.113.10",
) -> dict[str, Any]:
    """An HTTP API (payload v2) event; a named stage appears at the front of `rawPath`."""
    event = copy.deepcopy(_fixture("apigateway-http-api-proxy.json"))
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    event["rawPath"] = raw_path
    event["rawQueryString"] = urlencode(query or {}, doseq=True)
    event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()} if query else None
    event["headers"] = {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})}
    event["cookies"] = cookies or []
    event["pathParameters"] = None
    event["stageVariables"] = None
    context = event["requestContext"]
    context["stage"] = stage
    context["requestId"] = str(uuid.uuid4())
    context["http"].update({"method": method, "path": raw_path, "sourceIp": source_ip})
    event["body"], event["isBase64Encoded"] = _encode_body(body, base64_body)
    return event


def authorizer_event(
    token: str, *, method: str = "GET", path: str = "/partner/projects", stage: str = "Prod"
) -> dict[str, Any]:
    """A TOKEN authorizer event for a request to `path` (the API's path, without the stage)."""
    event = copy.deepcopy(_fixture("apigateway-authorizer.json"))
    event["authorizationToken"] = token
    api = event["methodArn"].split("/", 1)[0]
    event["methodArn"] = f"{api}/{stage}/{method}{path}"
    return event


class LambdaContext:
    """The attributes of a Lambda context object that the app and Powertools read."""

    function_name = "stratus-ApiFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratus-ApiFunction"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 25_000
