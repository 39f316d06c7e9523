"""Builds the Lambda artifacts without Docker: `sam build` runs it through src/Makefile (one artifact per
function: the app's code) and requirements/Makefile (DependenciesLayer: every dependency, shared by all the
functions and uploaded once). Both ship precompiled python3.13 bytecode. It can also be run directly:

    python3 tools/build_lambda.py ARTIFACTS_DIR            # a function: src/ and its bytecode
    python3 tools/build_lambda.py --layer ARTIFACTS_DIR    # the layer: arm64/CPython 3.13 wheels under python/

The layer keeps botocore's service data only for the services the code creates clients for (services_used):
the rest is most of botocore's 30 MB and of every cold start's unzipping.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_python import RUNTIME_VERSION, find_runtime_python, in_ci

ROOT = Path(__file__).resolve().parent.parent

# The Lambda python3.13 runtime on arm64. pip picks wheels by these tags only (never by the machine that
# runs it), and only wheels: a source build here would compile for the build machine.
WHEEL_TARGET = [
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    ".".join(map(str, RUNTIME_VERSION)),
    "--only-binary=:all:",
]
# Older pips check a wheel's Requires-Python against the Python running pip, not --python-version.
MINIMUM_PIP = (24, 2)
# `make sam-tools` installs a recent pip next to SAM; any other interpreter must bring its own.
TOOLS_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"

# Where Lambda puts each artifact: a function's code in /var/task, a layer's python/ in /opt/python.
FUNCTION_ROOT = "/var/task"
LAYER_ROOT = "/opt/python"

# Build-only files under src/ that must never reach an artifact.
SOURCE_EXCLUDES = (
    "Makefile",
    "__pycache__",
    "*.pyc",
    "tests",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".DS_Store",
)

# Clients the libraries create on the code's behalf, recognised by what the code calls (a pattern over the
# source) and named by their botocore service.
LIBRARY_CLIENTS = {
    r"\bfrom pynamodb\b|\bimport pynamodb\b": "dynamodb",
    r"\bDynamoDBPersistenceLayer\b": "dynamodb",
    r"\bget_secrets?\(|\bSecretsProvider\b": "secretsmanager",
    r"\bget_parameters?\(|\bget_parameters_by_name\(|\bSSMProvider\b": "ssm",
    r"\bget_app_config\(|\bAppConfigProvider\b": "appconfigdata",
}
# Clients named in the code: boto3.client("x"), session.create_client("x"), boto3.resource("x").
_NAMED_CLIENT = re.compile(r"""\b(?:client|create_client|resource)\(\s*["']([a-z0-9-]+)["']""")
# Kept whatever the code says: botocore's credential providers call STS for assume-role and web-identity
# profiles (not Lambda's own credentials, but a local `sam local invoke` with a profile).
ALWAYS_KEPT_SERVICES = frozenset({"sts"})


def log(message: str) -> None:
    print(f"build_lambda: {message}", flush=True)


def run(command: list[str]) -> None:
    subprocess.run(command, check=True)  # noqa: S603 - argument lists built here, no shell


def services_used(source: Path) -> dict[str, set[str]]:
    """Every AWS service the code creates a client for, directly or through a library, with the files
    that do (a test loads each one's client from the built layer)."""
    used: dict[str, set[str]] = {}
    for path in sorted(source.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text()
        found = set(_NAMED_CLIENT.findall(text))
        found |= {service for pattern, service in LIBRARY_CLIENTS.items() if re.search(pattern, text)}
        for service in found:
            used.setdefault(service, set()).add(path.relative_to(source).as_posix())
    return used


def pip_version(python: str) -> tuple[int, ...]:
    try:
        result = subprocess.run(  # noqa: S603
            [python, "-m", "pip", "--version"], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    # "pip 26.3 from ... (python 3.11)"
    return tuple(int(part) for part in result.stdout.split()[1].split(".")[:2] if part.isdigit())


def install_dependencies(python: str, requirements: Path, target: Path) -> None:
    version = pip_version(python)
    if version < MINIMUM_PIP:
        found = f"pip {'.'.join(map(str, version))}" if version else "no pip"
        raise SystemExit(
            f"build_lambda: {python} has {found}; cross-platform installs need pip >= "
            f"{'.'.join(map(str, MINIMUM_PIP))}: run `make sam-tools` or pass --python"
        )
    # --no-deps: the file is the complete, marker-resolved lock; letting pip resolve again would evaluate
    # dependency markers for the build machine's Python. --no-compile: pip would write bytecode for its
    # own Python version, which the runtime ignores.
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--no-compile",
            *WHEEL_TARGET,
            "--target",
            str(target),
            "--requirement",
            str(requirements),
        ]
    )
    # Console scripts carry the build machine's interpreter in their shebang; nothing runs them in Lambda.
    shutil.rmtree(target / "bin", ignore_errors=True)


def trim_botocore_data(target: Path, keep: Iterable[str]) -> list[str]:
    """Removes botocore's data for every service not in `keep`; returns the services removed. The data's
    own top-level files (endpoints, partitions, retry and default configuration) all stay."""
    data = target / "botocore" / "data"
    if not data.is_dir():
        raise SystemExit(f"build_lambda: {data} is missing: is botocore in the requirements?")
    kept = set(keep) | ALWAYS_KEPT_SERVICES
    unknown = sorted(service for service in kept if not (data / service).is_dir())
    if unknown:
        raise SystemExit(f"build_lambda: the code uses services botocore does not know: {unknown}")
    removed = sorted(entry.name for entry in data.iterdir() if entry.is_dir() and entry.name not in kept)
    for service in removed:
        shutil.rmtree(data / service)
    return removed


def copy_source(source: Path, artifacts: Path) -> None:
    shutil.copytree(source, artifacts, ignore=shutil.ignore_patterns(*SOURCE_EXCLUDES), dirs_exist_ok=True)


def compile_bytecode(tree: Path, runtime_path: str) -> bool:
    """Ship bytecode: Lambda's code directories are read-only, so without it every cold start compiles
    every module anew.

    Hash-based pycs, unchecked: `sam package` zips every file with the same 1980 timestamp, so the
    mtime a timestamp-based pyc records never matches and Python would ignore it. An unchecked pyc is
    used without reading the source at all, which is right for an artifact nobody edits in place.

    Without a Python 3.13 the build ships no bytecode and says so; in CI (CI=true) it fails instead.
    """
    python = find_runtime_python()
    if python is None:
        message = (
            "no Python 3.13 found (see tools/runtime_python.py, or set LAMBDA_RUNTIME_PYTHON): "
            "the artifact would ship without bytecode and every cold start would compile it"
        )
        if in_ci():
            raise SystemExit(f"build_lambda: {message}")
        log(f"WARNING: {message}")
        return False
    for pycache in tree.rglob("__pycache__"):
        shutil.rmtree(pycache)
    log(f"compiling bytecode with {python}")
    # -s/-p: record the runtime's paths in tracebacks, and keep rebuilds byte-identical.
    run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(tree),
            "-p",
            runtime_path,
            str(tree),
        ]
    )
    return True


def report(artifacts: Path) -> None:
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    pycs = sum(1 for p in files if p.suffix == ".pyc")
    log(f"{artifacts}: {len(files)} files, {size / 1e6:.1f} MB unpacked, {pycs} .pyc")


def _empty_directory(artifacts: Path) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    if any(artifacts.iterdir()):
        raise SystemExit(f"build_lambda: {artifacts} is not empty; refusing to mix builds")


def build_function(artifacts: Path, *, source: Path) -> None:
    """A function's artifact: the app's code only (its dependencies come from DependenciesLayer)."""
    _empty_directory(artifacts)
    copy_source(source, artifacts)
    compile_bytecode(artifacts, FUNCTION_ROOT)
    report(artifacts)


def listed_services(path: Path) -> set[str]:
    """The services of an aws-services.txt: one a line, `#` comments."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def build_layer(artifacts: Path, *, source: Path, requirements: Path, services: Path, python: str) -> None:
    """The dependencies layer: every wheel of requirements/lambda.txt under python/, botocore's data trimmed
    to the services listed in `services`."""
    _empty_directory(artifacts)
    target = artifacts / "python"
    install_dependencies(python, requirements, target)
    clashes = sorted(p.name for p in source.iterdir() if (target / p.name).exists())
    if clashes:
        raise SystemExit(f"build_lambda: source and dependencies both provide {clashes}")
    kept = listed_services(services)
    removed = trim_botocore_data(target, kept)
    log(f"botocore data kept for {sorted(kept | ALWAYS_KEPT_SERVICES)}; {len(removed)} services removed")
    compile_bytecode(target, LAYER_ROOT)
    report(artifacts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts_dir", type=Path, nargs="?")
    parser.add_argument("--layer", action="store_true", help="build the dependencies layer")
    parser.add_argument(
        "--services", action="store_true", help="print the AWS services src/ creates clients for"
    )
    parser.add_argument("--source", type=Path, default=ROOT / "src")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements" / "lambda.txt")
    parser.add_argument("--aws-services", type=Path, default=ROOT / "requirements" / "aws-services.txt")
    parser.add_argument(
        "--python",
        default=os.environ.get("LAMBDA_BUILD_PYTHON")
        or (str(TOOLS_PYTHON) if TOOLS_PYTHON.exists() else sys.executable),
        help="interpreter whose pip downloads the wheels (default: $LAMBDA_BUILD_PYTHON, .tools/sam, this one)",
    )
    args = parser.parse_args(argv)
    if args.services:
        for service, files in sorted(services_used(args.source).items()):
            print(f"{service}\t{', '.join(sorted(files))}")
        return 0
    if args.artifacts_dir is None:
        parser.error("ARTIFACTS_DIR is required")
    artifacts = args.artifacts_dir.resolve()
    if args.layer:
        build_layer(
            artifacts,
            source=args.source,
            requirements=args.requirements,
            services=args.aws_services,
            python=args.python,
        )
    else:
        build_function(artifacts, source=args.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
