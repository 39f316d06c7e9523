"""Derives requirements/lambda.txt from uv.lock: the runtime dependencies only, pinned, with every
environment marker decided for the Lambda runtime (CPython 3.13 on Linux arm64).

pip evaluates markers against the interpreter that runs it, not against `--python-version`/`--platform`,
so a cross build fed raw markers would install what the build machine's Python needs. Deciding them here
makes the file say exactly what ships.

    python tools/lambda_requirements.py [--uv PATH] [--output requirements/lambda.txt | --check]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_REQUIREMENTS = ROOT / "requirements" / "lambda.txt"

# The Lambda python3.13 runtime on arm64 (Amazon Linux 2023). The patch level is the lowest one: no
# dependency is expected to need a later 3.13.x.
LAMBDA_ENVIRONMENT = {
    "implementation_name": "cpython",
    "implementation_version": "3.13.0",
    "os_name": "posix",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.13.0",
    "python_version": "3.13",
    "sys_platform": "linux",
    "extra": "",
}

HEADER = (
    "# Runtime dependencies of the Lambda artifact (python3.13, arm64), derived from uv.lock.\n"
    "# Do not edit: regenerate with `make lambda-requirements`.\n"
)

EXPORT_ARGS = [
    "export",
    "--frozen",
    "--no-dev",
    "--no-hashes",
    "--no-emit-project",
    "--no-header",
    "--no-annotate",
]


def find_uv() -> str | None:
    """The uv to run: $UV (the Makefile exports its own), else the one on PATH."""
    return os.environ.get("UV") or shutil.which("uv")


def export_lock(uv: str) -> str:
    """`uv export` of the runtime dependency set, markers still unresolved."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [uv, *EXPORT_ARGS], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


def resolve_markers(exported: str) -> list[str]:
    """The pins whose markers hold on Lambda, markers removed, in uv's (name) order."""
    pins: list[str] = []
    for raw in exported.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(LAMBDA_ENVIRONMENT):
            continue
        pins.append(requirement.strip())
    return pins


def render(uv: str) -> str:
    """The exact text requirements/lambda.txt must have."""
    return HEADER + "".join(f"{pin}\n" for pin in resolve_markers(export_lock(uv)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uv", default=find_uv(), help="uv executable (default: $UV, then PATH)")
    parser.add_argument("--output", type=Path, default=LAMBDA_REQUIREMENTS)
    parser.add_argument("--check", action="store_true", help="fail if the file is not up to date")
    args = parser.parse_args(argv)
    if not args.uv:
        parser.error("uv not found: pass --uv or set UV")
    expected = render(args.uv)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != expected:
            print(
                f"{args.output} is out of date with uv.lock: run `make lambda-requirements`", file=sys.stderr
            )
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
