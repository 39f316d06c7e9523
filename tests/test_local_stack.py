"""`make dev` and `make token` as a user runs them: the stack comes up, serves /docs and the demo users'
tokens, stops everything on Ctrl-C, and starts again cleanly after a crash."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from local.resources import aws_client
from local.standin import HOST, port_is_free

ROOT = Path(__file__).resolve().parent.parent


def free_ports(count: int) -> list[int]:
    """Ports free right now and distinct from each other: every probe stays bound until all are chosen
    (a port released at once may well be the next one handed out)."""
    with contextlib.ExitStack() as probes:
        ports = []
        for _ in range(count):
            probe = probes.enter_context(socket.socket())
            probe.bind((HOST, 0))
            ports.append(int(probe.getsockname()[1]))
        return ports


def free_port() -> int:
    (port,) = free_ports(1)
    return port


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def descendants_of(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        found += [child, *descendants_of(child)]
    return found


def wait_until(condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _clean_environment(extra: dict[str, str]) -> dict[str, str]:
    # A developer's shell: no SDK endpoint overrides (the stack sets its own), and no make variables
    # inherited from the `make test` that runs this suite.
    env = {**os.environ, **extra}
    for key in [
        k for k in env if k.startswith("AWS_ENDPOINT_URL") or k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    ]:
        del env[key]
    return env


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DevStack:
    """`make dev` (through make, as a developer types it) or `python -m local.dev` (to kill it alone)."""

    def __init__(self, api_port: int, aws_port: int, state_dir: Path, *, via_make: bool = False) -> None:
        self.api_port = api_port
        self.aws_port = aws_port
        self.state_dir = state_dir
        self.via_make = via_make
        self.env = {"PYTHONPATH": "src:.", "STRATUS_LOCAL_DIR": str(state_dir)}
        env = _clean_environment({**self.env, "PORT": str(api_port), "AWS_PORT": str(aws_port)})
        command = ["make", "-s", "dev"] if via_make else [sys.executable, "-m", "local.dev"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As a terminal starts a foreground command: Ctrl-C interrupts it even when this suite itself
            # was started with SIGINT ignored (in the background of a shell without job control, say).
            preexec_fn=_interruptible,  # noqa: PLW1509 - only resets a signal, safe before exec
        )
        self.base = f"http://{HOST}:{api_port}"
        # Read what the stack prints as it prints it: a pipe nobody reads fills (64 KiB) after a few hundred
        # requests' log lines, and the server then blocks on its next write, answering nothing.
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.append(line)

    def output(self) -> str:
        """Everything the stack printed; call once it has exited for all of it."""
        if self.process.poll() is not None:
            self._reader.join(timeout=10)
        return "".join(self._lines)

    def wait_or_kill(self, timeout: float) -> None:
        """Waits for the stack to exit; if it does not, kills everything it started (so that a failing
        test leaves no stack behind) and lets the timeout fail the test."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def up(self) -> bool:
        try:
            httpx.get(f"{self.base}/health", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def token(self, who: str) -> subprocess.CompletedProcess[str]:
        command = (
            ["make", "-s", "token", f"as={who}"]
            if self.via_make
            else [sys.executable, "-m", "local.token", who]
        )
        return subprocess.run(
            command,
            cwd=ROOT,
            env=_clean_environment(self.env),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    pytest.mark.slow,
]


@pytest.fixture
def ports(tmp_path: Path) -> tuple[int, int, Path]:
    api_port, aws_port = free_ports(2)
    return api_port, aws_port, tmp_path


def test_make_dev_serves_docs_and_demo_tokens_and_ctrl_c_stops_everything(
    ports: tuple[int, int, Path],
) -> None:
    stack = DevStack(*ports, via_make=True)
    try:
        assert wait_until(stack.ready), "make dev did not become ready"
        docs = httpx.get(f"{stack.base}/docs")
        assert docs.status_code == 200
        assert "swagger-ui-bundle.js" in docs.text
        token = stack.token("bob")
        assert token.returncode == 0, token.stderr
        lines = token.stdout.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].count(".") == 2
        claims = json.loads(_b64(lines[0].split(".")[1]))
        assert claims["token_use"] == "access"
        assert stack.token("mallory").returncode != 0
        # The docs page's origin is the chosen port's: its preflights pass CORS.
        preflight = httpx.options(
            f"{stack.base}/projects",
            headers={"Origin": stack.base, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200, preflight.text
        # A second `make dev` in this checkout refuses at once and leaves the running stack alone.
        second = subprocess.run(
            [sys.executable, "-m", "local.dev"],
            cwd=ROOT,
            env=_clean_environment({**stack.env, "PORT": str(free_port())}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stderr
        assert "already runs" in second.stderr
        assert "Traceback" not in second.stderr
        assert stack.token("alice").returncode == 0
        # Elsewhere, a stand-in port that is taken is one line, not a traceback.
        elsewhere = subprocess.run(
            [sys.executable, "-m", "local.dev"],
            cwd=ROOT,
            env=_clean_environment(
                {
                    **stack.env,
                    "STRATUS_LOCAL_DIR": str(stack.state_dir / "other"),
                    "PORT": str(free_port()),
                    "AWS_PORT": str(stack.aws_port),
                }
            ),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert elsewhere.returncode == 1, elsewhere.stderr
        assert f"port {stack.aws_port}" in elsewhere.stderr
        assert "Traceback" not in elsewhere.stderr
        standin_pid = next(pid for pid in descendants_of(stack.process.pid) if "standin" in _cmdline(pid))
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group: make and what it started.
        os.killpg(stack.process.pid, signal.SIGINT)
        stack.wait_or_kill(timeout=30)
    assert wait_until(lambda: not Path(f"/proc/{standin_pid}").exists(), 15)
    assert wait_until(lambda: not stack.up(), 15)
    assert not (stack.state_dir / "stack.json").exists()


def test_a_port_whose_server_stopped_is_free_though_its_connections_linger() -> None:
    """A stopped server's connections stay in TIME_WAIT for up to a minute; the servers bind through them
    (SO_REUSEADDR), so the check before starting must too: a restarted `make dev` once refused its own
    stand-in's port for that minute. Only a listener holds a port."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST, 0))
    server.listen()
    port = int(server.getsockname()[1])
    client = socket.create_connection((HOST, port))
    accepted, _ = server.accept()
    assert not port_is_free(port)
    accepted.close()  # the server's side closes first: its end of the connection goes to TIME_WAIT
    time.sleep(0.1)
    client.close()
    server.close()
    with socket.socket() as strict, pytest.raises(OSError):
        strict.bind((HOST, port))  # the lingering connection, as a probe without SO_REUSEADDR sees it
    assert port_is_free(port)


def test_a_crashed_dev_leaves_nothing_behind_and_restarts(ports: tuple[int, int, Path]) -> None:
    first = DevStack(*ports)
    assert wait_until(first.ready), "make dev did not become ready"
    first.process.kill()  # no cleanup code runs: children must notice on their own
    first.process.wait(timeout=10)
    assert wait_until(lambda: not first.up(), 20), "the API outlived its parent"
    second = DevStack(*ports)
    try:
        assert wait_until(second.ready), second.output() if second.process.poll() else "not ready"
    finally:
        second.process.send_signal(signal.SIGINT)
        second.wait_or_kill(timeout=30)


def test_make_dev_runs_the_stream_consumer_so_the_feed_and_the_purge_work_locally(
    ports: tuple[int, int, Path],
) -> None:
    stack = DevStack(*ports)
    try:
        assert wait_until(stack.ready, 120), "make dev did not become ready"
        token = stack.token("alice")
        assert token.returncode == 0, token.stderr
        alice = {"Authorization": f"Bearer {token.stdout.strip()}"}
        api = httpx.Client(base_url=stack.base, headers=alice, timeout=10)

        def activity(project_id: str) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = api.get(f"/projects/{project_id}/activity").json()["items"]
            return items

        # The seed's own history: the project created, bob added, four tasks.
        (demo,) = api.get("/projects").json()["items"]
        assert wait_until(lambda: len(activity(demo["id"])) == 6, 60), activity(demo["id"])
        task = api.get(f"/projects/{demo['id']}/tasks").json()["items"][0]
        assert api.patch(f"/tasks/{task['id']}", json={"priority": "urgent"}).status_code == 200
        assert wait_until(lambda: activity(demo["id"])[0]["action"] == "task.updated", 30)
        assert activity(demo["id"])[0]["changes"][0]["field"] == "priority"

        # A deleted project's tasks are purged by the consumer, as deployed.
        doomed = api.post("/projects", json={"name": "Doomed"}).json()["id"]
        for title in ("a", "b", "c"):
            assert api.post(f"/projects/{doomed}/tasks", json={"title": title}).status_code == 201
        assert api.delete(f"/projects/{doomed}").status_code == 204
        resources = json.loads((stack.state_dir / "stack.json").read_text())
        dynamodb = aws_client("dynamodb", resources["endpoint"])

        def partition() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = dynamodb.query(
                TableName=resources["table_name"],
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"PROJECT#{doomed}"}},
            )["Items"]
            return items

        assert wait_until(lambda: partition() == [], 60), partition()
        poller_pid = next(
            pid for pid in descendants_of(stack.process.pid) if "stream_poller" in _cmdline(pid)
        )
    finally:
        os.killpg(stack.process.pid, signal.SIGINT)
        stack.wait_or_kill(timeout=30)
    assert wait_until(lambda: not Path(f"/proc/{poller_pid}").exists(), 15)
    output = stack.output()
    assert "Traceback" not in output, output


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
