"""API Gateway event handling for Mangum: the app's root path (stage or base-path mapping) is derived
from each event, so /docs and /openapi.json work on the execute-api URL, behind a custom domain, behind
CloudFront and under `sam local start-api` without any configured prefix. With CloudFront in front
(EnableCdn), a request proves it came through the distribution with the secret origin header; only then
are the viewer's address and host believed, and every other request is refused."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import unquote

from mangum.handlers import APIGateway, HTTPGateway
from mangum.types import Scope
from starlette.types import ASGIApp, Receive, Send

from errors import Forbidden, ServiceUnavailable, domain_error_response
from observability import logger
from partner_entry import PARTNER_BASE_PATH, PARTNER_RESOURCES

_PATH_PARAMETER = re.compile(r"\{([^}+]+)\+?\}")
_DUPLICATE_SLASHES = re.compile(r"/{2,}")


def partner_entry_principal(scope: Scope) -> str | None:
    """The partner (client id) API Gateway's partner authorizer admitted, when the request came through the
    partner entry point; None for every other request (and outside Lambda)."""
    event = scope.get("aws.event")
    if not isinstance(event, dict) or event.get("resource") not in PARTNER_RESOURCES:
        return None
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    principal = authorizer.get("principalId") if isinstance(authorizer, dict) else None
    return principal if isinstance(principal, str) and principal else None


def _app_path_of_rest_event(event: dict[str, Any]) -> str | None:
    """The path the app routes on: the matched resource with its parameters filled in.

    `/{proxy+}` with proxy=`docs` gives `/docs` whether the client called `/Prod/docs` (execute-api, where
    `path` lacks the stage) or `/v1/docs` (custom domain, where `path` carries the base-path mapping).
    """
    resource = event.get("resource")
    if not isinstance(resource, str):
        return None
    parameters = event.get("pathParameters") or {}
    # The template's catch-alls, answered without a regex: this runs on every invocation.
    if resource in ("/{proxy+}", f"{PARTNER_BASE_PATH}/{{proxy+}}"):
        proxy = parameters.get("proxy")
        return None if proxy is None else "/" + proxy.lstrip("/")
    if resource in ("/", PARTNER_BASE_PATH):
        return "/"
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = parameters.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return str(value)

    path = _PATH_PARAMETER.sub(fill, resource)
    return None if missing else _DUPLICATE_SLASHES.sub("/", path)


def _prefix_before(full_path: str, app_path: str) -> str:
    """What the client's path has in front of the app's path ('' when nothing or when they disagree).

    Compared decoded (path parameters arrive decoded, Mangum decodes `path`) and without a trailing slash
    (`/Prod/health/` has proxy `health/`)."""
    full_path = unquote(full_path).rstrip("/")
    app_path = app_path.rstrip("/")
    if not full_path.endswith(app_path):
        return ""
    prefix = full_path[: len(full_path) - len(app_path)]
    # A prefix is whole path segments, never part of one.
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        return ""
    return prefix


# --- CloudFront in front (EnableCdn, templates/cdn.yaml) ------------------------------------------------------

# CloudFront adds this header with the stack's origin secret (Secrets Manager); a client cannot: CloudFront
# overwrites a viewer's header of that name. Its value never goes further than the comparison below.
ORIGIN_SECRET_HEADER = "x-origin-verify"  # noqa: S105 - a header name, not its value
# Set by CloudFront (Managed-AllViewerExceptHostHeader): "<viewer ip>:<port>", IPv6 included.
VIEWER_ADDRESS_HEADER = "cloudfront-viewer-address"
# Set by the viewer-request function from the Host the viewer called (CloudFront sends API Gateway its own).
VIEWER_HOST_HEADER = "x-forwarded-host"
# How a request reached the app, recorded in the ASGI scope when the stack has a CDN: "cdn" (the origin
# secret matched), "direct" (it did not: the execute-api URL was called) or "unverifiable" (the secret
# could not be read). Absent without a CDN.
CDN_VERDICT_KEY = "stratus.cdn"
CdnVerdict = Literal["cdn", "direct", "unverifiable"]
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
# Shorter values are not a secret worth the name; the template generates 64 characters.
_MINIMUM_SECRET_LENGTH = 32


class OriginSecretUnavailable(Exception):
    """The origin secret could not be read (Secrets Manager unreachable, the secret malformed)."""


def origin_secret_values(secret_arn: str) -> Callable[[], Sequence[str]]:
    """The accepted values of the origin secret (JSON: `current`, and `previous` during a rotation), read
    through Powertools parameters and cached for five minutes per container."""

    def read() -> Sequence[str]:
        from aws_lambda_powertools.utilities.parameters import GetParameterError, get_secret

        try:
            secret = get_secret(secret_arn, transform="json", max_age=300)
        except GetParameterError:
            # The error names the secret and AWS's answer: logged, never returned.
            logger.exception("could not read the origin secret")
            raise OriginSecretUnavailable from None
        values = [secret.get(name) for name in ("current", "previous")] if isinstance(secret, dict) else []
        usable = [
            value for value in values if isinstance(value, str) and len(value) >= _MINIMUM_SECRET_LENGTH
        ]
        if not usable:
            logger.error("the origin secret holds no usable value", fields=["current", "previous"])
            raise OriginSecretUnavailable
        return usable

    return read


class CdnOrigin:
    """Tells requests that came through the stack's CloudFront distribution (they carry its origin secret)
    from requests to the execute-api URL, and gives the former the viewer's address and host."""

    def __init__(self, secret_values: Callable[[], Sequence[str]]) -> None:
        self.secret_values = secret_values

    def verdict(self, presented: str | None) -> CdnVerdict:
        if not presented:
            return "direct"
        try:
            accepted = self.secret_values()
        except OriginSecretUnavailable:
            return "unverifiable"
        # Every accepted value is compared, in constant time each: timing reveals neither value nor match.
        matched = False
        for value in accepted:
            matched |= hmac.compare_digest(presented.encode(), value.encode())
        return "cdn" if matched else "direct"

    def apply(self, scope: Scope, event: dict[str, Any]) -> None:
        """Records the verdict in the scope; through CloudFront, the client is the viewer, the host the one
        the viewer called and the root path what the viewer sees (CloudFront adds the stage)."""
        headers: list[list[bytes]] = scope["headers"]
        presented = None
        kept = []
        for name, value in headers:
            if name == ORIGIN_SECRET_HEADER.encode():
                presented = value.decode("latin-1")
            else:
                kept.append([name, value])
        # The secret goes no further than this: no middleware, route or log line can see it.
        scope["headers"] = kept
        verdict = self.verdict(presented)
        scope[CDN_VERDICT_KEY] = verdict
        if verdict != "cdn":
            return
        received = {name.decode("latin-1"): value.decode("latin-1") for name, value in kept}
        viewer = _viewer_address(received.get(VIEWER_ADDRESS_HEADER))
        if viewer is not None:
            scope["client"] = viewer
        host = received.get(VIEWER_HOST_HEADER)
        if host and _HOST.fullmatch(host):
            scope["headers"] = [
                [name, host.encode()] if name == b"host" else [name, value] for name, value in kept
            ]
            server, _, port = host.partition(":")
            scope["server"] = (server, int(port) if port else 443)
        # The viewer called the event's `path` (CloudFront's origin path put the stage in front of it, out
        # of the viewer's sight): its prefix is the partner entry point's, or none.
        stage_root: str = scope["root_path"]
        route_path = scope["path"][len(stage_root) :] or "/"
        app_path = _app_path_of_rest_event(event)
        root_path = "" if app_path is None else _prefix_before(str(event.get("path") or ""), app_path)
        scope["root_path"] = root_path
        scope["path"] = root_path + route_path


def _viewer_address(value: str | None) -> tuple[str, int] | None:
    """(ip, port) from CloudFront-Viewer-Address; None unless it is exactly one well-formed address."""
    if not value or "," in value:
        return None
    host, separator, port = value.rpartition(":")
    if not separator or not port.isdigit():
        return None
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, int(port)


class CdnOnlyMiddleware:
    """With a CDN, answers requests that did not come through it (the execute-api URL) with a 403 problem,
    and with a 503 while the origin secret cannot be read; never anything that reveals the secret. Installed
    only when the app has a CDN: a request without a verdict (not a REST API event) is refused too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        verdict = scope.get(CDN_VERDICT_KEY, "direct")
        if scope["type"] != "http" or verdict == "cdn":
            await self.app(scope, receive, send)
            return
        error = (
            ServiceUnavailable("The API cannot verify how this request arrived; try again shortly.")
            if verdict == "unverifiable"
            else Forbidden("Call the API at its public address, not at the API Gateway endpoint.")
        )
        await domain_error_response(scope, error)(scope, receive, send)


class RestApiGateway(APIGateway):
    """REST API (payload v1). `requestContext.path` is what the client asked for, stage or base path
    included; `sam local start-api` puts the resource template there instead, which matches nothing and
    yields no prefix. `behind(cdn_origin)` makes the variant for a stack with CloudFront in front."""

    cdn_origin: CdnOrigin | None = None

    @classmethod
    def behind(cls, cdn_origin: CdnOrigin | None) -> type[RestApiGateway]:
        """This handler class for one app's CDN (Mangum instantiates handler classes itself)."""
        if cdn_origin is None:
            return cls
        return type(cls.__name__, (cls,), {"cdn_origin": cdn_origin})

    @property
    def scope(self) -> Scope:
        scope = self._stage_aware_scope()
        if self.cdn_origin is not None:
            self.cdn_origin.apply(scope, self.event)
        return scope

    def _stage_aware_scope(self) -> Scope:
        scope: Scope = super().scope
        app_path = _app_path_of_rest_event(self.event)
        full_path = (self.event.get("requestContext") or {}).get("path")
        if app_path is None or not isinstance(full_path, str):
            return scope
        root_path = _prefix_before(full_path, app_path)
        if self.event.get("resource") in PARTNER_RESOURCES:
            # `path` holds the entry point's prefix too, whatever the URL: the app path is the proxied part.
            scope["root_path"] = root_path or PARTNER_BASE_PATH
            scope["path"] = scope["root_path"] + app_path
            return scope
        route_path = scope["path"]
        # Only a custom domain puts the prefix into `path` too (execute-api leaves the stage out of it, and
        # an app route may well begin with a segment that equals the stage name).
        path_carries_prefix = unquote(self.event.get("path") or "").rstrip("/") == unquote(full_path).rstrip(
            "/"
        )
        if (
            root_path
            and path_carries_prefix
            and (route_path == root_path or route_path.startswith(root_path + "/"))
        ):
            # `/v1` alone (a base-path mapping's root) is the app's `/`.
            route_path = route_path[len(root_path) :] or "/"
        # ASGI: `path` includes `root_path`; Starlette strips it again for routing.
        scope["root_path"] = root_path
        scope["path"] = root_path + route_path
        return scope


class HttpApiGateway(HTTPGateway):
    """HTTP API (payload v2): a named stage appears at the front of `rawPath`; `$default` has none."""

    @property
    def scope(self) -> Scope:
        scope: Scope = super().scope
        event = self.event
        if event.get("version") != "2.0":
            return scope
        stage = (event.get("requestContext") or {}).get("stage")
        path: str = scope["path"]
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            scope["root_path"] = f"/{stage}"
            if path == f"/{stage}":
                scope["path"] = f"/{stage}/"
        return scope
