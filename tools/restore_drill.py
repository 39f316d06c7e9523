"""Restore drill: proves that a table can be brought back to how it was before a mistake.

It writes canary items (partition DRILL#<run id>), notes the moment, makes the mistake (overwrites some,
deletes others), restores the table into a new one as it was at that moment, checks that the restored
table holds the canaries as they were and the live one as they are, then removes the restored table, the
canaries and its own backup. Two ways to restore, as in docs/operations.md ("Restore drill"):

- pitr: point-in-time recovery (RestoreTableToPointInTime at the noted moment);
- backup: an on-demand backup taken at that moment (CreateBackup, RestoreTableFromBackup); AWS Backup's
  daily and monthly recovery points restore the same way (`aws backup start-restore-job`).

    python -m tools.restore_drill --table <TableName output> [--method pitr|backup] [--keep]   # AWS
    python -m tools.restore_drill --standin      # make restore-drill: a fresh stand-in, both methods

What the stand-in (moto) cannot do, and the drill therefore does not check there: it restores a point in
time as the table is at the call, not as it was at the requested moment (the restored content is not
compared for pitr); it has no AWS Backup jobs or recovery points (backup uses DynamoDB's own on-demand
backups, which it snapshots faithfully); it does not wait (restores are instant), and it never reports a
latest restorable time behind the present.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Method = Literal["pitr", "backup"]
CANARIES = 5
# Overwritten by the mistake; the rest are deleted by it.
OVERWRITTEN = 3
# A restore takes minutes on AWS (more for big tables); PITR's latest restorable time trails by ~5 minutes.
RESTORE_TIMEOUT_SECONDS = 3600
POLL_SECONDS = 15


@dataclass
class DrillReport:
    method: Method
    table: str
    run_id: str
    restored_table: str = ""
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        lines = [f"restore drill ({self.method}) of {self.table} into {self.restored_table}: {verdict}"]
        lines += [f"  checked: {line}" for line in self.checked]
        lines += [f"  PROBLEM: {line}" for line in self.problems]
        lines += [f"  not checked: {line}" for line in self.not_checked]
        return lines


def canary_key(run_id: str, index: int) -> dict[str, Any]:
    return {"pk": {"S": f"DRILL#{run_id}"}, "sk": {"S": f"CANARY#{index}"}}


def write_canaries(dynamodb: Any, table: str, run_id: str) -> None:
    # TTL removes what a drill that dies midway leaves behind.
    expires_at = str(int((datetime.now(UTC) + timedelta(days=1)).timestamp()))
    for index in range(CANARIES):
        item = {**canary_key(run_id, index), "value": {"S": "before"}, "expires_at": {"N": expires_at}}
        dynamodb.put_item(TableName=table, Item=item)


def make_the_mistake(dynamodb: Any, table: str, run_id: str) -> None:
    for index in range(CANARIES):
        key = canary_key(run_id, index)
        if index < OVERWRITTEN:
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #value = :after",
                ExpressionAttributeNames={"#value": "value"},
                ExpressionAttributeValues={":after": {"S": "after"}},
            )
        else:
            dynamodb.delete_item(TableName=table, Key=key)


def canaries(dynamodb: Any, table: str, run_id: str) -> dict[str, str]:
    """sk -> value of the canaries in `table` (consistent read)."""
    response = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"DRILL#{run_id}"}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item["value"]["S"] for item in response["Items"]}


def check_restored(restored: dict[str, str], live: dict[str, str]) -> list[str]:
    """What is wrong with the restored and the live canaries (nothing when the restore undid the mistake)."""
    problems = []
    expected_restored = {f"CANARY#{index}": "before" for index in range(CANARIES)}
    if restored != expected_restored:
        problems.append(
            f"the restored table holds {restored}, not the canaries as written {expected_restored}"
        )
    return problems + check_live(live)


def check_live(live: dict[str, str]) -> list[str]:
    """What is wrong with the live table's canaries after the mistake (the restore must leave it alone)."""
    expected_live = {f"CANARY#{index}": "after" for index in range(OVERWRITTEN)}
    if live != expected_live:
        return [f"the live table holds {live}, not the canaries after the mistake {expected_live}"]
    return []


def _wait(what: str, done: Callable[[], bool], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_seconds:.0f} s")
        time.sleep(POLL_SECONDS)


def _table_active(dynamodb: Any, table: str) -> Callable[[], bool]:
    return lambda: dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def _indexes(description: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(
        (index["IndexName"], index["KeySchema"]) for index in description.get("GlobalSecondaryIndexes", [])
    )


def _take_backup(dynamodb: Any, table: str, run_id: str) -> str:
    arn: str = dynamodb.create_backup(TableName=table, BackupName=f"drill-{run_id}")["BackupDetails"][
        "BackupArn"
    ]

    def available() -> bool:
        described = dynamodb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]
        return bool(described["BackupStatus"] == "AVAILABLE")

    _wait("the backup", available, RESTORE_TIMEOUT_SECONDS)
    return arn


def _wait_for_recovery_point(dynamodb: Any, table: str, moment: datetime) -> None:
    """PITR restores up to its latest restorable time, which trails the present by about five minutes."""

    def reached() -> bool:
        described = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        latest = described["PointInTimeRecoveryDescription"].get("LatestRestorableDateTime")
        return latest is not None and latest >= moment

    _wait("point-in-time recovery reaching the drill's moment", reached, RESTORE_TIMEOUT_SECONDS)


def _verify(dynamodb: Any, report: DrillReport, run_id: str, *, standin: bool) -> None:
    source = dynamodb.describe_table(TableName=report.table)["Table"]
    restored = dynamodb.describe_table(TableName=report.restored_table)["Table"]
    if restored["KeySchema"] == source["KeySchema"] and _indexes(restored) == _indexes(source):
        report.checked.append("the restored table has the source's keys and indexes")
    else:
        report.problems.append("the restored table's keys or indexes differ from the source's")
    live = canaries(dynamodb, report.table, run_id)
    if standin and report.method == "pitr":
        report.not_checked.append(
            "the restored canaries: the stand-in restores a point in time as the table is at the call"
        )
        report.problems += check_live(live)
        return
    problems = check_restored(canaries(dynamodb, report.restored_table, run_id), live)
    report.problems += problems
    if not problems:
        report.checked.append("the restored table holds every canary as written, the live one the mistake")


def run_drill(
    dynamodb: Any, table: str, method: Method, *, standin: bool = False, keep: bool = False
) -> DrillReport:
    """One drill; `standin`: skip what the stand-in cannot do (and say so in the report)."""
    run_id = uuid.uuid4().hex[:12]
    report = DrillReport(method=method, table=table, run_id=run_id, restored_table=f"{table}-drill-{run_id}")
    backup_arn = None
    write_canaries(dynamodb, table, run_id)
    try:
        # A restore to a moment after the canaries' writes must hold them.
        moment = datetime.now(UTC) + timedelta(seconds=0 if standin else 1)
        if method == "backup":
            backup_arn = _take_backup(dynamodb, table, run_id)
        elif standin:
            report.not_checked.append("waiting for the latest restorable time: the stand-in never moves it")
        else:
            time.sleep(1)
            _wait_for_recovery_point(dynamodb, table, moment)
        make_the_mistake(dynamodb, table, run_id)
        if backup_arn is not None:
            dynamodb.restore_table_from_backup(TargetTableName=report.restored_table, BackupArn=backup_arn)
        else:
            dynamodb.restore_table_to_point_in_time(
                SourceTableName=table,
                TargetTableName=report.restored_table,
                RestoreDateTime=moment,
                BillingModeOverride="PAY_PER_REQUEST",
            )
        _wait("the restore", _table_active(dynamodb, report.restored_table), RESTORE_TIMEOUT_SECONDS)
        _verify(dynamodb, report, run_id, standin=standin)
        report.not_checked.append(
            "TTL, the stream, point-in-time recovery, deletion protection, auto scaling and tags: restores "
            "do not carry them (docs/operations.md lists what to set on a table put into service)"
        )
    finally:
        for index in range(CANARIES):
            dynamodb.delete_item(TableName=table, Key=canary_key(run_id, index))
        if not keep:
            with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
                dynamodb.delete_table(TableName=report.restored_table)
        if backup_arn is not None:
            dynamodb.delete_backup(BackupArn=backup_arn)
    return report


def _standin_drills() -> list[DrillReport]:
    from local.resources import aws_client, create_table
    from local.standin import StandIn

    standin = StandIn.start(0)
    try:
        name = f"stratus-drill-{uuid.uuid4().hex[:8]}"
        create_table(standin.endpoint, name)
        dynamodb = aws_client("dynamodb", standin.endpoint)
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
        return [run_drill(dynamodb, name, method, standin=True) for method in ("backup", "pitr")]
    finally:
        standin.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--table", help="the deployed table (stack output TableName); needs AWS credentials")
    target.add_argument("--standin", action="store_true", help="a fresh local stand-in, both methods")
    parser.add_argument("--method", choices=["pitr", "backup"], default="pitr")
    parser.add_argument("--region", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the restored table to look at it")
    args = parser.parse_args()
    if args.standin:
        reports = _standin_drills()
    else:
        import boto3

        reports = [
            run_drill(
                boto3.client("dynamodb", region_name=args.region), args.table, args.method, keep=args.keep
            )
        ]
    for report in reports:
        print("\n".join(report.lines()))
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
