"""The OpenAPI document tells the truth about errors: every error response is application/problem+json
with the Problem schema (FastAPI would advertise its own JSON validation-error shape), and every operation
lists the errors any request can meet."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from errors import PROBLEM_CONTENT_TYPE


class FieldError(BaseModel):
    location: str = Field(examples=["body"])
    field: str = Field(examples=["name"])
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str = Field(examples=["urn:stratus:problem:not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str
    instance: str = Field(examples=["/projects/01J0000000000000000000000"])
    request_id: str
    errors: list[FieldError] | None = Field(default=None, description="Validation errors, one per field.")


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_ALWAYS = {
    "400": "Malformed request (e.g. invalid JSON or cursor)",
    "415": "The body is not JSON",
    "422": "Validation failed; `errors` lists every field",
    "500": "Unexpected failure; quote the request id",
    "503": "A backing service is busy or unreachable; see Retry-After",
}
_WHEN_AUTHENTICATED = {
    "401": "Missing or invalid credentials (WWW-Authenticate: Bearer)",
    "403": "Authenticated, but not allowed",
    "429": "Rate limit exceeded; see Retry-After",
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM_REF}}}


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=app.servers,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(Problem.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"])
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    problem.pop("$defs", None)
    schemas["Problem"] = problem
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = dict(_ALWAYS)
            if operation.get("security"):
                extra.update(_WHEN_AUTHENTICATED)
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45":
                    responses[status] = _problem_response(
                        response.get("description") or extra.get(status, "")
                    )
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install_openapi(app: FastAPI) -> None:
    """Replaces app.openapi with the problem-aware document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
