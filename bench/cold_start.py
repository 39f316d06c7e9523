"""Cold start: a fresh interpreter imports a function's module and answers its first invocation through the
module's `handler`, as a new Lambda container does (init, then the first invocation). The child can also
record every outbound connection it opens (tests/test_cold_start_connections.py counts them)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runs in the fresh interpreter. Only json/sys/time are loaded before the clock starts: the Lambda runtime
# has parsed the event with json before it imports the handler module, too. Recording connections patches
# the socket class first (socket loads before the clock then; both measured modules alike).
_CHILD = """
import json, sys, time
module_name, event_file, result_file, record = sys.argv[1:5]
with open(event_file) as source:
    event = json.load(source)
connections = []
if record == "record":
    import socket
    _connect = socket.socket.connect
    def connect(self, address):
        connections.append("%s:%s" % tuple(address[:2]))
        return _connect(self, address)
    socket.socket.connect = connect

class Context:
    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    def get_remaining_time_in_millis(self):
        return 29000

started = time.perf_counter()
module = __import__(module_name)
imported = time.perf_counter()
try:
    status = module.handler(event, Context())["statusCode"]
except Exception as refused:  # a TOKEN authorizer refuses by raising (API Gateway's contract)
    status = "raised: %s" % refused
answered = time.perf_counter()
with open(result_file, "w") as sink:
    json.dump({"import": imported - started, "first": answered - imported, "status": status,
               "connections": connections}, sink)
"""


@dataclass(frozen=True)
class ColdStart:
    """Medians over fresh processes, in milliseconds, and what the last process answered and connected to."""

    module: str
    runs: int
    import_ms: float
    first_invocation_ms: float
    total_ms: float
    status: int | str
    connections: tuple[str, ...] = ()


def run_once(
    module: str,
    event_file: Path,
    environment: Mapping[str, str],
    cwd: Path,
    *,
    expect: int | str = 200,
    record_connections: bool = False,
) -> dict[str, Any]:
    """One fresh process: import `module`, invoke its handler with the event in `event_file`."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as result:
        result_file = Path(result.name)
    record = "record" if record_connections else "no"
    try:
        finished = subprocess.run(
            [sys.executable, "-c", _CHILD, module, str(event_file), str(result_file), record],
            env=dict(environment),
            cwd=cwd,
            # The app logs one JSON line per request: measured as in production, discarded here.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"cold start of {module} failed:\n{finished.stderr[-2000:]}")
        measured: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        result_file.unlink(missing_ok=True)
    if measured["status"] != expect:
        raise RuntimeError(
            f"{module}: answered {measured['status']!r}, not {expect!r}\n{finished.stderr[-2000:]}"
        )
    return measured


def measure_cold_starts(
    modules: list[str],
    event: dict[str, Any],
    environment: Mapping[str, str],
    *,
    runs: int = 9,
    cwd: Path | None = None,
    expect: Mapping[str, int | str] | None = None,
    events: Mapping[str, dict[str, Any]] | None = None,
    environments: Mapping[str, Mapping[str, str]] | None = None,
    record_connections: bool = False,
) -> dict[str, ColdStart]:
    """Median cold start of each module over `runs` fresh processes, runs interleaved between modules so
    that machine noise falls on all of them alike. Bytecode is compiled by one discarded run first.

    Per module (by name): `events` replaces `event`, `environments` `environment`, `expect` the expected
    answer (a status code, or "raised: <message>" for a handler that refuses by raising)."""
    # Bytecode as Lambda should have it: shipped, not compiled at init, so the child may write .pyc files.
    cwd = cwd or Path.cwd()
    with tempfile.TemporaryDirectory() as directory:
        event_files: dict[str, Path] = {}
        for module in modules:
            event_files[module] = Path(directory) / f"{module}.json"
            event_files[module].write_text(json.dumps((events or {}).get(module, event)))

        def once(module: str) -> dict[str, Any]:
            module_environment = (environments or {}).get(module, environment)
            return run_once(
                module,
                event_files[module],
                {k: v for k, v in module_environment.items() if k != "PYTHONDONTWRITEBYTECODE"},
                cwd,
                expect=(expect or {}).get(module, 200),
                record_connections=record_connections,
            )

        for module in modules:
            once(module)
        samples: dict[str, list[dict[str, Any]]] = {module: [] for module in modules}
        for _ in range(runs):
            for module in modules:
                samples[module].append(once(module))
    return {
        module: ColdStart(
            module=module,
            runs=runs,
            import_ms=statistics.median(s["import"] for s in measured) * 1000,
            first_invocation_ms=statistics.median(s["first"] for s in measured) * 1000,
            total_ms=statistics.median(s["import"] + s["first"] for s in measured) * 1000,
            status=measured[-1]["status"],
            connections=tuple(measured[-1]["connections"]),
        )
        for module, measured in samples.items()
    }


def child_environment(overrides: Mapping[str, str], python_path: list[Path]) -> dict[str, str]:
    """The parent's environment without anything pointing at real AWS, plus `overrides` and the path."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PYTHON"))}
    environment.update(overrides)
    environment["PYTHONPATH"] = os.pathsep.join(str(path) for path in python_path)
    return environment
