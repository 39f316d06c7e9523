"""tRPC v11's wire format, as `@trpc/client` reads it: result and error envelopes, JSON-RPC error codes and
their HTTP statuses, the status of a batch, and the JSON-lines answer of `httpBatchStreamLink`.

Read from the trpc/trpc sources (v11): `rpc/codes.ts`, `error/getErrorShape.ts`, `http/getHTTPStatusCode.ts`,
`http/resolveResponse.ts` and `stream/jsonl.ts` under `packages/server/src/unstable-core-do-not-import/`.
There is no Python implementation of the protocol to lean on, hence this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from errors import (
    DATA_STORE_RETRY_AFTER_SECONDS,
    DomainError,
    describe_validation_errors,
    is_transient_aws_failure,
)
from observability import logger

ErrorCode = Literal[
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "METHOD_NOT_SUPPORTED",
    "CONFLICT",
    "PRECONDITION_FAILED",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "UNPROCESSABLE_CONTENT",
    "TOO_MANY_REQUESTS",
    "INTERNAL_SERVER_ERROR",
    "SERVICE_UNAVAILABLE",
]

# (JSON-RPC 2.0 code, HTTP status) of each tRPC error code this API answers with (rpc/codes.ts and
# JSONRPC2_TO_HTTP_CODE in getHTTPStatusCode.ts). tRPC gives every 5xx the JSON-RPC code -32603, and
# answers input that is not JSON with BAD_REQUEST, not JSON-RPC's PARSE_ERROR.
ERROR_CODES: dict[ErrorCode, tuple[int, int]] = {
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "SERVICE_UNAVAILABLE": (-32603, 503),
}
_CODE_OF_STATUS: dict[int, ErrorCode] = {status: code for code, (_, status) in ERROR_CODES.items()}

INTERNAL_ERROR_MESSAGE = "The server failed to handle the request. Quote the request id when reporting it."
# Every tRPC answer varies with these request headers (resolveResponse.ts).
VARY = "trpc-accept, accept"
JSONL = "application/jsonl"


@dataclass
class TrpcError(Exception):
    """One call's failure, as the client will see it. `headers` are HTTP headers the failure asks for
    (Retry-After, WWW-Authenticate); `data` adds to the error's `data` (validation errors)."""

    code: ErrorCode
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return ERROR_CODES[self.code][1]

    def shape(self, path: str | None) -> dict[str, Any]:
        """The default error shape of tRPC (getErrorShape.ts), without a stack."""
        json_rpc_code, http_status = ERROR_CODES[self.code]
        data: dict[str, Any] = {"code": self.code, "httpStatus": http_status}
        if path is not None:
            data["path"] = path
        data.update(self.data)
        return {"message": self.message, "code": json_rpc_code, "data": data}


def from_domain_error(error: DomainError) -> TrpcError:
    """The tRPC error a domain error stands for: the code of its HTTP status, its detail as the message."""
    code = _CODE_OF_STATUS.get(int(error.status), "INTERNAL_SERVER_ERROR")
    if code == "INTERNAL_SERVER_ERROR":
        return internal_error()
    return TrpcError(code, error.detail, headers=dict(error.headers))


def invalid_input(errors: Sequence[Any]) -> TrpcError:
    """BAD_REQUEST with every offending field, described as the REST problems describe them."""
    described = describe_validation_errors(errors)
    return TrpcError(
        "BAD_REQUEST", f"{len(described)} input field(s) failed validation.", data={"errors": described}
    )


def internal_error() -> TrpcError:
    return TrpcError("INTERNAL_SERVER_ERROR", INTERNAL_ERROR_MESSAGE)


def from_unexpected(error: Exception) -> TrpcError:
    """503 for a transient AWS failure, else a 500 that says nothing of its cause; both are logged, as
    errors.error_response logs them for REST."""
    if is_transient_aws_failure(error):
        logger.warning("a backing service failed transiently", exc_info=error)
        return TrpcError(
            "SERVICE_UNAVAILABLE",
            "A backing service is busy or unreachable; retry shortly.",
            headers={"Retry-After": str(DATA_STORE_RETRY_AFTER_SECONDS)},
        )
    logger.error("unhandled error", exc_info=error)
    return internal_error()


@dataclass(frozen=True)
class Outcome:
    """How one call ended: its data (`None` for a procedure without output) or its error."""

    path: str
    data: Any = None
    error: TrpcError | None = None

    def envelope(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error.shape(self.path)}
        # A procedure without output answers `{"result":{}}`, as tRPC's JSON.stringify drops `undefined`.
        return {"result": {} if self.data is None else {"data": self.data}}


def batch_status(outcomes: Sequence[Outcome]) -> int:
    """The common status of the calls, or 207 when they differ (getHTTPStatusCode.ts)."""
    statuses = {200 if outcome.error is None else outcome.error.http_status for outcome in outcomes}
    return statuses.pop() if len(statuses) == 1 else 207


def response_headers(errors: Sequence[TrpcError]) -> dict[str, str]:
    """What the failed calls ask of the HTTP answer: the longest Retry-After, the first challenge."""
    headers: dict[str, str] = {}
    retry_after = [
        int(e.headers["Retry-After"]) for e in errors if e.headers.get("Retry-After", "").isdigit()
    ]
    if retry_after:
        headers["Retry-After"] = str(max(retry_after))
    challenge = next((e.headers["WWW-Authenticate"] for e in errors if "WWW-Authenticate" in e.headers), None)
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    return headers


def dumps(value: Any) -> bytes:
    # As Starlette's JSONResponse renders JSON: compact, UTF-8, no NaN.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def jsonl_body(outcomes: Sequence[Outcome]) -> bytes:
    """The `httpBatchStreamLink` answer, buffered: its first line (the head) carries every call settled.

    In tRPC's JSON-lines format the head maps each call's index to an encoded value, `[[value],
    ...chunk definitions]`; a value without chunk definitions is complete, so nothing follows the head
    (stream/jsonl.ts, `encode` and `decode`). Under Lambda the answer is buffered anyway.
    """
    head = {str(index): [[outcome.envelope()]] for index, outcome in enumerate(outcomes)}
    return dumps(head) + b"\n"


def is_stream_accepted(headers: Mapping[str, str]) -> bool:
    """`trpc-accept: application/jsonl`, or `accept` listing it (the link's `streamHeader: 'accept'`)."""
    trpc_accept = headers.get("trpc-accept")
    if trpc_accept is not None:
        return trpc_accept.strip() == JSONL
    return any(part.strip() == JSONL for part in headers.get("accept", "").split(","))
