"""The Lambda artifacts as `sam build` makes them: one small artifact per function (the app's code and its
bytecode) and one dependencies layer shared by all of them (arm64/CPython 3.13 extensions only, no
development tools, botocore's data for the services the code calls, bytecode). The build runs once per
session; it needs the wheels (from PyPI or pip's cache) but no Docker and no AWS account."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.cloudformation import keeps_the_shared_layer, load_template
from tests.prerequisites import missing_prerequisite

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SAM = Path(os.environ.get("SAM", ROOT / ".tools" / "sam" / "bin" / "sam"))
SAM_ENVIRONMENT = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}
LAYER = "DependenciesLayer"

ELF_MAGIC = b"\x7fELF"
ELF_MACHINE_AARCH64 = 183
DEV_ONLY_PACKAGES = ("uvicorn", "pytest", "_pytest", "moto", "ruff", "mypy")
# Lambda's limit for a function's unzipped code, its layers included.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# The budget for each uploaded artifact, zipped.
ZIPPED_ARTIFACT_LIMIT = 20 * 1000 * 1000


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"stratus_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class LambdaBuild:
    build_dir: Path
    built_by_sam: bool

    def function(self, name: str) -> Path:
        return self.build_dir / name

    @property
    def layer(self) -> Path:
        """The layer's python/ folder (Lambda mounts it at /opt/python)."""
        return self.build_dir / LAYER / "python"

    @property
    def functions(self) -> list[str]:
        if not self.built_by_sam:
            return ["ApiFunction"]
        built = load_template(self.build_dir / "template.yaml")["Resources"]
        return sorted(name for name, r in built.items() if r["Type"] == "AWS::Serverless::Function")


@pytest.fixture(scope="session")
def lambda_build(tmp_path_factory: pytest.TempPathFactory) -> LambdaBuild:
    """`sam build` when SAM is installed (make sam-tools), else the same Makefile targets SAM runs."""
    build_dir = tmp_path_factory.mktemp("sam-build")
    env = {**os.environ, **SAM_ENVIRONMENT}
    if SAM.exists():
        command = [
            str(SAM),
            "build",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(build_dir / "build"),
            "--cache-dir",
            str(build_dir / "cache"),
        ]
        subprocess.run(command, cwd=ROOT, env=env, check=True)
        return LambdaBuild(build_dir / "build", built_by_sam=True)
    # SAM runs the targets from a scratch directory outside the repository: do the same.
    for makefile, name in (
        (ROOT / "src" / "Makefile", "ApiFunction"),
        (ROOT / "requirements" / "Makefile", LAYER),
    ):
        subprocess.run(
            ["make", "--makefile", str(makefile), f"build-{name}"],
            cwd=build_dir,
            env={**env, "ARTIFACTS_DIR": str(build_dir / name)},
            check=True,
        )
    return LambdaBuild(build_dir, built_by_sam=False)


@pytest.fixture(scope="session")
def artifact(lambda_build: LambdaBuild) -> Path:
    """The API function's own artifact."""
    return lambda_build.function("ApiFunction")


@pytest.fixture(scope="session")
def layer(lambda_build: LambdaBuild) -> Path:
    return lambda_build.layer


def _wheel_of_each_file(tree: Path) -> dict[str, Path]:
    """Every installed file (relative path) mapped to its distribution's .dist-info directory."""
    owners: dict[str, Path] = {}
    for dist_info in tree.glob("*.dist-info"):
        for line in (dist_info / "RECORD").read_text().splitlines():
            owners[line.rsplit(",", 2)[0]] = dist_info
    return owners


def _wheel_tags(dist_info: Path) -> list[str]:
    wheel = (dist_info / "WHEEL").read_text().splitlines()
    return [line.split(":", 1)[1].strip() for line in wheel if line.startswith("Tag:")]


def _runs_on_lambda_cpython313(tag: str) -> bool:
    interpreter, abi, platform = tag.split("-")
    if "aarch64" not in platform or "linux" not in platform:
        return False
    return (interpreter == "cp313" and abi == "cp313") or (abi == "abi3" and interpreter.startswith("cp3"))


def _zipped_size(tree: Path, directory: Path) -> int:
    archive = directory / f"{tree.parent.name}-{tree.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                zipped.write(path, path.relative_to(tree))
    return archive.stat().st_size


def _unzipped_size(tree: Path) -> int:
    return sum(path.stat().st_size for path in tree.rglob("*") if path.is_file())


# --- Compiled code -------------------------------------------------------------------------------------


def test_every_extension_module_is_an_aarch64_elf(layer: Path) -> None:
    extensions = sorted(layer.rglob("*.so"))
    assert extensions, "expected compiled extensions (pydantic-core, cryptography)"
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == ELF_MAGIC, extension
        assert header[4] == 2, f"{extension}: not a 64-bit ELF"
        assert header[5] == 1, f"{extension}: not little-endian"
        (machine,) = struct.unpack_from("<H", header, 18)
        assert machine == ELF_MACHINE_AARCH64, f"{extension}: e_machine {machine}, not aarch64"


def test_every_extension_module_is_built_for_cpython313(layer: Path) -> None:
    owners = _wheel_of_each_file(layer)
    for extension in sorted(layer.rglob("*.so")):
        relative = extension.relative_to(layer).as_posix()
        if ".cpython-313-aarch64-linux-gnu." in extension.name:
            continue
        assert relative in owners, f"{relative}: no wheel installed it"
        tags = _wheel_tags(owners[relative])
        assert any(_runs_on_lambda_cpython313(tag) for tag in tags), f"{relative}: wheel tags {tags}"


def test_every_installed_wheel_is_pure_or_for_linux_aarch64(layer: Path) -> None:
    dist_infos = sorted(layer.glob("*.dist-info"))
    assert dist_infos
    for dist_info in dist_infos:
        tags = _wheel_tags(dist_info)
        assert tags, dist_info.name
        assert all(tag.endswith("-any") or _runs_on_lambda_cpython313(tag) for tag in tags), (
            dist_info.name,
            tags,
        )


# --- What ships where ----------------------------------------------------------------------------------


def test_handler_and_app_source_are_shipped(artifact: Path) -> None:
    tree = ast.parse((artifact / "main.py").read_text())
    assert any(isinstance(node, ast.FunctionDef) and node.name == "handler" for node in tree.body)
    source = ROOT / "src"
    expected = {
        path.relative_to(source)
        for path in source.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.name != "Makefile"
        and path.suffix != ".pyc"
    }
    missing = sorted(str(path) for path in expected if not (artifact / path).is_file())
    assert not missing, f"source files missing from the artifact: {missing}"


def test_every_requirement_is_installed_in_the_layer(layer: Path) -> None:
    pins = [
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements" / "lambda.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    installed = {
        dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("_", "-")
        for dist_info in layer.glob("*.dist-info")
    }
    assert set(pins) <= installed


def test_dependencies_are_uploaded_once_in_the_layer_every_function_uses(lambda_build: LambdaBuild) -> None:
    for name in lambda_build.functions:
        function = lambda_build.function(name)
        # The function's own artifact is the app's code: no installed distribution, no third-party package.
        assert not list(function.glob("*.dist-info")), name
        for package in ("fastapi", "pydantic", "botocore", "cryptography"):
            assert not (function / package).exists(), (name, package)
    if not lambda_build.built_by_sam:
        missing_prerequisite("SAM CLI not installed: the template's wiring is not checked", "make sam-tools")
    built = load_template(lambda_build.build_dir / "template.yaml")
    assert built["Globals"]["Function"]["Layers"] == [{"Ref": LAYER}]
    layers = [name for name, r in built["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"]
    assert layers == [LAYER]
    for name in lambda_build.functions:
        properties = built["Resources"][name]["Properties"]
        assert keeps_the_shared_layer(properties, LAYER), f"{name} replaces the shared layer"


def test_build_recipe_is_not_shipped(artifact: Path, layer: Path) -> None:
    assert not (artifact / "Makefile").exists()
    # Console scripts would carry the build machine's interpreter path.
    assert not (layer / "bin").exists()
    assert not (layer.parent / "Makefile").exists()


def test_no_development_tool_is_shipped(artifact: Path, layer: Path) -> None:
    for tree in (artifact, layer):
        shipped = {path.name.lower() for path in tree.iterdir()}
        for package in DEV_ONLY_PACKAGES:
            assert package not in shipped
            assert not any(
                name.startswith(f"{package}-") and name.endswith(".dist-info") for name in shipped
            ), package


def test_artifacts_fit_lambda_and_their_sizes_are_reported(
    lambda_build: LambdaBuild, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    layer_zipped = _zipped_size(lambda_build.layer.parent, tmp_path)
    layer_unzipped = _unzipped_size(lambda_build.layer.parent)
    lines = [f"{LAYER}: {layer_unzipped / 1e6:.1f} MB unzipped, {layer_zipped / 1e6:.1f} MB zipped"]
    record_property("layer_zipped_bytes", layer_zipped)
    record_property("layer_unzipped_bytes", layer_unzipped)
    assert layer_zipped <= ZIPPED_ARTIFACT_LIMIT
    for name in lambda_build.functions:
        function = lambda_build.function(name)
        zipped, unzipped = _zipped_size(function, tmp_path), _unzipped_size(function)
        lines.append(f"{name}: {unzipped / 1e6:.2f} MB unzipped, {zipped / 1e6:.2f} MB zipped")
        record_property(f"{name}_zipped_bytes", zipped)
        assert zipped <= ZIPPED_ARTIFACT_LIMIT, name
        assert unzipped + layer_unzipped < LAMBDA_UNZIPPED_LIMIT, name
    print("\n" + "\n".join(lines))


# --- botocore's data -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = load_tool("build_lambda").services_used(ROOT / "src")
    return used


def test_the_scan_finds_the_clients_the_code_creates(services_used: dict[str, set[str]]) -> None:
    # Direct clients and the ones PynamoDB and Powertools create on the code's behalf.
    assert {"dynamodb", "secretsmanager", "cognito-idp", "apigateway"} <= set(services_used)
    assert "directory.py" in services_used["cognito-idp"]
    assert "partner_keys.py" in services_used["apigateway"]


def _client_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("client", "create_client", "resource")
    ]


def test_every_client_is_named_literally_so_that_the_scan_sees_it() -> None:
    # The trimming keeps what the scan finds: a service named through a variable would be trimmed away.
    for path in sorted((ROOT / "src").rglob("*.py")):
        for call in _client_calls(ast.parse(path.read_text())):
            first = call.args[0] if call.args else None
            where = f"{path.relative_to(ROOT)}:{call.lineno}: name the service literally"
            assert isinstance(first, ast.Constant), where
            assert isinstance(first.value, str), where


def test_every_library_that_creates_clients_is_known_to_the_scan() -> None:
    build_lambda = load_tool("build_lambda")
    known = "|".join(build_lambda.LIBRARY_CLIENTS)
    # Powertools utilities and PynamoDB make their own clients.
    creating = (
        "pynamodb",
        "aws_lambda_powertools.utilities.parameters",
        "aws_lambda_powertools.utilities.idempotency",
    )
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(module.startswith(creating) for module in modules):
                assert re.search(known, text), f"{path.relative_to(ROOT)}: a client the scan does not see"


def test_the_layers_service_list_is_exactly_what_the_code_uses(services_used: dict[str, set[str]]) -> None:
    listed = load_tool("build_lambda").listed_services(ROOT / "requirements" / "aws-services.txt")
    missing = {service: sorted(files) for service, files in services_used.items() if service not in listed}
    assert not missing, (
        f"add to requirements/aws-services.txt (or botocore's data is trimmed away): {missing}"
    )
    assert listed <= set(services_used), (
        "listed but no longer used: remove from requirements/aws-services.txt"
    )


def test_botocore_keeps_exactly_the_data_of_the_services_used(
    layer: Path, services_used: dict[str, set[str]]
) -> None:
    kept = {entry.name for entry in (layer / "botocore" / "data").iterdir() if entry.is_dir()}
    always = load_tool("build_lambda").ALWAYS_KEPT_SERVICES
    assert kept == set(services_used) | always
    # The data's own files stay: endpoints, partitions, retry rules.
    assert (layer / "botocore" / "data" / "endpoints.json").is_file()


def test_every_client_the_code_creates_loads_from_the_layer(
    layer: Path, services_used: dict[str, set[str]]
) -> None:
    # botocore is pure Python: this machine's interpreter loads it from the layer alone (-E -s: nothing of
    # the test environment; -B: no bytecode of its own version left in the artifact), and builds each
    # client the code makes, offline.
    script = """
import json, sys
sys.path.insert(0, sys.argv[1])
import botocore, botocore.session
assert botocore.__file__.startswith(sys.argv[1]), botocore.__file__
session = botocore.session.get_session()
for service in json.loads(sys.argv[2]):
    client = session.create_client(
        service, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert client.meta.service_model.service_name == service
    print(service, len(client.meta.service_model.operation_names))
"""
    result = subprocess.run(
        [sys.executable, "-B", "-E", "-s", "-c", script, str(layer), json.dumps(sorted(services_used))],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()} == set(services_used)


# --- Bytecode ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runtime_python() -> str:
    python: str | None = load_tool("runtime_python").find_runtime_python()
    if python is None:
        missing_prerequisite("no Python 3.13 on this machine: the build ships without bytecode", "pyenv 3.13")
    assert python is not None
    return python


def _code_filename(python: str, pyc: Path) -> str:
    """The source path a pyc records (what tracebacks show), read by the Python that wrote it."""
    script = "import marshal, sys; print(marshal.loads(open(sys.argv[1], 'rb').read()[16:]).co_filename)"
    result = subprocess.run([python, "-c", script, str(pyc)], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.usefixtures("runtime_python")
def test_bytecode_is_precompiled_for_python313(artifact: Path, layer: Path) -> None:
    assert (artifact / "__pycache__" / "main.cpython-313.pyc").is_file()
    for module in (
        "fastapi/__pycache__/__init__",
        "pydantic/__pycache__/main",
        "botocore/__pycache__/client",
    ):
        assert (layer / f"{module}.cpython-313.pyc").is_file(), module
    for tree in (artifact, layer):
        stale = [path for path in tree.rglob("*.pyc") if ".cpython-313." not in path.name]
        assert not stale, f"bytecode of another Python: {stale[:5]}"
        uncompiled = [
            path
            for path in tree.rglob("*.py")
            if not (path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc").is_file()
        ]
        assert not uncompiled, f"modules without bytecode: {uncompiled[:5]}"


def test_bytecode_is_hash_based_unchecked_and_names_the_runtimes_paths(
    artifact: Path, layer: Path, runtime_python: str
) -> None:
    # PEP 552 flags: bit 0 hash-based, bit 1 check source. Zipped sources all carry a 1980 mtime, so
    # timestamp-based pycs would be ignored; unchecked ones are used without reading the source.
    for pyc, runtime_path in (
        (artifact / "__pycache__" / "main.cpython-313.pyc", "/var/task/main.py"),
        (layer / "fastapi" / "__pycache__" / "__init__.cpython-313.pyc", "/opt/python/fastapi/__init__.py"),
    ):
        (flags,) = struct.unpack_from("<I", pyc.read_bytes(), 4)
        assert flags == 0b01, f"{pyc}: flags {flags:#b}"
        assert _code_filename(runtime_python, pyc) == runtime_path


def test_the_runtime_python_is_found_without_home_or_the_shells_pyenv(tmp_path: Path) -> None:
    found = load_tool("runtime_python").find_runtime_python()
    if found is None:
        missing_prerequisite("no Python 3.13 on this machine", "pyenv install 3.13")
    # As some CI runners start the build: another HOME, no pyenv shims on PATH, no PYENV_ROOT.
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "runtime_python.py")],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "python3.13"


def test_without_a_python313_the_build_warns_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_lambda = load_tool("build_lambda")
    monkeypatch.setattr(build_lambda, "find_runtime_python", lambda: None)
    (tmp_path / "module.py").write_text("VALUE = 1\n")
    monkeypatch.setenv("CI", "false")
    assert build_lambda.compile_bytecode(tmp_path, "/var/task") is False
    assert "WARNING: no Python 3.13 found" in capsys.readouterr().out
    monkeypatch.setenv("CI", "true")
    with pytest.raises(SystemExit, match=r"no Python 3\.13 found"):
        build_lambda.compile_bytecode(tmp_path, "/var/task")


# --- SAM -----------------------------------------------------------------------------------------------


def test_sam_build_packages_the_makefile_artifacts(lambda_build: LambdaBuild) -> None:
    if not lambda_build.built_by_sam:
        missing_prerequisite(
            "SAM CLI not installed: the Makefile targets were run directly", "make sam-tools"
        )
    built_template = load_template(lambda_build.build_dir / "template.yaml")
    functions = {
        name: resource["Properties"]
        for name, resource in built_template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert {"ApiFunction", "StreamFunction", "PartnerAuthorizerFunction", "SigningKeysFunction"} <= set(
        functions
    )
    for name, function in functions.items():
        # Each function's own artifact, holding the module its handler names.
        assert function["CodeUri"] == name
        module = function["Handler"].rsplit(".", 1)[0].replace(".", "/")
        assert (lambda_build.build_dir / name / f"{module}.py").is_file(), name
    assert built_template["Resources"][LAYER]["Properties"]["ContentUri"] == LAYER
