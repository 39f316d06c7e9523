"""REST and tRPC list the same operations: each REST operation of the OpenAPI document has a procedure
that names it as its twin, or is listed in trpc.procedures.REST_ONLY with the reason; each procedure takes
what its twin takes (same constraints), answers its twin's response model, and runs its twin's guards."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query

from auth import current_principal, require_scopes
from main import create_app
from ratelimit import rate_limit
from settings import Settings
from trpc.procedure import Procedure
from trpc.procedures import PROCEDURES, REST_ONLY, rest_only_reason
from trpc.router import BindingError, TrpcRouter, rest_operations

_METHODS = ("get", "put", "post", "patch", "delete")
_PROCEDURE_NAME = re.compile(r"^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(Settings())


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    openapi: dict[str, Any] = app.openapi()
    return openapi


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    }


def _rest_only_reason(operation: tuple[str, str]) -> str | None:
    return rest_only_reason(*operation)


def _without_procedure(document: dict[str, Any]) -> list[tuple[str, str]]:
    twins = {procedure.rest for procedure in PROCEDURES}
    return sorted(
        operation
        for operation in _operations(document)
        if operation not in twins and _rest_only_reason(operation) is None
    )


def test_every_rest_operation_has_a_procedure_or_is_listed_as_rest_only(document: dict[str, Any]) -> None:
    missing = _without_procedure(document)
    assert not missing, (
        "REST operations without a tRPC procedure:\n"
        + "\n".join(f"    {method} {path}" for method, path in missing)
        + "\nGive each one a procedure in src/trpc/procedures.py naming the operation as its REST twin "
        "(`@query(...)` or `@mutation(...)`) and run `make clients`; or, if tRPC clients must not have it, "
        "add it to REST_ONLY in that module with the reason."
    )


def test_a_rest_operation_added_without_a_procedure_is_named() -> None:
    app = create_app(Settings())

    @app.post("/projects/{project_id}/exports", tags=["projects"])
    async def export(project_id: str) -> None:
        return None

    @app.get("/admin/reports", tags=["admin"])
    async def reports() -> None:
        return None

    assert _without_procedure(app.openapi()) == [("POST", "/projects/{project_id}/exports")]


def test_every_procedure_mirrors_an_operation_of_the_document(document: dict[str, Any]) -> None:
    operations = _operations(document)
    orphans = [f"{p.name} -> {' '.join(p.rest)}" for p in PROCEDURES if p.rest not in operations]
    assert not orphans, "procedures whose REST twin is not in the OpenAPI document:\n" + "\n".join(orphans)
    listed_as_rest_only = [p.name for p in PROCEDURES if _rest_only_reason(p.rest) is not None]
    assert not listed_as_rest_only, (
        f"procedures whose twin is also listed in REST_ONLY: {listed_as_rest_only}"
    )


def test_every_rest_only_entry_names_operations_that_exist(document: dict[str, Any]) -> None:
    operations = _operations(document)
    for (method, path), reason in REST_ONLY.items():
        assert reason.strip()
        matched = [operation for operation in operations if _rest_only_reason(operation) == reason]
        assert matched, f"REST_ONLY lists {method} {path}, which the document no longer has"


def test_procedure_names_are_unique_dotted_identifiers_with_one_twin_each() -> None:
    names = [procedure.name for procedure in PROCEDURES]
    assert len(names) == len(set(names))
    assert all(_PROCEDURE_NAME.match(name) for name in names), names
    twins = [procedure.rest for procedure in PROCEDURES]
    assert len(twins) == len(set(twins))
    # A name is a procedure or a namespace, never both (tRPC's router record cannot hold both).
    namespaces = {name.rsplit(".", 1)[0] for name in names if "." in name}
    assert not namespaces & set(names)


def test_the_contract_names_of_the_procedures() -> None:
    assert {procedure.name for procedure in PROCEDURES} == {
        "health",
        "me.get",
        "me.update",
        "projects.list",
        "projects.byId",
        "projects.create",
        "projects.update",
        "projects.delete",
        "projects.activity",
        "projects.members.list",
        "projects.members.add",
        "projects.members.update",
        "projects.members.remove",
        "tasks.list",
        "tasks.byId",
        "tasks.create",
        "tasks.update",
        "tasks.delete",
        "tasks.mine",
        "apiKeys.list",
        "apiKeys.create",
        "apiKeys.revoke",
        "projects.invitations.list",
        "projects.invitations.create",
        "projects.invitations.revoke",
        "invitations.mine",
        "invitations.accept",
        "invitations.decline",
    }


def test_queries_mirror_gets_and_mutations_everything_else() -> None:
    for procedure in PROCEDURES:
        assert (procedure.kind == "query") == (procedure.rest[0] == "GET"), procedure.name


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _expected_field(procedure: Procedure, parameter: dict[str, Any], path_parameters: list[str]) -> str:
    """The input field a procedure has for one of its twin's parameters."""
    name, where = parameter["name"], parameter["in"]
    if where == "header":
        return {"if-match": "expectedVersion", "idempotency-key": "idempotencyKey"}.get(name.lower(), name)
    # The item the operation is about is the input's `id` (projects.byId({id})), when the procedure has one.
    if where == "path" and name == path_parameters[-1] and "id" in procedure.param_names:
        return "id"
    return _camel(name)


def _comparable(schema: dict[str, Any]) -> dict[str, Any]:
    # Titles and descriptions are documentation, and FastAPI leaves out a null default; the rest validates.
    return {
        key: value
        for key, value in schema.items()
        if key not in ("title", "description") and not (key == "default" and value is None)
    }


def test_each_procedure_takes_its_twins_parameters_with_the_same_constraints(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    problems: list[str] = []
    for procedure in PROCEDURES:
        operation = operations[procedure.rest]
        parameters = [p for p in operation.get("parameters", []) if p["in"] in ("path", "query", "header")]
        path_parameters = [p["name"] for p in parameters if p["in"] == "path"]
        expected = {_expected_field(procedure, p, path_parameters): p for p in parameters}
        if set(expected) != set(procedure.param_names):
            problems.append(
                f"{procedure.name}: input fields {sorted(procedure.param_names)}, "
                f"its twin's parameters call for {sorted(expected)}"
            )
            continue
        if procedure.params is None:
            continue
        schema = procedure.params.model_json_schema(mode="validation", by_alias=True)
        for field, parameter in expected.items():
            if (field in schema.get("required", ())) != parameter.get("required", False):
                problems.append(f"{procedure.name}.{field}: required or not unlike {parameter['name']}")
            if field == "expectedVersion":
                continue  # an integer here, the ETag string of If-Match there
            ours, theirs = _comparable(schema["properties"][field]), _comparable(parameter["schema"])
            if ours != theirs:
                problems.append(f"{procedure.name}.{field}: {ours} but {parameter['name']} is {theirs}")
    assert not problems, "\n".join(problems)


def test_each_procedure_takes_its_twins_body_and_answers_its_twins_model(app: FastAPI) -> None:
    operations = rest_operations(app)
    for procedure in PROCEDURES:
        twin = operations[procedure.rest]
        bodies = [field.field_info.annotation for field in twin.dependant.body_params]
        assert bodies == ([procedure.body] if procedure.body else []), procedure.name
        assert twin.response_model is procedure.output, procedure.name
        if procedure.output is None:
            assert twin.status_code == 204, procedure.name


def test_every_procedure_runs_its_twins_own_guards(app: FastAPI) -> None:
    router = TrpcRouter(app, PROCEDURES)
    operations = rest_operations(app)
    for name, bound in router.procedures.items():
        twin = operations[bound.procedure.rest]
        assert [guard.call for guard in bound.guards] == [d.dependency for d in twin.dependencies], name
    read = router.procedures["projects.byId"]
    assert read.guards[-1].call is rate_limit("read")
    assert read.principal_required
    assert router.procedures["projects.delete"].guards[-1].call is rate_limit("write")
    # Minting a key: the expensive class, counted before the caller is required (as REST counts it).
    mint = router.procedures["apiKeys.create"]
    assert [guard.call for guard in mint.guards] == [rate_limit("expensive")]
    assert not mint.guards[0].principal_required
    assert mint.principal_required
    health = router.procedures["health"]
    assert health.guards == ()
    assert not health.principal_required
    assert not health.principal_used


def test_a_twin_with_a_guard_the_adapter_cannot_run_refuses_to_bind() -> None:
    def per_tenant(tenant: str = Query()) -> None:
        return None

    app = FastAPI()

    @app.get("/health", dependencies=[Depends(per_tenant)])
    async def health() -> dict[str, str]:
        return {}

    with pytest.raises(BindingError, match="health: the dependency 'per_tenant' of its twin reads the HTTP"):
        TrpcRouter(app, [p for p in PROCEDURES if p.name == "health"])


def test_a_procedure_whose_twin_is_gone_refuses_to_bind() -> None:
    app = FastAPI()

    @app.get("/me", dependencies=[Depends(require_scopes("stratus/read"))])
    async def me(principal: Annotated[Any, Depends(current_principal)]) -> None:
        return None

    with pytest.raises(
        BindingError, match=r"projects\.byId: its twin GET /projects/\{project_id\} is not a route"
    ):
        TrpcRouter(app, [p for p in PROCEDURES if p.name in ("me.get", "projects.byId")])
