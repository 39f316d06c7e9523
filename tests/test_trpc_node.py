"""The Node tests of clients/typescript (the real @trpc/client v11 with httpLink, httpBatchLink and
httpBatchStreamLink, and openapi-fetch) against the local stack as `make dev` runs it, on free ports."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prerequisites import missing_prerequisite
from tests.test_local_stack import DevStack, free_ports, wait_until

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "clients" / "typescript"
# Low enough for a batch to exceed it; the tests' other calls mint three keys as alice, none as bob.
EXPENSIVE_PER_MINUTE = 5

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the dev stack reads /proc"),
    pytest.mark.slow,
]


def _compile_tests() -> None:
    tsc = CLIENTS / "node_modules" / ".bin" / "tsc"
    if shutil.which("node") is None or not tsc.exists():
        missing_prerequisite(
            "node or the TypeScript clients' packages are missing",
            "install Node 20+, then make clients-install",
        )
    # Emit only: `make typescript` type-checks the same files.
    subprocess.run(
        [str(tsc), "-p", "tsconfig.tests.json", "--noCheck"],
        cwd=CLIENTS,
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_the_typescript_clients_work_against_the_dev_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compile_tests()
    monkeypatch.setenv("RATE_LIMIT_EXPENSIVE", f"{EXPENSIVE_PER_MINUTE}/minute")
    # Three tours of every procedure write more than the default budget allows in a minute.
    monkeypatch.setenv("RATE_LIMIT_WRITE", "600/minute")
    api_port, aws_port = free_ports(2)
    stack = DevStack(api_port, aws_port, tmp_path)
    try:
        assert wait_until(stack.ready, 120), "the dev stack did not become ready"
        tokens = {who: stack.token(who) for who in ("alice", "bob")}
        for who, token in tokens.items():
            assert token.returncode == 0, f"{who}: {token.stderr}"
        tests = sorted(
            str(path.relative_to(CLIENTS)) for path in (CLIENTS / "build" / "test").glob("*.test.js")
        )
        assert tests == ["build/test/openapi.test.js", "build/test/trpc.test.js"]
        result = subprocess.run(
            ["node", "--test", *tests],
            cwd=CLIENTS,
            env={
                **os.environ,
                "STRATUS_URL": stack.base,
                "STRATUS_TOKEN_ALICE": tokens["alice"].stdout.strip(),
                "STRATUS_TOKEN_BOB": tokens["bob"].stdout.strip(),
                "STRATUS_EXPENSIVE_LIMIT": str(EXPENSIVE_PER_MINUTE),
            },
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        os.killpg(stack.process.pid, signal.SIGINT)
        stack.wait_or_kill(timeout=30)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", report, re.MULTILINE)
    assert passed, report
    assert int(passed.group(1)) >= 17, report
    assert re.search(r"^# fail 0$", report, re.MULTILINE), report
