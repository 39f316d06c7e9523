"""SnapStart's runtime hooks (src/runtime_hooks.py): registered only when Lambda initialises for a snapshot;
before it, the request path is primed with no client, connection or fetch; after each restore, a copy has
its own randomness, drops the per-container clients and forgets the JWKS fetch times of the container that
took the snapshot."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import runtime_hooks
from tests.runtime_environment import standin_signing_keys

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Stands in for Lambda's snapshot_restore_py: records what registers, runs it on request.
FAKE_SNAPSHOT_RESTORE = """
before, after = [], []
def register_before_snapshot(function, *args, **kwargs):
    before.append((function, args, kwargs))
def register_after_restore(function, *args, **kwargs):
    after.append((function, args, kwargs))
"""

LIFECYCLE = """
import json, random, socket, sys
connections = []
_connect = socket.socket.connect
def connect(self, address):
    connections.append(str(address))
    return _connect(self, address)
socket.socket.connect = connect
import botocore.client
clients = []
_init = botocore.client.BaseClient.__init__
def init(self, *args, **kwargs):
    clients.append(type(self).__name__)
    _init(self, *args, **kwargs)
botocore.client.BaseClient.__init__ = init

import main, snapshot_restore_py
deferred = main.app.state.deferred_routes
registered = {"before": len(snapshot_restore_py.before), "after": len(snapshot_restore_py.after)}
installed_at_init = deferred.installed
while snapshot_restore_py.before:  # as the runtime runs them: last registered first
    function, args, kwargs = snapshot_restore_py.before.pop()
    function(*args, **kwargs)
primed = {name: name in sys.modules for name in ("jose.jwt", "botocore.session", "pynamodb.models",
                                                 "models.project", "routers.projects")}
keys_constructed = len(main.app.state.token_verifier.signing_keys._keys)
snapshot = random.getstate()
draws = []
for _ in range(2):  # two copies restored from one snapshot
    random.setstate(snapshot)
    for function, args, kwargs in snapshot_restore_py.after:
        function(*args, **kwargs)
    draws.append(random.random())
random.setstate(snapshot)
without_hooks = [random.random()]
random.setstate(snapshot)
without_hooks.append(random.random())
print(json.dumps({
    "registered": registered, "installed_at_init": installed_at_init, "installed": deferred.installed,
    "primed": primed, "keys_constructed": keys_constructed, "clients": clients,
    "connections": connections, "draws": draws, "without_hooks": without_hooks,
}))
"""


def _run(tmp_path: Path, environment: dict[str, str]) -> dict[str, Any]:
    (tmp_path / "snapshot_restore_py.py").write_text(FAKE_SNAPSHOT_RESTORE)
    result = subprocess.run(
        [sys.executable, "-c", LIFECYCLE],
        cwd=SRC,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]),
            "STAGE": "dev",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "COGNITO_USER_POOL_ID": "us-east-1_snap",
            "COGNITO_JWKS": standin_signing_keys().shipped,
            "COGNITO_JWKS_URL": "http://127.0.0.1:9/jwks.json",
            "ACCESS_LOG": "false",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@pytest.fixture(scope="module")
def snapstart_lifecycle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("snapstart"), {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"})


def test_hooks_register_in_a_snapstart_initialisation_only(
    snapstart_lifecycle: dict[str, Any], tmp_path: Path
) -> None:
    assert snapstart_lifecycle["registered"] == {"before": 1, "after": 1}
    on_demand = _run(tmp_path, {"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"})
    assert on_demand["registered"] == {"before": 0, "after": 0}
    # Without the hooks nothing is primed: an on-demand cold start stays as lean as it was.
    assert on_demand["installed"] is False


def test_the_snapshot_holds_the_primed_request_path(snapstart_lifecycle: dict[str, Any]) -> None:
    assert snapstart_lifecycle["installed_at_init"] is False
    assert snapstart_lifecycle["installed"] is True
    assert all(snapstart_lifecycle["primed"].values()), snapstart_lifecycle["primed"]
    assert snapstart_lifecycle["keys_constructed"] == 1


def test_priming_creates_no_client_and_opens_no_connection(snapstart_lifecycle: dict[str, Any]) -> None:
    # A snapshot must not hold credentials or sockets that every restored copy would share.
    assert snapstart_lifecycle["clients"] == []
    assert snapstart_lifecycle["connections"] == []


def test_each_restored_copy_draws_its_own_random_numbers(snapstart_lifecycle: dict[str, Any]) -> None:
    first, second = snapstart_lifecycle["without_hooks"]
    assert first == second, "copies of one snapshot share random's state"
    first, second = snapstart_lifecycle["draws"]
    assert first != second


def test_a_restore_drops_the_per_container_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    import directory
    import idempotency
    import models
    from models.table import table_models

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    directory._cognito()
    idempotency._persistence("stratus-test-idempotency")
    models.profile.UserProfile._get_connection()
    from aws_lambda_powertools.utilities.parameters import base

    base.DEFAULT_PROVIDERS["secrets"] = object()
    assert directory._cognito.cache_info().currsize == 1

    class App:
        class state:  # noqa: N801 - shaped like FastAPI's app.state
            class token_verifier:  # noqa: N801
                class signing_keys:  # noqa: N801
                    restarted = False

                    @classmethod
                    def restart_timers(cls) -> None:
                        cls.restarted = True

    runtime_hooks.refresh_after_restore(App)  # type: ignore[arg-type]
    assert directory._cognito.cache_info().currsize == 0
    assert idempotency._persistence.cache_info().currsize == 0
    assert all(model._connection is None for model in table_models())
    assert base.DEFAULT_PROVIDERS == {}
    assert App.state.token_verifier.signing_keys.restarted


def _cached_client_makers(path: Path) -> set[str]:
    """Functions of `path` behind a functools cache whose body makes an AWS client."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef):
            continue
        decorators = {ast.unparse(decorator).split("(")[0] for decorator in node.decorator_list}
        if not decorators & {"cache", "lru_cache", "functools.cache", "functools.lru_cache"}:
            continue
        body = ast.unparse(node)
        if any(
            marker in body for marker in (".client(", "create_client(", "PersistenceLayer(", ".resource(")
        ):
            found.add(node.name)
    return found


def test_every_cached_client_is_dropped_after_a_restore() -> None:
    cached = {
        f"{path.relative_to(SRC).with_suffix('').as_posix().replace('/', '.')}.{name}"
        for path in SRC.rglob("*.py")
        for name in _cached_client_makers(path)
    }
    assert "directory._cognito" in cached  # the scan finds them at all
    assert cached == set(runtime_hooks.CLIENT_CACHES)


def test_priming_imports_what_the_code_imports_on_first_use() -> None:
    modules = runtime_hooks.modules_imported_on_first_use()
    assert {"jose.jwt", "botocore.session", "routers.projects", "services.api_keys"} <= modules
    # Other functions' entry points do their work when imported: never primed.
    assert not {name for name in modules if name.split(".")[0] in {"stream", "partner_authorizer", "main"}}


def test_outside_lambda_register_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    monkeypatch.delitem(sys.modules, "snapshot_restore_py", raising=False)
    # snapshot_restore_py exists only in Lambda's runtime: a warning, no hooks, no failure.
    assert runtime_hooks.register(object()) is False  # type: ignore[arg-type]
