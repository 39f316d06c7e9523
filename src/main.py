"""The Stratus app: `create_app()` builds it, `app` serves it under uvicorn, `handler` runs it in Lambda."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from starlette.middleware import Middleware

from app_secrets import PurposeKeys
from auth import TokenVerifier
from content_type import JsonBodiesOnlyMiddleware
from cors import ProblemCORSMiddleware
from docs import install_docs
from errors import UnhandledErrorMiddleware, install_error_handlers
from gateway import CdnOnlyMiddleware, CdnOrigin, HttpApiGateway, RestApiGateway, origin_secret_values
from models import bind_models
from observability import REQUEST_ID_HEADER, RequestContextMiddleware
from openapi import install_openapi
from pagination import CursorCodec
from ratelimit import install_rate_limits
from routers import activity, admin, api_keys, health, invitations, me, projects, root, tasks
from services.api_keys import authenticate_api_key
from settings import Settings, get_settings
from trpc.mount import TrpcMount, describe_in_openapi

API_VERSION = "0.1.0"


def _operation_id(route: APIRoute) -> str:
    # Stable, readable operation ids for generated clients: "<tag>-<function name>".
    tag = str(route.tags[0]) if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    bind_models(settings)
    app = FastAPI(
        title="Stratus API",
        version=API_VERSION,
        description="A production-grade FastAPI lambdalith: API Gateway, Lambda, DynamoDB and Cognito.",
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
        # The request's span is RequestContextMiddleware's (src/tracing.py); FastAPI's own would record raw
        # paths. Off, FastAPI also skips its per-request look-up of OpenTelemetry providers.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Outermost first: every response (errors and preflights included) gets a request id; a 500 made
        # by UnhandledErrorMiddleware still passes through CORS.
        middleware=[
            Middleware(
                RequestContextMiddleware,
                access_log=settings.access_log,
                request_metrics=settings.request_metrics,
                tracing=settings.tracing == "otel",
            ),
            # With CloudFront in front, requests that bypassed it are refused before anything else runs.
            *([Middleware(CdnOnlyMiddleware)] if settings.cdn_origin_secret_arn else []),
            Middleware(
                ProblemCORSMiddleware,
                allow_origins=settings.cors_allow_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "If-Match",
                    "If-None-Match",
                    "Idempotency-Key",
                    "X-API-Key",
                    REQUEST_ID_HEADER,
                    # httpBatchStreamLink asks for JSON lines with it.
                    "trpc-accept",
                ],
                expose_headers=[
                    REQUEST_ID_HEADER,
                    "ETag",
                    "Location",
                    "Retry-After",
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                ],
                max_age=600,
            ),
            Middleware(UnhandledErrorMiddleware),
            # tRPC at /trpc answers its own requests, content-type errors included (as tRPC envelopes).
            Middleware(TrpcMount),
            Middleware(JsonBodiesOnlyMiddleware),
        ],
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.api_key_authenticator = authenticate_api_key
    app.state.cursor_codec = CursorCodec(PurposeKeys(settings, "cursor-signing"))
    install_error_handlers(app)
    install_rate_limits(app, settings)
    app.include_router(root.router)
    app.include_router(health.router)
    app.include_router(me.router)
    app.include_router(projects.router)
    app.include_router(tasks.router)
    app.include_router(invitations.router)
    app.include_router(activity.router)
    app.include_router(api_keys.router)
    app.include_router(admin.router)
    # Last: API routes are matched first on every request; the docs pages are rarely asked for.
    install_docs(app)
    install_openapi(app)
    describe_in_openapi(app)
    return app


app = create_app()


def create_handler(asgi_app: FastAPI) -> Mangum:
    """The Mangum adapter for API Gateway REST (payload v1) and HTTP API (payload v2) events."""
    # With CloudFront in front, the REST handler tells requests through it from direct ones (gateway.py).
    secret_arn = getattr(getattr(asgi_app.state, "settings", None), "cdn_origin_secret_arn", "")
    cdn_origin = CdnOrigin(origin_secret_values(secret_arn)) if secret_arn else None
    return Mangum(
        asgi_app,
        # "auto" would run startup and shutdown on every invocation; clients are created lazily instead.
        lifespan="off",
        custom_handlers=[HttpApiGateway, RestApiGateway.behind(cdn_origin)],
        # Passing text types replaces Mangum's defaults, so they are repeated; problem+json is text too.
        text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, "application/problem+json", "image/svg+xml"],
    )


_mangum = create_handler(app)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (API Gateway REST payload v1 and HTTP API payload v2)."""
    return _mangum(event, context)
