"""The TypeScript clients (clients/typescript): the committed types are what `make clients` makes from the
app now, the types refuse wrong calls (each mistake compiled and its compiler error checked), and the
example client calls every procedure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prerequisites import missing_prerequisite
from trpc.procedures import PROCEDURES

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "clients" / "typescript"
GENERATED = ("trpc.ts", "openapi.d.ts")


@pytest.fixture(scope="module")
def node_modules() -> Path:
    installed = CLIENTS / "node_modules"
    if not (installed / ".bin" / "tsc").exists() or not (installed / ".bin" / "openapi-typescript").exists():
        missing_prerequisite(
            "the TypeScript clients' packages are not installed",
            "make clients-install (npm ci from the lock)",
        )
    return installed


def test_the_committed_clients_are_what_make_clients_generates_now(
    node_modules: Path, tmp_path: Path
) -> None:
    subprocess.run(
        [
            sys.executable,
            "tools/generate_clients.py",
            "--output",
            str(tmp_path),
            "--node-modules",
            str(node_modules),
        ],
        cwd=ROOT,
        env={"PYTHONPATH": "src:.", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    stale = [name for name in GENERATED if (tmp_path / name).read_text() != (CLIENTS / name).read_text()]
    assert not stale, f"clients/typescript/{', '.join(stale)} no longer match the app: run `make clients`"


def test_the_router_type_names_every_procedure_with_its_kind() -> None:
    source = (CLIENTS / "trpc.ts").read_text()
    for procedure in PROCEDURES:
        leaf = procedure.name.rsplit(".", 1)[-1]
        wrapper = "$Query" if procedure.kind == "query" else "$Mutation"
        assert re.search(rf"\n\s+{leaf}: {re.escape(wrapper)}<", source), procedure.name
    assert "export type AppRouter = TRPCBuiltRouter<$Root, $Procedures>;" in source


def test_the_example_client_calls_every_procedure_as_its_kind() -> None:
    example = (CLIENTS / "example.ts").read_text()
    # `client` and the other clients the example names (`inviteeClient`).
    called = {
        (name, verb) for name, verb in re.findall(r"\b\w*[cC]lient\.([\w.]+)\.(query|mutate)\(", example)
    }
    assert called == {(p.name, "query" if p.kind == "query" else "mutate") for p in PROCEDURES}


# Each line is one mistake; the compiler must refuse it with one of the given errors.
MISTAKES: list[tuple[str, set[int], str]] = [
    ("a misspelt procedure", {2339, 2551}, 'await trpc.projects.byID.query({ id: "x" });'),
    ("an input field of the wrong type", {2322}, "await trpc.projects.byId.query({ id: 42 });"),
    (
        "a required input field left out",
        {2345, 2322, 2741},
        'await trpc.tasks.create.mutate({ title: "x" });',
    ),
    ("a value outside an enum", {2322}, 'await trpc.tasks.update.mutate({ id: "x", status: "finished" });'),
    (
        "a field the input lacks",
        {2353, 2345},
        'await trpc.projects.create.mutate({ name: "x", owner: "me" });',
    ),
    ("a mutation called as a query", {2339, 2551}, 'await trpc.projects.delete.query({ id: "x" });'),
    ("no input where one is required", {2554}, "await trpc.projects.byId.query();"),
    (
        "an output used as the wrong type",
        {2322},
        "const n: number = (await trpc.me.get.query()).display_name;",
    ),
    (
        "a REST path that does not exist",
        {2345, 2769},
        'await rest.GET("/project/{project_id}", { params: { path: { project_id: "x" } } });',
    ),
    (
        "a REST path parameter misnamed",
        {2353, 2322, 2561},
        'await rest.GET("/projects/{project_id}", { params: { path: { projectId: "x" } } });',
    ),
]
CORRECT = [
    'await trpc.projects.byId.query({ id: "x" });',
    "await trpc.projects.list.query();",
    'await trpc.tasks.update.mutate({ id: "x", expectedVersion: 3, status: "done", assignee: null });',
    "const s: string = (await trpc.me.get.query()).display_name;",
    'await rest.GET("/projects/{project_id}", { params: { path: { project_id: "x" } } });',
]


def test_the_types_refuse_each_mistake(node_modules: Path) -> None:
    scratch = CLIENTS / "build" / "type-bites"
    scratch.mkdir(parents=True, exist_ok=True)
    header = [
        'import { createTRPCClient, httpLink } from "@trpc/client";',
        'import createClient from "openapi-fetch";',
        'import type { paths } from "../../openapi.js";',
        'import type { AppRouter } from "../../trpc.js";',
        'const trpc = createTRPCClient<AppRouter>({ links: [httpLink({ url: "http://127.0.0.1/trpc" })] });',
        'const rest = createClient<paths>({ baseUrl: "http://127.0.0.1" });',
        "export async function calls(): Promise<void> {",
    ]
    lines = header + [f"  {line}" for line in CORRECT] + [f"  {code}" for _, _, code in MISTAKES] + ["}"]
    first_mistake = len(header) + len(CORRECT) + 1  # 1-based line numbers
    (scratch / "bites.ts").write_text("\n".join(lines) + "\n")
    (scratch / "tsconfig.json").write_text('{"extends": "../../tsconfig.json", "include": ["bites.ts"]}\n')
    result = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), "-p", str(scratch / "tsconfig.json")],
        cwd=CLIENTS,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors: dict[int, set[int]] = {}
    for line, code in re.findall(r"bites\.ts\((\d+),\d+\): error TS(\d+):", result.stdout):
        errors.setdefault(int(line), set()).add(int(code))
    assert not {line for line in errors if line < first_mistake}, result.stdout
    for offset, (mistake, accepted, _) in enumerate(MISTAKES):
        found = errors.get(first_mistake + offset, set())
        assert found & accepted, f"{mistake}: compiler errors {found or 'none'}\n{result.stdout}"
