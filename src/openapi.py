"""The OpenAPI document tells the truth about errors: every error response is application/problem+json
with the Problem schema (FastAPI would advertise its own JSON validation-error shape), and every operation
lists the errors any request can meet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

from auth import current_principal, optional_principal
from errors import PROBLEM_CONTENT_TYPE
from ratelimit import is_rate_limit


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
_WHEN_CREDENTIALS_REQUIRED = {
    "401": "Missing or invalid credentials (WWW-Authenticate: Bearer)",
    "403": "Authenticated, but not allowed",
}
_WHEN_CREDENTIALS_OPTIONAL = {"401": "Invalid credentials (WWW-Authenticate: Bearer)"}
_WHEN_LIMITED = {"429": "Rate limit exceeded; see Retry-After"}


@dataclass(frozen=True)
class _RouteFacts:
    credentials_required: bool
    credentials_accepted: bool
    rate_limited: bool


def dependency_calls(dependant: Dependant) -> set[Any]:
    """Every callable a route runs before its endpoint: its dependencies, theirs, and so on."""
    found = {dependant.call}
    for dependency in dependant.dependencies:
        found |= dependency_calls(dependency)
    return found


def _route_facts(app: FastAPI) -> dict[tuple[str, str], _RouteFacts]:
    """What each operation's dependencies imply for its errors, keyed by (path, lower-case method)."""
    facts: dict[tuple[str, str], _RouteFacts] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        calls = dependency_calls(context.dependant)
        route_facts = _RouteFacts(
            credentials_required=current_principal in calls,
            credentials_accepted=optional_principal in calls,
            rate_limited=any(is_rate_limit(call) for call in calls),
        )
        for method in context.methods or ():
            facts[(str(context.path_format), method.lower())] = route_facts
    return facts


_WHEN_ADDRESSED = {"404": "No such item, or not one the caller may see"}
_WHEN_CONDITIONAL = {"412": "If-Match names a version that is no longer current"}
_WHEN_WRITING = {"409": "Refused as things stand (e.g. a concurrent change, the last owner, a duplicate)"}


def _errors_of_operation(method: str, operation: dict[str, Any]) -> dict[str, str]:
    """What the operation's own parameters and method imply: ids that may name nothing, a version
    precondition, a write that may conflict."""
    errors: dict[str, str] = {}
    parameters = operation.get("parameters", [])
    if any(parameter.get("in") == "path" for parameter in parameters):
        errors.update(_WHEN_ADDRESSED)
    if any(
        parameter.get("in") == "header" and parameter.get("name", "").lower() == "if-match"
        for parameter in parameters
    ):
        errors.update(_WHEN_CONDITIONAL)
    if method in ("post", "put", "patch", "delete"):
        errors.update(_WHEN_WRITING)
    return errors


def _errors_of(facts: _RouteFacts | None) -> dict[str, str]:
    errors = dict(_ALWAYS)
    if facts is None:
        return errors
    if facts.credentials_required:
        errors.update(_WHEN_CREDENTIALS_REQUIRED)
    elif facts.credentials_accepted:
        errors.update(_WHEN_CREDENTIALS_OPTIONAL)
    if facts.rate_limited:
        errors.update(_WHEN_LIMITED)
    return errors


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
    facts = _route_facts(app)
    for path, path_item in document.get("paths", {}).items():
        for method, operation in path_item.items():
            route_facts = facts.get((path, method))
            if route_facts and route_facts.credentials_accepted and not route_facts.credentials_required:
                # Anonymous callers are welcome too: an empty requirement makes the credentials optional.
                operation["security"] = [{}, *operation.get("security", [])]
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = {**_errors_of(route_facts), **_errors_of_operation(method, operation)}
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
