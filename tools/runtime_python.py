"""Finds a CPython interpreter of the Lambda runtime's version (3.13) on this machine, whatever HOME and the
shell's pyenv state: the build compiles the functions' bytecode with it and `make test` runs the suite with
it. Prints its path, or exits 1:

    python3 tools/runtime_python.py [--version 3.13]

Candidates, first that runs and reports the version wins: $LAMBDA_RUNTIME_PYTHON; pyenv's versions under
$PYENV_ROOT, the account's own home directory (from the password database, not $HOME), $HOME and the usual
system-wide roots; `uv python find`; python3.13 on PATH (a pyenv shim there works only for an active version,
which is why the shims come last).
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RUNTIME_VERSION = (3, 13)
MISSING_OUTSIDE_CI = 3
ROOT = Path(__file__).resolve().parent.parent
_PYENV_ROOTS_ELSEWHERE = ("/root/.pyenv", "/usr/local/pyenv", "/opt/pyenv", "/usr/local/share/pyenv")


def in_ci() -> bool:
    """CI=true (and any value but empty, 0, false, no), as tests/prerequisites.py reads it."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _account_home() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except (KeyError, OSError):
        return None


def _pyenv_roots() -> list[str]:
    roots = [os.environ.get("PYENV_ROOT")]
    roots += [os.path.join(home, ".pyenv") for home in (_account_home(), os.environ.get("HOME")) if home]
    roots += list(_PYENV_ROOTS_ELSEWHERE)
    unique: list[str] = []
    for root in roots:
        if root and root not in unique:
            unique.append(root)
    return unique


def _uv() -> str | None:
    bootstrapped = ROOT / ".tools" / "uv" / "bin" / "uv"
    return os.environ.get("UV") or (str(bootstrapped) if bootstrapped.exists() else shutil.which("uv"))


def _found_by_uv(version: str) -> str | None:
    uv = _uv()
    if uv is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [uv, "python", "find", "--no-project", version],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def candidates(version: tuple[int, int] = RUNTIME_VERSION) -> Iterator[str]:
    dotted = f"{version[0]}.{version[1]}"
    explicit = os.environ.get("LAMBDA_RUNTIME_PYTHON")
    if explicit:
        yield explicit
    for root in _pyenv_roots():
        # Newest patch release first.
        yield from sorted(glob.glob(f"{root}/versions/{dotted}*/bin/python{dotted}"), reverse=True)
    for prefix in ("/usr/local/bin", "/usr/bin", "/opt/python/bin"):
        yield f"{prefix}/python{dotted}"
    found = _found_by_uv(dotted)
    if found:
        yield found
    on_path = shutil.which(f"python{dotted}")
    if on_path:
        yield on_path


def runs_as(python: str, version: tuple[int, int]) -> bool:
    """Whether `python` starts and is CPython `version` (a pyenv shim of an inactive version fails here)."""
    probe = (
        f"import sys; sys.exit(sys.implementation.name != 'cpython' or sys.version_info[:2] != {version!r})"
    )
    try:
        subprocess.run([python, "-c", probe], check=True, capture_output=True, timeout=30)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def find_runtime_python(version: tuple[int, int] = RUNTIME_VERSION) -> str | None:
    """The first working interpreter of `version`, or None."""
    tried: set[str] = set()
    for candidate in candidates(version):
        if candidate in tried or not os.path.exists(candidate):
            continue
        tried.add(candidate)
        if runs_as(candidate, version):
            return candidate
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=".".join(map(str, RUNTIME_VERSION)))
    parser.add_argument(
        "--missing-ok-outside-ci",
        action="store_true",
        help=f"exit {MISSING_OUTSIDE_CI} (not 1) when none is found and CI is not set",
    )
    arguments = parser.parse_args(argv)
    major, minor = (int(part) for part in arguments.version.split("."))
    python = find_runtime_python((major, minor))
    if python is None:
        print(f"no working CPython {arguments.version} found (tools/runtime_python.py)", file=sys.stderr)
        return MISSING_OUTSIDE_CI if arguments.missing_ok_outside_ci and not in_ci() else 1
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
