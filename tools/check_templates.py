"""Static checks of the CloudFormation templates: cfn-lint and checkov on every file given (`make
check-templates` gives template.yaml and templates/*.yaml).

Each failure is one line naming the file, the resource and the check, so that whoever added the resource
finds it at once:

    checkov   template.yaml  AWS::SQS::Queue.Jobs  CKV_AWS_27  Ensure all data stored in the SQS queue is encrypted

A check that does not apply to a resource is skipped in that resource's Metadata, with the reason:

    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_116
            comment: why it does not apply

    python3 tools/check_templates.py --cfn-lint PATH --checkov PATH TEMPLATE...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Offline: no download of Prisma Cloud's guidelines (unreachable here, and slow to give up on), and
# credential-free linting with a region.
CHECKOV_ENVIRONMENT = {"BC_SKIP_MAPPING": "TRUE", "CHECKOV_SKIP_VERSION_CHECK": "1", "LOG_LEVEL": "WARNING"}
CFN_LINT_ENVIRONMENT = {"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}


def cfn_lint_failures(cfn_lint: str, templates: list[str]) -> list[str]:
    """One line per finding: `cfn-lint  <file>:<line>  <rule>  <message>` (the message names the path,
    `Resources/<name>/...`)."""
    result = subprocess.run(  # noqa: S603 - an argument list, no shell
        [cfn_lint, "--format", "parseable", *templates],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **CFN_LINT_ENVIRONMENT},
    )
    lines = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 6)
        if len(parts) == 7:
            path, row, _column, _end_row, _end_column, rule, message = parts
            lines.append(f"cfn-lint  {path}:{row}  {rule}  {message}")
        elif line.strip():
            lines.append(f"cfn-lint  {line}")
    if result.returncode != 0 and not lines:
        lines.append(f"cfn-lint  exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return lines


def _checkov_reports(output: str) -> list[dict[str, Any]]:
    document = json.loads(output)
    reports = document if isinstance(document, list) else [document]
    # With nothing to check checkov prints a bare summary instead of a report.
    return [report for report in reports if isinstance(report, dict) and "results" in report]


def start_checkov(checkov: str, templates: list[str]) -> subprocess.Popen[str]:
    """checkov on every template, in the background: it takes most of the time, and cfn-lint can run beside it."""
    arguments = [checkov, "--framework", "cloudformation", "--quiet", "--compact", "--skip-download"]
    for template in templates:
        arguments += ["--file", template]
    return subprocess.Popen(  # noqa: S603 - an argument list, no shell
        [*arguments, "--output", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **CHECKOV_ENVIRONMENT},
    )


def checkov_failures(running: subprocess.Popen[str]) -> tuple[list[str], dict[str, int]]:
    """One line per failed check or file checkov could not parse, and the totals."""
    stdout, stderr = running.communicate()
    try:
        reports = _checkov_reports(stdout)
    except ValueError:
        return [f"checkov  exited {running.returncode} without a report: {stderr.strip()[-2000:]}"], {}
    lines: list[str] = []
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for report in reports:
        summary = report.get("summary", {})
        for key in totals:
            totals[key] += int(summary.get(key, 0))
        for path in summary.get("parsing_errors_list", []) or report["results"].get("parsing_errors", []):
            lines.append(f"checkov   {path}  could not be parsed")
        for check in report["results"].get("failed_checks", []):
            path = str(check.get("file_path", "")).lstrip("/")
            lines.append(
                f"checkov   {path}  {check['resource']}  {check['check_id']}  {check.get('check_name', '')}"
            )
    return lines, totals


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfn-lint", required=True)
    parser.add_argument("--checkov", required=True)
    parser.add_argument("templates", nargs="+")
    args = parser.parse_args()
    templates = [str(Path(template)) for template in args.templates]

    checkov = start_checkov(args.checkov, templates)
    failures = cfn_lint_failures(args.cfn_lint, templates)
    checkov_lines, totals = checkov_failures(checkov)
    failures += checkov_lines
    for line in failures:
        print(line)
    counts = ", ".join(f"{count} {name}" for name, count in totals.items())
    print(f"check_templates: {len(templates)} templates; checkov: {counts}; {len(failures)} failures")
    if failures:
        print(
            "check_templates: fix the resource, or skip a check that does not apply in the resource's "
            "Metadata (checkov: skip: [{id, comment}]) with the reason",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
