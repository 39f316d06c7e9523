"""Runs the AWS stand-in (moto in server mode) on 127.0.0.1 until its parent process goes away.

`python -m local.standin --port 0 --parent-pid PID` prints `READY <port>` once it accepts connections.
Watching the parent means a crashed `make dev` or test run never leaves a stand-in holding the port.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HOST = "127.0.0.1"
_PARENT_POLL_SECONDS = 0.5


def _parent_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return os.getppid() == pid


class OneDynamoDbCallAtATime:
    """WSGI middleware that lets one DynamoDB (or DynamoDB Streams) call run at a time.

    DynamoDB applies every single operation and every transaction atomically. moto serves each request on
    its own thread without a lock: two transactions can both pass their conditions before either writes,
    two ADD updates can lose an increment, and a refused transaction restores whole tables, undoing
    writes that other threads made meanwhile. Serializing the DynamoDB calls gives the stand-in the
    atomicity the app relies on; the other services keep serving concurrently.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self._app(environ, start_response)
        with self._lock:
            # The whole body is produced under the lock: a lazy body could still be reading the tables.
            return list(self._app(environ, start_response))


def stop_tracking_model_instances() -> None:
    """moto keeps every model object it ever creates in a list on its class, for its /moto-api dashboard,
    including the copy of each table (stream included) that every TransactWriteItems takes to roll back
    with. The stand-in then holds a table once more for every transaction on it: memory grows with the
    square of the writes (gigabytes over the test suite) and every full garbage collection walks all of
    it, stalling the DynamoDB calls of whatever runs meanwhile for seconds. Nothing here uses the
    dashboard."""
    from moto.core.common_models import BaseModel

    def untracked(cls: type[BaseModel], *args: Any, **kwargs: Any) -> BaseModel:
        instance: BaseModel = super(BaseModel, cls).__new__(cls)
        return instance

    BaseModel.__new__ = staticmethod(untracked)  # type: ignore[method-assign]


def roll_back_transactions_item_by_item() -> None:
    """moto undoes a cancelled TransactWriteItems by restoring a deep copy of every table it names, taken
    before each transaction: each transaction costs time in proportion to the whole table and its stream
    (seconds for a few thousand items, past the app's read timeout). This takes copies of the items the
    transaction names instead, and on cancellation puts them back and drops the stream records it added:
    the same outcome at the cost of the transaction's own items. moto's own code still runs every
    condition and write."""
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    class TablesByReference:
        """`copy` as moto's transaction code sees it: a table is "copied" as itself (and not restored by
        moto); everything else is copied as usual."""

        def deepcopy(self, value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        snapshot = _TransactionSnapshot.take(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            snapshot.restore()
            raise

    setattr(dynamodb_models, "copy", TablesByReference())  # noqa: B010 - not an attribute moto exports
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


@dataclass
class _TransactionSnapshot:
    """The items a transaction names, as they were before it, and how long each table's stream was."""

    items: list[tuple[Any, Any, Any, Any]]
    streams: dict[str, tuple[Any, int]]

    @classmethod
    def take(cls, backend: Any, transact_items: list[dict[str, Any]]) -> _TransactionSnapshot:
        snapshot = cls([], {})
        for entry in transact_items:
            for operation in entry.values():
                table = backend.tables.get(operation.get("TableName", ""))
                if table is None:
                    continue
                try:
                    hash_key, range_key = backend.get_keys_value(
                        table, operation.get("Item") or operation.get("Key") or {}
                    )
                except Exception:  # noqa: S112 - moto's own code reports the malformed request
                    continue
                item = copy.deepcopy(table.get_item(hash_key, range_key))
                snapshot.items.append((table, hash_key, range_key, item))
                if table.stream_shard is not None:
                    snapshot.streams.setdefault(table.name, (table, len(table.stream_shard.items)))
        return snapshot

    def restore(self) -> None:
        for table, hash_key, range_key, item in reversed(self.items):
            if range_key is None:
                if item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item
            elif item is None:
                table.items[hash_key].pop(range_key, None)
            else:
                table.items[hash_key][range_key] = item
        for table, length in self.streams.values():
            del table.stream_shard.items[length:]


# Reads whose answers are only items in DynamoDB JSON (and counts and keys).
_PLAIN_JSON_READS = frozenset({"GetItem", "BatchGetItem", "Query"})


# How long DynamoDB remembers a TransactWriteItems' ClientRequestToken.
CLIENT_REQUEST_TOKEN_SECONDS = 600


def honour_client_request_tokens() -> None:
    """DynamoDB applies a TransactWriteItems at most once per ClientRequestToken (for ten minutes): the same
    call again succeeds without writing, the same token with other items is refused. botocore fills the
    token in once per call, so its retries carry the same one, and a retry after a read timeout whose first
    attempt did land succeeds as on AWS. moto ignores the token: there, such a retry failed its own
    conditions (a created project answered as a refused write under load)."""
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
    from moto.dynamodb.responses import DynamoHandler

    class IdempotentParameterMismatch(DynamodbException):
        def __init__(self) -> None:
            super().__init__(
                ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                message="The ClientRequestToken was used with other parameters within ten minutes.",
            )

    transact = DynamoHandler.transact_write_items
    # token -> (when it was applied, the items it applied, the answer); calls run one at a time.
    applied: dict[str, tuple[float, str, Any]] = {}

    def once_per_token(self: DynamoHandler) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return transact(self)
        now = time.monotonic()
        for expired in [
            key for key, (at, _, _) in applied.items() if now - at > CLIENT_REQUEST_TOKEN_SECONDS
        ]:
            del applied[expired]
        items = json.dumps(self.body.get("TransactItems"), sort_keys=True)
        earlier = applied.get(token)
        if earlier is not None:
            if earlier[1] != items:
                raise IdempotentParameterMismatch()
            return earlier[2]
        answer = transact(self)
        applied[token] = (now, items, answer)
        return answer

    DynamoHandler.transact_write_items = once_per_token  # type: ignore[method-assign]


def answer_reads_as_plain_json() -> None:
    """moto writes every answer through its generic, model-driven serializer: about 5 ms per item read
    and 25 ms per stream record on this machine, so one Query page of 250 items took 2 s (near the app's
    read timeout) and reading a purge's thousand stream records half a minute. Items and stream records
    are DynamoDB JSON already: these reads are answered with json.dumps, the same document (errors still
    go through moto's serializer)."""
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    serialized = DynamoHandler.serialized

    def plain_reads(self: DynamoHandler, result: Any) -> Any:
        if self._get_action() not in _PLAIN_JSON_READS or isinstance(result.result, Exception):
            return serialized(self, result)
        document = {name: value for name, value in (result.result or {}).items() if value is not None}
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
        return 200, headers, dynamo_json_dump(document)

    DynamoHandler.serialized = plain_reads  # type: ignore[method-assign, assignment]

    def epoch_seconds(value: object) -> float:
        if isinstance(value, datetime):
            return value.timestamp()
        raise TypeError(f"not JSON: {type(value).__name__}")

    def get_records(self: DynamoDBStreamsHandler) -> str:
        limit = self._get_param("Limit") or 1000
        answer = self.backend.get_records(self._get_param("ShardIterator"), limit)
        return json.dumps(answer, default=epoch_seconds)

    DynamoDBStreamsHandler.get_records = get_records  # type: ignore[assignment, method-assign]


def serve(port: int, parent_pid: int | None) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    stop_tracking_model_instances()
    roll_back_transactions_item_by_item()
    honour_client_request_tokens()
    answer_reads_as_plain_json()
    app = OneDynamoDbCallAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server(HOST, port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="standin", daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    while not stop and (parent_pid is None or _parent_alive(parent_pid)):
        time.sleep(_PARENT_POLL_SECONDS)
    # Everything lives in memory and dies with the process: no graceful shutdown to wait for (werkzeug's
    # would wait on idle keep-alive connections).
    os._exit(0)


def port_is_free(port: int, wait_seconds: float = 0.0) -> bool:
    """Whether `port` can be bound; waits up to `wait_seconds` for a process that is exiting to let go."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers bind (werkzeug and uvicorn set SO_REUSEADDR): connections of a stopped server
            # left in TIME_WAIT, for up to a minute, do not hold the port; only a listener does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                pass
            else:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@dataclass
class StandIn:
    """A running stand-in process; `endpoint` is what AWS_ENDPOINT_URL should be."""

    process: subprocess.Popen[str]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    def start(cls, port: int = 0, *, log_file: Path | None = None, timeout_seconds: float = 30) -> StandIn:
        # A stand-in orphaned by a crash notices within a second that its parent is gone: wait for it.
        if port and not port_is_free(port, wait_seconds=5):
            raise RuntimeError(f"port {port} on {HOST} is in use; choose another with AWS_PORT=")
        stderr = log_file.open("a") if log_file else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "local.standin", "--port", str(port), "--parent-pid", str(os.getpid())],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + timeout_seconds
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("READY "):
                return cls(process=process, port=int(line.split()[1]))
            if not line and process.poll() is not None:
                break
        process.kill()
        raise RuntimeError("the AWS stand-in did not start; see its log")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process.stdout:
            with contextlib.suppress(OSError):
                self.process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args()
    serve(args.port, args.parent_pid)


if __name__ == "__main__":
    main()
