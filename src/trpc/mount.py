"""Mounts tRPC at /trpc and mentions it in the OpenAPI document. Requests under /trpc are answered by
trpc.endpoint, imported with the first of them: other requests pay one prefix check and load nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from observability import ROUTE_TEMPLATE_KEY

TRPC_PATH = "/trpc"
TRPC_ROUTE_TEMPLATE = TRPC_PATH + "/{procedures}"


class TrpcMount:
    """Answers /trpc and /trpc/<procedure> itself; passes every other request on.

    It sits in front of JsonBodiesOnlyMiddleware so that a wrong content type is answered as tRPC answers
    it (a tRPC error envelope), and inside the request-id, CORS and last-resort error middleware so that
    tRPC answers get what every answer gets.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        # One substring search is all that other requests pay.
        if TRPC_PATH in path and scope["type"] == "http":
            root_path: str = scope.get("root_path", "")
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            # ASGI paths arrive decoded (Mangum decodes API Gateway's too): `%2C` is a comma here, as tRPC
            # reads its path with decodeURIComponent.
            if path == TRPC_PATH or path.startswith(TRPC_PATH + "/"):
                from trpc.endpoint import handle

                # One route template for every call and batch (a bounded metric dimension), named here so
                # that the request's metrics need not match it against every REST route.
                scope[ROUTE_TEMPLATE_KEY] = TRPC_ROUTE_TEMPLATE

                await handle(scope, receive, send, path[len(TRPC_PATH) + 1 :])
                return
        await self.app(scope, receive, send)


def describe_in_openapi(app: FastAPI) -> None:
    """Adds a tRPC section, with every procedure and its REST twin, to the document's description (shown at
    the top of /docs and /redoc). Call it after install_openapi: it decorates the document that builds."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        info = document.setdefault("info", {})
        if "x-trpc" not in info:
            from trpc.procedures import PROCEDURES

            info["description"] = f"{info.get('description', '')}\n\n{_section(PROCEDURES)}".strip()
            info["x-trpc"] = {"endpoint": TRPC_PATH, "procedures": [p.name for p in PROCEDURES]}
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _section(procedures: Any) -> str:
    rows = "\n".join(
        f"| `{p.name}` | {p.kind} | `{p.rest[0]} {p.rest[1]}` |"
        for p in sorted(procedures, key=lambda p: p.name)
    )
    return f"""## tRPC

The same operations are tRPC v11 procedures at `{TRPC_PATH}/<procedure>`, for `@trpc/client` with the
generated `AppRouter` type (`clients/typescript/trpc.ts`; README, "Use it from TypeScript"). Each one
runs its REST twin's rules (credentials, scopes, rate limits: every call of a batch counts) and service,
and answers tRPC envelopes: `{{"result":{{"data":…}}}}`, or `{{"error":{{"message","code","data":{{"code",
"httpStatus","path"}}}}}}` with the HTTP status of the twin's problem. Path ids, query parameters,
`If-Match` (as `expectedVersion`) and `Idempotency-Key` (as `idempotencyKey`) become input fields
beside the body's.

Queries: `GET {TRPC_PATH}/projects.byId?input={{"id":"…"}}`. Mutations: `POST` with a JSON body. Batches:
`?batch=1`, comma-joined procedures, inputs keyed by index (`{{"0":…,"1":…}}`), answered in order (207
when the calls' statuses differ); `trpc-accept: application/jsonl` answers as `httpBatchStreamLink`
reads it.

| procedure | kind | REST twin |
|---|---|---|
{rows}"""
