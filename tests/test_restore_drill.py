"""The restore drill (tools/restore_drill.py, `make restore-drill`) on the stand-in: a backup restore brings
the canaries back as they were before the mistake, the drill fails when the restored or the live table is
not what it should be, and it says what the stand-in cannot check for point-in-time recovery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from local.resources import LocalResources, aws_client
from tools import restore_drill
from tools.restore_drill import check_restored, run_drill

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dynamodb(aws_resources: LocalResources):  # type: ignore[no-untyped-def]
    client = aws_client("dynamodb", aws_resources.endpoint)
    client.update_continuous_backups(
        TableName=aws_resources.table_name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    return client


def _tables(dynamodb) -> set[str]:  # type: ignore[no-untyped-def]
    return set(dynamodb.list_tables()["TableNames"])


def test_a_backup_restore_brings_back_what_the_mistake_changed(
    dynamodb, aws_resources: LocalResources
) -> None:  # type: ignore[no-untyped-def]
    before = _tables(dynamodb)
    report = run_drill(dynamodb, aws_resources.table_name, "backup", standin=True)
    assert report.passed, report.lines()
    assert "the restored table holds every canary as written, the live one the mistake" in report.checked
    assert "the restored table has the source's keys and indexes" in report.checked
    # The drill leaves nothing behind: no restored table, no backup, no canary.
    assert _tables(dynamodb) == before
    assert dynamodb.list_backups(TableName=aws_resources.table_name)["BackupSummaries"] == []
    assert restore_drill.canaries(dynamodb, aws_resources.table_name, report.run_id) == {}


def test_the_drill_fails_when_the_live_table_was_not_changed_as_it_should_be(
    dynamodb,
    aws_resources: LocalResources,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setattr(restore_drill, "make_the_mistake", lambda *_: None)
    report = run_drill(dynamodb, aws_resources.table_name, "backup", standin=True)
    assert not report.passed
    assert any("the live table holds" in problem for problem in report.problems)


def test_a_restore_that_did_not_undo_the_mistake_is_a_problem() -> None:
    after = {f"CANARY#{index}": "after" for index in range(restore_drill.OVERWRITTEN)}
    (problem,) = check_restored(after, after)
    assert problem.startswith("the restored table holds")
    assert check_restored({f"CANARY#{i}": "before" for i in range(restore_drill.CANARIES)}, after) == []


def test_a_point_in_time_drill_on_the_standin_says_what_it_cannot_check(
    dynamodb,
    aws_resources: LocalResources,  # type: ignore[no-untyped-def]
) -> None:
    report = run_drill(dynamodb, aws_resources.table_name, "pitr", standin=True)
    assert report.passed, report.lines()
    assert "the restored table has the source's keys and indexes" in report.checked
    assert any("as the table is at the call" in line for line in report.not_checked)
    assert any("never moves it" in line for line in report.not_checked)


def test_make_restore_drill_runs_both_methods_on_a_fresh_standin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.restore_drill", "--standin"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "restore drill (backup)" in result.stdout
    assert "restore drill (pitr)" in result.stdout
