"""Cold start: a fresh interpreter imports an app module and answers its first `GET /health` through the
module's `handler`, as a new Lambda container does (init, then the first invocation)."""

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
# has parsed the event with json before it imports the handler module, too.
_CHILD = """
import json, sys, time
module_name, event_file, result_file = sys.argv[1:4]
with open(event_file) as source:
    event = json.load(source)

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
response = module.handler(event, Context())
answered = time.perf_counter()
with open(result_file, "w") as sink:
    json.dump({"import": imported - started, "first": answered - imported, "status": response["statusCode"]}, sink)
"""


@dataclass(frozen=True)
class ColdStart:
    """Medians over fresh processes, in milliseconds."""

    module: str
    runs: int
    import_ms: float
    first_invocation_ms: float
    total_ms: float


def _run_once(module: str, event_file: Path, environment: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as result:
        result_file = Path(result.name)
    try:
        finished = subprocess.run(
            [sys.executable, "-c", _CHILD, module, str(event_file), str(result_file)],
            env=dict(environment),
            cwd=cwd,
            # The app logs one JSON line per request: measured as in production, discarded here.
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"cold start of {module} failed:\n{finished.stderr[-2000:]}")
        measured: dict[str, Any] = json.loads(result_file.read_text())
    finally:
        result_file.unlink(missing_ok=True)
    if measured["status"] != 200:
        raise RuntimeError(f"{module}: GET /health answered {measured['status']}")
    return measured


def measure_cold_starts(
    modules: list[str],
    event: dict[str, Any],
    environment: Mapping[str, str],
    *,
    runs: int = 9,
    cwd: Path | None = None,
) -> dict[str, ColdStart]:
    """Median cold start of each module over `runs` fresh processes, runs interleaved between modules so
    that machine noise falls on all of them alike. Bytecode is compiled by one discarded run first."""
    # Bytecode as Lambda should have it: shipped, not compiled at init, so the child may write .pyc files.
    environment = {key: value for key, value in environment.items() if key != "PYTHONDONTWRITEBYTECODE"}
    cwd = cwd or Path.cwd()
    with tempfile.TemporaryDirectory() as directory:
        event_file = Path(directory) / "event.json"
        event_file.write_text(json.dumps(event))
        for module in modules:
            _run_once(module, event_file, environment, cwd)
        samples: dict[str, list[dict[str, Any]]] = {module: [] for module in modules}
        for _ in range(runs):
            for module in modules:
                samples[module].append(_run_once(module, event_file, environment, cwd))
    return {
        module: ColdStart(
            module=module,
            runs=runs,
            import_ms=statistics.median(s["import"] for s in measured) * 1000,
            first_invocation_ms=statistics.median(s["first"] for s in measured) * 1000,
            total_ms=statistics.median(s["import"] + s["first"] for s in measured) * 1000,
        )
        for module, measured in samples.items()
    }


def child_environment(overrides: Mapping[str, str], python_path: list[Path]) -> dict[str, str]:
    """The parent's environment without anything pointing at real AWS, plus `overrides` and the path."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PYTHON"))}
    environment.update(overrides)
    environment["PYTHONPATH"] = os.pathsep.join(str(path) for path in python_path)
    return environment
