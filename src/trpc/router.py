"""The procedures bound to the app that serves them: each call runs its REST twin's own guards (scopes,
groups, rate-limit class, in the twin's order) on the caller that auth.py's dependency functions
authenticate, so both surfaces apply the same rules by construction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from auth import Principal, current_principal, optional_principal
from openapi import dependency_calls
from trpc.procedure import Procedure

if TYPE_CHECKING:
    from starlette.requests import Request


class BindingError(RuntimeError):
    """A procedure cannot be served as its twin is: the twin is missing or has a guard this adapter
    cannot run. Tests bind every procedure, so this surfaces in CI, never first in production."""


class Authentication:
    """The caller of one HTTP request, authenticated at most once however many calls the batch holds (as
    FastAPI caches a dependency per request); a failure is every asking call's failure."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._principal: Principal | None = None
        self._failure: Exception | None = None
        self._done = False

    async def optional(self) -> Principal | None:
        if not self._done:
            try:
                self._principal = await optional_principal(self.request)
            except Exception as error:
                self._failure = error
            self._done = True
        if self._failure is not None:
            raise self._failure
        return self._principal

    async def required(self) -> Principal:
        return await current_principal(await self.optional())


@dataclass(frozen=True)
class Guard:
    """One of the twin's route dependencies and how to call it."""

    call: Callable[..., Awaitable[object]]
    request_parameter: str | None
    principal_parameter: str | None
    principal_required: bool

    async def check(self, request: Request, caller: Authentication) -> None:
        arguments: dict[str, Any] = {}
        if self.request_parameter is not None:
            arguments[self.request_parameter] = request
        if self.principal_parameter is not None:
            arguments[self.principal_parameter] = (
                await caller.required() if self.principal_required else await caller.optional()
            )
        await self.call(**arguments)


_SPECIAL_PARAMETERS = (
    "http_connection_param_name",
    "websocket_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def _guard(procedure: Procedure, dependency: Dependant) -> Guard:
    """A route dependency the adapter knows how to run: it takes the request and/or the caller."""
    where = f"{procedure.name}: the dependency {getattr(dependency.call, '__name__', dependency.call)!r} of its twin"
    if (
        dependency.path_params
        or dependency.query_params
        or dependency.header_params
        or dependency.cookie_params
        or dependency.body_params
        or any(getattr(dependency, name, None) for name in _SPECIAL_PARAMETERS)
    ):
        raise BindingError(f"{where} reads the HTTP request itself; give the procedure a way to run it")
    principal_parameter, principal_required = None, False
    for sub in dependency.dependencies:
        if sub.call is current_principal or sub.call is optional_principal:
            principal_parameter, principal_required = sub.name, sub.call is current_principal
        else:
            raise BindingError(f"{where} depends on {sub.call!r}, which the tRPC adapter cannot run")
    if dependency.call is None:
        raise BindingError(f"{where} has nothing to call")
    return Guard(dependency.call, dependency.request_param_name, principal_parameter, principal_required)


@dataclass(frozen=True)
class BoundProcedure:
    procedure: Procedure
    guards: tuple[Guard, ...]
    # What the twin's endpoint asks of the caller: a principal (401 without), an optional one, or nothing.
    principal_required: bool
    principal_used: bool

    async def admit(self, request: Request, caller: Authentication) -> Principal | None:
        """Runs the twin's guards in its order; returns the caller the resolver acts for."""
        for guard in self.guards:
            await guard.check(request, caller)
        if self.principal_required:
            return await caller.required()
        if self.principal_used:
            return await caller.optional()
        return None


def rest_operations(app: FastAPI) -> dict[tuple[str, str], Any]:
    """Every REST operation of `app`, keyed by (method, path template): its FastAPI route context."""
    operations: dict[tuple[str, str], Any] = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            for method in context.methods or ():
                operations[(method, str(context.path_format))] = context
    return operations


def bind(procedure: Procedure, twin: Any) -> BoundProcedure:
    dependant: Dependant = twin.dependant
    route_dependencies = dependant.dependencies[: len(twin.dependencies)]
    calls = dependency_calls(dependant)
    return BoundProcedure(
        procedure,
        tuple(_guard(procedure, dependency) for dependency in route_dependencies),
        principal_required=current_principal in calls,
        principal_used=optional_principal in calls,
    )


class TrpcRouter:
    """The procedures by name, each bound to its twin among `app`'s routes."""

    def __init__(self, app: FastAPI, procedures: Iterable[Procedure]) -> None:
        operations = rest_operations(app)
        self.procedures: dict[str, BoundProcedure] = {}
        for procedure in procedures:
            twin = operations.get(procedure.rest)
            if twin is None:
                raise BindingError(
                    f"{procedure.name}: its twin {' '.join(procedure.rest)} is not a route of the app"
                )
            self.procedures[procedure.name] = bind(procedure, twin)

    def get(self, name: str) -> BoundProcedure | None:
        return self.procedures.get(name)

    @property
    def names(self) -> Sequence[str]:
        return list(self.procedures)
