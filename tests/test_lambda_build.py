"""The Lambda artifact as `sam build` makes it: arm64/CPython 3.13 extensions only, the app's code and
handler, no development tools, precompiled bytecode. The build runs once per session; it needs the
wheels (from PyPI or pip's cache) but no Docker and no AWS account."""

from __future__ import annotations

import ast
import importlib.util
import os
import struct
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.cloudformation import load_template
from tests.prerequisites import missing_prerequisite

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SAM = Path(os.environ.get("SAM", ROOT / ".tools" / "sam" / "bin" / "sam"))
SAM_ENVIRONMENT = {
    "SAM_CLI_TELEMETRY": "0",
    "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}

ELF_MAGIC = b"\x7fELF"
ELF_MACHINE_AARCH64 = 183
DEV_ONLY_PACKAGES = ("uvicorn", "pytest", "_pytest", "moto", "ruff", "mypy")
# Lambda's limit for a function's unzipped code.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


@dataclass(frozen=True)
class LambdaBuild:
    artifact: Path
    built_by_sam: bool
    build_dir: Path


def load_build_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stratus_tools_build_lambda", ROOT / "tools" / "build_lambda.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def lambda_build(tmp_path_factory: pytest.TempPathFactory) -> LambdaBuild:
    """`sam build` when SAM is installed (make sam-tools), else the same Makefile target SAM runs."""
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
        return LambdaBuild(
            build_dir / "build" / "ApiFunction", built_by_sam=True, build_dir=build_dir / "build"
        )
    # SAM runs the target from a scratch directory outside the repository: do the same.
    artifact = build_dir / "ApiFunction"
    env["ARTIFACTS_DIR"] = str(artifact)
    subprocess.run(
        ["make", "--makefile", str(ROOT / "src" / "Makefile"), "build-ApiFunction"],
        cwd=build_dir,
        env=env,
        check=True,
    )
    return LambdaBuild(artifact, built_by_sam=False, build_dir=build_dir)


@pytest.fixture(scope="session")
def artifact(lambda_build: LambdaBuild) -> Path:
    return lambda_build.artifact


def _wheel_of_each_file(artifact: Path) -> dict[str, Path]:
    """Every installed file (relative path) mapped to its distribution's .dist-info directory."""
    owners: dict[str, Path] = {}
    for dist_info in artifact.glob("*.dist-info"):
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


# --- Compiled code -------------------------------------------------------------------------------------


def test_every_extension_module_is_an_aarch64_elf(artifact: Path) -> None:
    extensions = sorted(artifact.rglob("*.so"))
    assert extensions, "expected compiled extensions (pydantic-core, cryptography)"
    for extension in extensions:
        header = extension.read_bytes()[:20]
        assert header[:4] == ELF_MAGIC, extension
        assert header[4] == 2, f"{extension}: not a 64-bit ELF"
        assert header[5] == 1, f"{extension}: not little-endian"
        (machine,) = struct.unpack_from("<H", header, 18)
        assert machine == ELF_MACHINE_AARCH64, f"{extension}: e_machine {machine}, not aarch64"


def test_every_extension_module_is_built_for_cpython313(artifact: Path) -> None:
    owners = _wheel_of_each_file(artifact)
    for extension in sorted(artifact.rglob("*.so")):
        relative = extension.relative_to(artifact).as_posix()
        if ".cpython-313-aarch64-linux-gnu." in extension.name:
            continue
        assert relative in owners, f"{relative}: no wheel installed it"
        tags = _wheel_tags(owners[relative])
        assert any(_runs_on_lambda_cpython313(tag) for tag in tags), f"{relative}: wheel tags {tags}"


def test_every_installed_wheel_is_pure_or_for_linux_aarch64(artifact: Path) -> None:
    for dist_info in sorted(artifact.glob("*.dist-info")):
        tags = _wheel_tags(dist_info)
        assert tags, dist_info.name
        assert all(tag.endswith("-any") or _runs_on_lambda_cpython313(tag) for tag in tags), (
            dist_info.name,
            tags,
        )


# --- What ships ----------------------------------------------------------------------------------------


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


def test_build_recipe_is_not_shipped(artifact: Path) -> None:
    assert not (artifact / "Makefile").exists()
    # Console scripts would carry the build machine's interpreter path.
    assert not (artifact / "bin").exists()


def test_no_development_tool_is_shipped(artifact: Path) -> None:
    shipped = {path.name.lower() for path in artifact.iterdir()}
    for package in DEV_ONLY_PACKAGES:
        assert package not in shipped
        assert not any(name.startswith(f"{package}-") and name.endswith(".dist-info") for name in shipped), (
            package
        )


def test_artifact_fits_lambda_and_its_size_is_reported(
    artifact: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    files = [path for path in artifact.rglob("*") if path.is_file()]
    unzipped = sum(path.stat().st_size for path in files)
    archive = tmp_path / "artifact.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in files:
            zipped.write(path, path.relative_to(artifact))
    record_property("artifact_unzipped_bytes", unzipped)
    record_property("artifact_zipped_bytes", archive.stat().st_size)
    print(
        f"\nLambda artifact: {len(files)} files, {unzipped / 1e6:.1f} MB unzipped, "
        f"{archive.stat().st_size / 1e6:.1f} MB zipped"
    )
    assert unzipped < LAMBDA_UNZIPPED_LIMIT


# --- Bytecode ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def runtime_python() -> str:
    python: str | None = load_build_tool().find_runtime_python()
    if python is None:
        pytest.skip("no Python 3.13 on this machine: the build ships without bytecode")
    return python


@pytest.mark.usefixtures("runtime_python")
def test_bytecode_is_precompiled_for_python313(artifact: Path) -> None:
    for module in ("__pycache__/main", "fastapi/__pycache__/__init__", "pydantic/__pycache__/main"):
        assert (artifact / f"{module}.cpython-313.pyc").is_file(), module
    stale = [path for path in artifact.rglob("*.pyc") if ".cpython-313." not in path.name]
    assert not stale, f"bytecode of another Python: {stale[:5]}"
    uncompiled = [
        path
        for path in artifact.rglob("*.py")
        if not (path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc").is_file()
    ]
    assert not uncompiled, f"modules without bytecode: {uncompiled[:5]}"


@pytest.mark.usefixtures("runtime_python")
def test_bytecode_is_hash_based_and_unchecked(artifact: Path) -> None:
    # PEP 552 flags: bit 0 hash-based, bit 1 check source. Zipped sources all carry a 1980 mtime, so
    # timestamp-based pycs would be ignored; unchecked ones are used without reading the source.
    for pyc in (
        artifact / "__pycache__" / "main.cpython-313.pyc",
        artifact / "fastapi" / "__pycache__" / "__init__.cpython-313.pyc",
    ):
        (flags,) = struct.unpack_from("<I", pyc.read_bytes(), 4)
        assert flags == 0b01, f"{pyc}: flags {flags:#b}"


# --- SAM -----------------------------------------------------------------------------------------------


def test_sam_build_packages_the_makefile_artifact(lambda_build: LambdaBuild) -> None:
    if not lambda_build.built_by_sam:
        missing_prerequisite("SAM CLI not installed: the Makefile target was run directly", "make sam-tools")
    built_template = load_template(lambda_build.build_dir / "template.yaml")
    functions = {
        name: resource["Properties"]
        for name, resource in built_template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert {"ApiFunction", "StreamFunction", "PartnerAuthorizerFunction"} <= set(functions)
    for name, function in functions.items():
        # Each function's own artifact, holding the module its handler names.
        assert function["CodeUri"] == name
        module = function["Handler"].rsplit(".", 1)[0].replace(".", "/")
        assert (lambda_build.build_dir / name / f"{module}.py").is_file(), name


def test_sam_validate_lint_passes() -> None:
    if not SAM.exists():
        missing_prerequisite("SAM CLI not installed", "make sam-tools")
    result = subprocess.run(
        [str(SAM), "validate", "--lint", "--template-file", str(ROOT / "template.yaml")],
        cwd=ROOT,
        env={**os.environ, **SAM_ENVIRONMENT},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
