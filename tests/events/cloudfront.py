"""CloudFront events for tests. The JSON files here come from `sam local generate-event cloudfront
simple-remote-call` and `... modify-querystring` (Lambda@Edge's event shape). The factories make:

- origin-request events, which the edge token check (edge/edge_auth.py) receives: the fixture's request
  with the origin-request config, the origin (API Gateway, its custom header) and the headers asked for;
- viewer-request events of CloudFront Functions (templates/cdn.yaml), which carry the same request in that
  runtime's shape: one `{value}` per header or query parameter, `multiValue` for repeats.
"""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent
ORIGIN_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
DISTRIBUTION_HOST = "d111111abcdef8.cloudfront.net"

HeaderValues = dict[str, str | list[str]]


@cache
def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def origin_request_event(
    method: str = "GET",
    uri: str = "/projects",
    *,
    headers: HeaderValues | None = None,
    querystring: str = "",
    client_ip: str = "203.0.113.10",
) -> dict[str, Any]:
    """A Lambda@Edge origin-request event for a request to the API origin; `headers` (any case) join the
    Host CloudFront sends the origin. The origin's custom header is in `origin`, as CloudFront passes it."""
    event = copy.deepcopy(_fixture("cloudfront-simple-remote-call.json"))
    cf = event["Records"][0]["cf"]
    cf["config"].update(
        {
            "distributionDomainName": DISTRIBUTION_HOST,
            "eventType": "origin-request",
            "requestId": f"cf-{uuid.uuid4().hex}",
        }
    )
    request = cf["request"]
    request.update({"method": method, "uri": uri, "querystring": querystring, "clientIp": client_ip})
    request["headers"] = {"host": [{"key": "Host", "value": ORIGIN_HOST}]}
    for name, value in (headers or {}).items():
        values = value if isinstance(value, list) else [value]
        request["headers"][name.lower()] = [{"key": _canonical(name), "value": item} for item in values]
    request["origin"] = {
        "custom": {
            "customHeaders": {
                "x-origin-verify": [{"key": "X-Origin-Verify", "value": "origin-secret-of-the-distribution"}]
            },
            "domainName": ORIGIN_HOST,
            "keepaliveTimeout": 5,
            "path": "/Prod",
            "port": 443,
            "protocol": "https",
            "readTimeout": 30,
            "sslProtocols": ["TLSv1.2"],
        }
    }
    return event


def viewer_function_event(
    method: str = "GET",
    uri: str = "/projects",
    *,
    headers: HeaderValues | None = None,
    query: dict[str, str | list[str]] | None = None,
    viewer_ip: str = "203.0.113.10",
) -> dict[str, Any]:
    """A CloudFront Functions viewer-request event (runtime cloudfront-js-2.0) for the fixture's request, as
    the viewer sent it: Host is the distribution's (or its alternate domain's)."""
    fixture = _fixture("cloudfront-modify-querystring.json")["Records"][0]["cf"]["request"]
    all_headers: HeaderValues = {
        name: [entry["value"] for entry in entries] for name, entries in fixture["headers"].items()
    }
    all_headers["host"] = DISTRIBUTION_HOST
    all_headers.update({name.lower(): value for name, value in (headers or {}).items()})
    return {
        "version": "1.0",
        "context": {
            "distributionDomainName": DISTRIBUTION_HOST,
            "distributionId": fixture_distribution_id(),
            "eventType": "viewer-request",
            "requestId": f"cf-{uuid.uuid4().hex}",
        },
        "viewer": {"ip": viewer_ip},
        "request": {
            "method": method,
            "uri": uri,
            "querystring": _function_fields(query or {}),
            "headers": _function_fields(all_headers),
            "cookies": {},
        },
    }


def fixture_distribution_id() -> str:
    distribution_id: str = _fixture("cloudfront-modify-querystring.json")["Records"][0]["cf"]["config"][
        "distributionId"
    ]
    return distribution_id


def _function_fields(values: dict[str, str | list[str]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        field: dict[str, Any] = {"value": items[0]}
        if len(items) > 1:
            field["multiValue"] = [{"value": item} for item in items]
        fields[name] = field
    return fields
