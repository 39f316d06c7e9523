"""`/trpc/<procedure>`: tRPC v11's HTTP protocol (resolveResponse.ts and contentType.ts in trpc/trpc) over
the bound procedures. Queries by GET (`?input=`) or, overridden, by POST; mutations by POST with a JSON
body; batches (`?batch=1`, comma-joined paths, index-keyed inputs) answered as a JSON array, or as JSON
lines for `trpc-accept: application/jsonl`; HEAD answers 204 (a warm-up ping).

Every failure, of a call or of the whole request, is a tRPC error envelope; none is a bare 500.

The calls of a batch run one after another: a Lambda container serves one request at a time and the
services block, so running them concurrently would gain nothing.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from errors import DomainError
from trpc.procedure import Call, Procedure
from trpc.protocol import (
    VARY,
    Outcome,
    TrpcError,
    batch_status,
    dumps,
    from_domain_error,
    from_unexpected,
    is_stream_accepted,
    jsonl_body,
    response_headers,
)
from trpc.router import Authentication, TrpcRouter

# Far above any valid input (a batch of the largest inputs is a few hundred kB), far below API Gateway's
# 10 MB: a larger body is refused before it is parsed.
MAX_BODY_BYTES = 1_000_000


async def handle(scope: Scope, receive: Receive, send: Send, path: str) -> None:
    """Answers one HTTP request for `path` (what follows /trpc/: one procedure, or a comma-joined batch)."""
    request = Request(scope, receive)
    try:
        response = await _answer(request, path)
    except TrpcError as error:
        response = _error_response(error)
    except Exception as error:
        # A defect of this adapter (a procedure its twin cannot serve, say): still an envelope, and logged.
        response = _error_response(from_unexpected(error))
    await response(scope, receive, send)


def router_of(app: FastAPI) -> TrpcRouter:
    """The app's procedures, bound on the first tRPC request (the registry imports at no other time)."""
    router: TrpcRouter | None = getattr(app.state, "trpc_router", None)
    if router is None:
        from trpc.procedures import PROCEDURES

        # Procedures bind to their REST twins: a deployed app defers those routes until a request needs
        # them (lazy_routes.py), and a tRPC call is such a request.
        deferred = getattr(app.state, "deferred_routes", None)
        if deferred is not None:
            deferred.ensure_installed(app)

        router = app.state.trpc_router = TrpcRouter(app, PROCEDURES)
    return router


async def _answer(request: Request, path: str) -> Response:
    method = request.method
    if method == "HEAD":
        return Response(status_code=204, headers={"vary": VARY})
    if method not in ("GET", "POST"):
        raise TrpcError("METHOD_NOT_SUPPORTED", f"Unsupported {method}-request: use GET for queries, POST.")
    router = router_of(request.app)
    is_batch = request.query_params.get("batch") == "1"
    names = path.split(",") if is_batch else [path]
    max_batch_size: int = request.app.state.settings.trpc_max_batch_size
    if len(names) > max_batch_size:
        raise TrpcError("BAD_REQUEST", f"Batch call exceeds maximum size of {max_batch_size} calls.")
    stream = is_stream_accepted(request.headers)
    if stream and not is_batch:
        raise TrpcError("BAD_REQUEST", "Streaming requests must be batched (you can do a batch of 1).")
    inputs = await _inputs(request, is_batch, len(names))
    kinds = {bound.procedure.kind for bound in map(router.get, names) if bound is not None}
    if len(kinds) > 1:
        raise TrpcError("BAD_REQUEST", f"Cannot mix procedure types in call: {', '.join(sorted(kinds))}.")
    caller = Authentication(request)
    outcomes = [
        await _call(request, caller, router, name, raw_input)
        for name, raw_input in zip(names, inputs, strict=True)
    ]
    return _results_response(outcomes, is_batch=is_batch, stream=stream)


async def _call(
    request: Request, caller: Authentication, router: TrpcRouter, name: str, raw_input: object
) -> Outcome:
    """One call, settled on its own: its data or its error, whatever the other calls of the batch do."""
    try:
        return Outcome(name, data=await _run(request, caller, router, name, raw_input))
    except TrpcError as error:
        return Outcome(name, error=error)
    except DomainError as error:
        return Outcome(name, error=from_domain_error(error))
    except Exception as error:
        return Outcome(name, error=from_unexpected(error))


async def _run(
    request: Request, caller: Authentication, router: TrpcRouter, name: str, raw_input: object
) -> Any:
    bound = router.get(name)
    if bound is None:
        raise TrpcError("NOT_FOUND", f'No procedure found on path "{name}"')
    procedure = bound.procedure
    # tRPC allows POST for queries (the links' methodOverride), never GET for a mutation.
    if request.method == "GET" and procedure.kind == "mutation":
        raise TrpcError(
            "METHOD_NOT_SUPPORTED", f'Unsupported GET-request to mutation procedure at path "{name}"'
        )
    # The twin's order: authentication and guards (401, 403, 429) before the input (400).
    principal = await bound.admit(request, caller)
    params, body = procedure.parse_input(raw_input)
    result = procedure.resolve(Call(request, principal, procedure), params, body)
    if inspect.isawaitable(result):
        result = await result
    return Procedure.serialize(result)


async def _inputs(request: Request, is_batch: bool, count: int) -> list[object]:
    """Each call's raw input (None when it has none), from `?input=` or the JSON body."""
    if request.method == "GET":
        text = request.query_params.get("input") or None
    else:
        content_type = request.headers.get("content-type")
        if content_type is None:
            raise TrpcError("UNSUPPORTED_MEDIA_TYPE", "Missing content-type header: send application/json.")
        if not content_type.strip().lower().startswith("application/json"):
            raise TrpcError(
                "UNSUPPORTED_MEDIA_TYPE", f'Unsupported content-type "{content_type}": send application/json.'
            )
        raw = await _body(request)
        try:
            text = raw.decode() or None
        except UnicodeDecodeError:
            raise TrpcError("BAD_REQUEST", "The input is not UTF-8 text.") from None
    if text is None:
        return [None] * count
    value = _parse_json(text)
    if not is_batch:
        return [value]
    if not isinstance(value, dict):
        raise TrpcError("BAD_REQUEST", '"input" needs to be an object when doing a batch call.')
    return [value.get(str(index)) for index in range(count)]


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> TrpcError:
    return TrpcError("PAYLOAD_TOO_LARGE", f"The request body exceeds {MAX_BODY_BYTES} bytes.")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(text: str) -> Any:
    try:
        # Strict JSON: Python's parser would accept NaN and Infinity.
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise TrpcError("BAD_REQUEST", "The input is not valid JSON.") from None


def _headers(errors: list[TrpcError]) -> dict[str, str]:
    # no-store: answers are the caller's own (and apiKeys.create's carries a secret shown once).
    return {"vary": VARY, "cache-control": "no-store", **response_headers(errors)}


def _results_response(outcomes: list[Outcome], *, is_batch: bool, stream: bool) -> Response:
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    headers = _headers(errors)
    if stream:
        # Streamed answers start before their calls settle, so tRPC sends them with 200 whatever happens.
        return Response(jsonl_body(outcomes), 200, headers, media_type="application/json")
    envelopes: Any = [outcome.envelope() for outcome in outcomes] if is_batch else outcomes[0].envelope()
    return Response(dumps(envelopes), batch_status(outcomes), headers, media_type="application/json")


def _error_response(error: TrpcError) -> Response:
    """An error of the whole request (no path): a batch client gives it to every call."""
    return Response(
        dumps({"error": error.shape(None)}),
        error.http_status,
        _headers([error]),
        media_type="application/json",
    )
