"""Origin protection with CloudFront in front (EnableCdn), through the Lambda handler with API Gateway events
as CloudFront's origin requests arrive: only requests carrying the origin secret (from the stand-in's
Secrets Manager) are served; only they are believed about the viewer's address (the key of the rate limits)
and host; the secret reaches no route and no log line; the root path is what the viewer sees."""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from fastapi import FastAPI, Request
from local.resources import LocalResources, aws_client

import docs
import main
from main import create_app, create_handler
from settings import Settings
from tests.events import LambdaContext, http_api_event, rest_event

CLOUDFRONT_EDGE_IP = "130.176.17.24"  # CloudFront's address: what API Gateway reports as the source
VIEWER = "198.51.100.7"
VIEWER_HOST = "api.example.com"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(autouse=True)
def fresh_secret_cache() -> Iterator[None]:
    # Powertools caches secrets for the container's life (five minutes); each test starts cold.
    parameters.clear_caches()
    yield
    parameters.clear_caches()


def _put_secret(aws_resources: LocalResources, value: dict[str, str], arn: str | None = None) -> str:
    client = aws_client("secretsmanager", aws_resources.endpoint)
    if arn is None:
        created = client.create_secret(
            Name=f"cdn-origin-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(value)
        )
        return str(created["ARN"])
    client.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    return arn


@pytest.fixture(scope="module")
def origin_secret() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="module")
def origin_secret_arn(aws_resources: LocalResources, origin_secret: str) -> str:
    return _put_secret(aws_resources, {"current": origin_secret})


def with_probe(app: FastAPI) -> FastAPI:
    @app.get("/_test/viewer")
    async def viewer(request: Request) -> dict[str, Any]:
        return {
            "client": request.client.host if request.client else None,
            "url": str(request.url),
            "root_path": request.scope.get("root_path"),
            "headers": sorted(request.headers.keys()),
        }

    return app


@pytest.fixture(scope="module")
def make_cdn_handler(app_environment: dict[str, str]) -> Callable[..., Handler]:
    """The Lambda handler as main.py builds it (create_handler) for settings with a CDN origin secret."""

    def _make(secret_arn: str, **settings: Any) -> Handler:
        handler: Handler = create_handler(
            with_probe(create_app(Settings(cdn_origin_secret_arn=secret_arn, **settings)))
        )
        return handler

    return _make


@pytest.fixture(scope="module")
def cdn_handler(make_cdn_handler: Callable[..., Handler], origin_secret_arn: str) -> Handler:
    return make_cdn_handler(origin_secret_arn)


def through_cloudfront(
    method: str,
    path: str,
    secret: str | None,
    *,
    viewer: str | None = f"{VIEWER}:46532",
    host: str | None = VIEWER_HOST,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """An origin request as API Gateway hands it on: CloudFront called the stage's URL (origin path /Prod),
    adding the origin secret and the viewer's address; the viewer-request function added the viewer's host."""
    sent = dict(headers or {})
    if secret is not None:
        sent["X-Origin-Verify"] = secret
    if viewer is not None:
        sent["CloudFront-Viewer-Address"] = viewer
    if host is not None:
        sent["X-Forwarded-Host"] = host
    sent.setdefault("Via", "2.0 0123456789abcdef.cloudfront.net (CloudFront)")
    return rest_event(method, path, headers=sent, source_ip=CLOUDFRONT_EDGE_IP, **options)


def answer(result: dict[str, Any]) -> Any:
    body: str = result["body"]
    return json.loads(base64.b64decode(body) if result["isBase64Encoded"] else body)


def header(result: dict[str, Any], name: str) -> str | None:
    for source in (
        result.get("headers") or {},
        {k: v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()},
    ):
        for key, value in source.items():
            if key.lower() == name.lower():
                return str(value)
    return None


# --- through CloudFront -------------------------------------------------------------------------------------


def test_the_client_is_the_viewer_cloudfront_names(cdn_handler: Handler, origin_secret: str) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret, headers={"X-Forwarded-For": "6.6.6.6"})
    result = cdn_handler(event, LambdaContext())
    assert result["statusCode"] == 200
    assert answer(result)["client"] == VIEWER


def test_an_ipv6_viewer_keeps_its_whole_address(cdn_handler: Handler, origin_secret: str) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret, viewer="2001:db8::8a2e:370:7334:46532")
    assert answer(cdn_handler(event, LambdaContext()))["client"] == "2001:db8::8a2e:370:7334"


@pytest.mark.parametrize("viewer", [None, "not-an-address:1", "198.51.100.7", "6.6.6.6:1, 198.51.100.7:2"])
def test_without_a_usable_viewer_address_the_client_is_the_gateways_source(
    cdn_handler: Handler, origin_secret: str, viewer: str | None
) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret, viewer=viewer)
    assert answer(cdn_handler(event, LambdaContext()))["client"] == CLOUDFRONT_EDGE_IP


def test_urls_are_the_viewers_host_without_the_stage(cdn_handler: Handler, origin_secret: str) -> None:
    probe = answer(cdn_handler(through_cloudfront("GET", "/_test/viewer", origin_secret), LambdaContext()))
    assert probe["url"] == f"https://{VIEWER_HOST}/_test/viewer"
    assert probe["root_path"] == ""
    # A redirect sends the viewer back to the viewer's host, not to the execute-api URL (which is refused).
    redirect = cdn_handler(through_cloudfront("GET", "/health/", origin_secret), LambdaContext())
    assert redirect["statusCode"] == 307
    assert header(redirect, "location") == f"https://{VIEWER_HOST}/health"


def test_a_forged_host_is_not_taken(cdn_handler: Handler, origin_secret: str) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret, host="evil.example/path")
    assert answer(cdn_handler(event, LambdaContext()))["url"].startswith(
        "https://abc123.execute-api.us-east-1.amazonaws.com/"
    )


def test_the_docs_load_their_spec_and_assets_from_the_viewers_root(
    cdn_handler: Handler, origin_secret: str
) -> None:
    result = cdn_handler(through_cloudfront("GET", "/docs", origin_secret), LambdaContext())
    assert result["statusCode"] == 200
    html = result["body"]
    urls = re.findall(r'(?:src|href)="(/[^"]*)"', html) + re.findall(r'data-openapi-url="([^"]*)"', html)
    assert "/openapi.json" in urls
    assert all(not url.startswith("/Prod") for url in urls), urls
    spec = answer(cdn_handler(through_cloudfront("GET", "/openapi.json", origin_secret), LambdaContext()))
    # No server prefix: "Try it out" calls the viewer's own host, at the root.
    assert "servers" not in spec


def test_every_docs_asset_url_carries_the_assets_version(cdn_handler: Handler, origin_secret: str) -> None:
    # CloudFront keeps /docs/* for long (its cache key holds `v`) and browsers for a year (immutable): a
    # changed asset must arrive under a new URL.
    for page in ("/docs", "/redoc"):
        html = cdn_handler(through_cloudfront("GET", page, origin_secret), LambdaContext())["body"]
        assets = [url for url in re.findall(r'(?:src|href)="(/[^"]*)"', html) if url.startswith("/docs/")]
        assert assets, page
        assert all(url.endswith(f"?v={docs.assets_version()}") for url in assets), assets
        for url in assets:
            path, query = url.split("?", 1)
            event = through_cloudfront("GET", path, origin_secret, query={"v": [query.removeprefix("v=")]})
            assert cdn_handler(event, LambdaContext())["statusCode"] == 200, url


def test_the_assets_version_follows_their_content(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    original = docs.assets_version()
    for name in ("swagger-init.js", "redoc-init.js"):
        (tmp_path / name).write_bytes((docs._OWN_ASSETS / name).read_bytes())
    (tmp_path / "swagger-init.js").write_text((tmp_path / "swagger-init.js").read_text() + "\n// changed\n")
    monkeypatch.setattr(docs, "_OWN_ASSETS", tmp_path)
    docs.assets_version.cache_clear()
    try:
        assert docs.assets_version() != original
    finally:
        monkeypatch.undo()
        docs.assets_version.cache_clear()
    assert docs.assets_version() == original


def test_the_partner_entry_point_keeps_its_prefix(cdn_handler: Handler, origin_secret: str) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret, partner="partner-client")
    probe = answer(cdn_handler(event, LambdaContext()))
    assert probe["root_path"] == "/partner"
    assert probe["url"] == f"https://{VIEWER_HOST}/partner/_test/viewer"


def test_the_secret_reaches_no_route_and_no_log_line(
    cdn_handler: Handler, origin_secret: str, app_log: Any
) -> None:
    probe = answer(cdn_handler(through_cloudfront("GET", "/_test/viewer", origin_secret), LambdaContext()))
    assert "x-origin-verify" not in probe["headers"]
    cdn_handler(through_cloudfront("GET", "/nowhere", origin_secret), LambdaContext())
    cdn_handler(through_cloudfront("GET", "/health", "wrong-" + origin_secret), LambdaContext())
    assert origin_secret not in app_log.getvalue()


def test_the_anonymous_rate_limit_counts_per_viewer_not_per_cloudfront_node(
    make_cdn_handler: Callable[..., Handler], origin_secret_arn: str, origin_secret: str
) -> None:
    # Every viewer arrives from CloudFront's few addresses: counting those would make one budget for all.
    handler = make_cdn_handler(origin_secret_arn, rate_limit_anonymous="2/hour")
    left = 3600 - time.time() % 3600
    if left < 15:  # the three requests must fall into one hourly window
        time.sleep(left + 0.05)

    def readiness(viewer: str) -> int:
        status: int = handler(
            through_cloudfront("GET", "/health/ready", origin_secret, viewer=f"{viewer}:1234"),
            LambdaContext(),
        )["statusCode"]
        return status

    assert [readiness("198.51.100.21"), readiness("198.51.100.21"), readiness("198.51.100.21")] == [
        200,
        200,
        429,
    ]
    assert readiness("198.51.100.22") == 200


# --- around CloudFront -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/health"), ("GET", "/docs"), ("OPTIONS", "/projects"), ("GET", "/projects")]
)
def test_requests_that_bypass_cloudfront_are_refused(cdn_handler: Handler, method: str, path: str) -> None:
    result = cdn_handler(
        rest_event(method, path, headers={"Origin": "http://localhost:8000"}), LambdaContext()
    )
    assert result["statusCode"] == 403
    assert header(result, "content-type") == "application/problem+json"
    problem = answer(result)
    assert problem["type"] == "urn:stratus:problem:forbidden"
    assert problem["detail"] == "Call the API at its public address, not at the API Gateway endpoint."
    assert header(result, "x-request-id")


def test_an_http_api_event_cannot_skip_the_check(cdn_handler: Handler, origin_secret: str) -> None:
    # The stack's API is REST; an event of another shape is no proof of anything.
    event = http_api_event("GET", "/health", headers={"x-origin-verify": origin_secret})
    assert cdn_handler(event, LambdaContext())["statusCode"] == 403


def test_a_wrong_secret_with_a_chosen_viewer_address_is_refused(
    cdn_handler: Handler, origin_secret: str
) -> None:
    event = through_cloudfront("GET", "/_test/viewer", origin_secret[:-1] + "x")
    assert cdn_handler(event, LambdaContext())["statusCode"] == 403


def test_during_a_rotation_the_previous_value_is_accepted_too(
    aws_resources: LocalResources, make_cdn_handler: Callable[..., Handler]
) -> None:
    old, new = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    arn = _put_secret(aws_resources, {"current": old})
    handler = make_cdn_handler(arn)
    assert handler(through_cloudfront("GET", "/health", old), LambdaContext())["statusCode"] == 200
    _put_secret(aws_resources, {"current": new, "previous": old}, arn)
    parameters.clear_caches()  # a container whose five minutes of cache ran out
    for value in (old, new):
        assert handler(through_cloudfront("GET", "/health", value), LambdaContext())["statusCode"] == 200
    _put_secret(aws_resources, {"current": new}, arn)
    parameters.clear_caches()
    assert handler(through_cloudfront("GET", "/health", old), LambdaContext())["statusCode"] == 403


@pytest.mark.parametrize("stored", [None, {"current": "short"}, {"other": "x" * 64}, ["x" * 64]])
def test_an_unreadable_secret_is_a_503_never_an_admission(
    aws_resources: LocalResources, make_cdn_handler: Callable[..., Handler], stored: Any
) -> None:
    if stored is None:
        arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret-AbCdEf"
    else:
        client = aws_client("secretsmanager", aws_resources.endpoint)
        arn = client.create_secret(Name=f"bad-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(stored))["ARN"]
    result = make_cdn_handler(arn)(through_cloudfront("GET", "/health", "x" * 64), LambdaContext())
    assert result["statusCode"] == 503
    assert header(result, "retry-after")
    assert answer(result)["type"] == "urn:stratus:problem:service-unavailable"


def test_without_a_cdn_cloudfronts_headers_mean_nothing() -> None:
    # The stack without EnableCdn (main.handler as deployed by default): a client may send these headers,
    # and they change neither the client address nor the host.
    event = rest_event(
        "GET",
        "/health/",
        headers={
            "CloudFront-Viewer-Address": "6.6.6.6:1",
            "X-Forwarded-Host": "evil.example",
            "X-Origin-Verify": "x",
        },
    )
    result = main.handler(event, LambdaContext())
    assert result["statusCode"] == 307
    assert (header(result, "location") or "").startswith(
        "https://abc123.execute-api.us-east-1.amazonaws.com/Prod/"
    )
