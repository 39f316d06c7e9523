"""Builds the Lambda artifact of ApiFunction without Docker: arm64/CPython 3.13 wheels from
requirements/lambda.txt, the app's source, and precompiled bytecode. `sam build` runs it through
src/Makefile; it can also be run directly:

    python3 tools/build_lambda.py ARTIFACTS_DIR
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The Lambda python3.13 runtime on arm64. pip picks wheels by these tags only (never by the machine that
# runs it), and only wheels: a source build here would compile for the build machine.
WHEEL_TARGET = [
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
]
RUNTIME_VERSION = (3, 13)
# Older pips check a wheel's Requires-Python against the Python running pip, not --python-version.
MINIMUM_PIP = (24, 2)
# `make sam-tools` installs a recent pip next to SAM; any other interpreter must bring its own.
TOOLS_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"

# Build-only files under src/ that must never reach the artifact.
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


def log(message: str) -> None:
    print(f"build_lambda: {message}", flush=True)


def run(command: list[str]) -> None:
    subprocess.run(command, check=True)  # noqa: S603 - argument lists built here, no shell


def pip_version(python: str) -> tuple[int, ...]:
    try:
        result = subprocess.run(  # noqa: S603
            [python, "-m", "pip", "--version"], check=True, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    # "pip 26.3 from ... (python 3.11)"
    return tuple(int(part) for part in result.stdout.split()[1].split(".")[:2] if part.isdigit())


def install_dependencies(python: str, requirements: Path, artifacts: Path) -> None:
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
            str(artifacts),
            "--requirement",
            str(requirements),
        ]
    )
    # Console scripts carry the build machine's interpreter in their shebang; nothing runs them in Lambda.
    shutil.rmtree(artifacts / "bin", ignore_errors=True)


def copy_source(source: Path, artifacts: Path) -> None:
    clashes = sorted(p.name for p in source.iterdir() if (artifacts / p.name).exists())
    if clashes:
        raise SystemExit(f"build_lambda: source and dependencies both provide {clashes}")
    shutil.copytree(source, artifacts, ignore=shutil.ignore_patterns(*SOURCE_EXCLUDES), dirs_exist_ok=True)


def find_runtime_python() -> str | None:
    """A CPython 3.13 interpreter that actually runs (a pyenv shim for an inactive version does not)."""
    candidates = [os.environ.get("LAMBDA_RUNTIME_PYTHON"), shutil.which("python3.13")]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13")), reverse=True
    )
    probe = f"import sys; sys.exit(sys.version_info[:2] != {RUNTIME_VERSION!r})"
    for candidate in filter(None, candidates):
        try:
            subprocess.run([candidate, "-c", probe], check=True, capture_output=True, timeout=30)  # noqa: S603
        except (OSError, subprocess.SubprocessError):
            continue
        return candidate
    return None


def compile_bytecode(artifacts: Path) -> bool:
    """Ship bytecode: /var/task is read-only, so without it every cold start compiles every module anew.

    Hash-based pycs, unchecked: `sam package` zips every file with the same 1980 timestamp, so the
    mtime a timestamp-based pyc records never matches and Python would ignore it. An unchecked pyc is
    used without reading the source at all, which is right for an artifact nobody edits in place.
    """
    python = find_runtime_python()
    if python is None:
        log("WARNING: no Python 3.13 found (python3.13, ~/.pyenv/versions/3.13*): shipping without bytecode")
        return False
    for pycache in artifacts.rglob("__pycache__"):
        shutil.rmtree(pycache)
    log(f"compiling bytecode with {python}")
    # -s/-p: record /var/task paths in tracebacks, and keep rebuilds byte-identical.
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
            str(artifacts),
            "-p",
            "/var/task",
            str(artifacts),
        ]
    )
    return True


def report(artifacts: Path) -> None:
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    pycs = sum(1 for p in files if p.suffix == ".pyc")
    log(f"{artifacts}: {len(files)} files, {size / 1e6:.1f} MB unpacked, {pycs} .pyc")


def build(artifacts: Path, *, source: Path, requirements: Path, python: str) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    if any(artifacts.iterdir()):
        raise SystemExit(f"build_lambda: {artifacts} is not empty; refusing to mix builds")
    install_dependencies(python, requirements, artifacts)
    copy_source(source, artifacts)
    compile_bytecode(artifacts)
    report(artifacts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts_dir", type=Path)
    parser.add_argument("--source", type=Path, default=ROOT / "src")
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements" / "lambda.txt")
    parser.add_argument(
        "--python",
        default=os.environ.get("LAMBDA_BUILD_PYTHON")
        or (str(TOOLS_PYTHON) if TOOLS_PYTHON.exists() else sys.executable),
        help="interpreter whose pip downloads the wheels (default: $LAMBDA_BUILD_PYTHON, .tools/sam, this one)",
    )
    args = parser.parse_args(argv)
    build(
        args.artifacts_dir.resolve(), source=args.source, requirements=args.requirements, python=args.python
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
