"""template.yaml and templates/*.yaml on data protection: the app table as a regional or a global table
(ReplicaRegions) with everything that names it following, capacity (BillingMode), point-in-time recovery
and deletion protection everywhere, every store under the app key, the secret's rotation, backups, the
append-only audit trail, the data-events trail, and the static checks (checkov, cfn-lint) that name what
fails."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from models.audit import AUDIT_PARTITION, DEFAULT_RETENTION
from models.table import Gsi1, Gsi2, StratusItem
from services.api_keys import MAX_LIFETIME
from settings import Settings
from tests.cloudformation import NESTED_TEMPLATES, deployed, load_template
from tests.prerequisites import missing_prerequisite

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = load_template()
APP_KEY_ARN = {"Fn::GetAtt": ["AppKey", "Arn"]}
REPLICAS = "us-west-2,eu-west-1,ap-southeast-2"
TABLE_DECLARATIONS = {"AppTable", "AppGlobalTable"}
GSI_NAMES = sorted(index.Meta.index_name for index in (Gsi1, Gsi2))


def nested(name: str) -> dict[str, Any]:
    return load_template(ROOT / "templates" / name)


def references(value: Any) -> Iterator[str]:
    """Every logical id a value names (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            yield str(value["Ref"]).split(".", 1)[0]
        elif set(value) == {"Fn::GetAtt"}:
            yield str(value["Fn::GetAtt"][0])
        elif set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            yield from (name.split(".", 1)[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
        else:
            for item in value.values():
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


# --- Regional or global ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "declaration"),
    [({}, "AppTable"), ({"ReplicaRegions": "us-west-2"}, "AppGlobalTable")],
    ids=["regional", "global"],
)
def test_exactly_one_declaration_of_the_app_table_is_deployed_and_everything_names_it(
    overrides: dict[str, str], declaration: str
) -> None:
    resources = deployed(TEMPLATE, **overrides)
    assert TABLE_DECLARATIONS & set(resources) == {declaration}
    other = (TABLE_DECLARATIONS - {declaration}).pop()
    for name, resource in resources.items():
        assert other not in set(references(resource)), f"{name} names {other}, which is not deployed"
    globals_environment = json.dumps(TEMPLATE["Globals"]["Function"]["Environment"])
    assert "AppTable" in globals_environment
    assert "AppGlobalTable" in globals_environment


def test_both_declarations_have_the_models_keys_indexes_ttl_and_stream() -> None:
    regional = TEMPLATE["Resources"]["AppTable"]["Properties"]
    replicated = TEMPLATE["Resources"]["AppGlobalTable"]["Properties"]
    for key in ("AttributeDefinitions", "KeySchema", "TimeToLiveSpecification", "StreamSpecification"):
        assert regional[key] == replicated[key], key
    for regional_index, replicated_index in zip(
        regional["GlobalSecondaryIndexes"], replicated["GlobalSecondaryIndexes"], strict=True
    ):
        for key in ("IndexName", "KeySchema", "Projection"):
            assert regional_index[key] == replicated_index[key]
    assert [i["IndexName"] for i in regional["GlobalSecondaryIndexes"]] == GSI_NAMES
    assert replicated["StreamSpecification"]["StreamViewType"] == StratusItem.Meta.stream_view_type
    for name in TABLE_DECLARATIONS:
        assert TEMPLATE["Resources"][name]["DeletionPolicy"] == "Retain"
        assert TEMPLATE["Resources"][name]["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_replica_has_recovery_protection_and_a_key_of_its_region(count: int) -> None:
    regions = REPLICAS.split(",")[:count]
    table = deployed(TEMPLATE, ReplicaRegions=",".join(regions))["AppGlobalTable"]["Properties"]
    replicas = table["Replicas"]
    assert replicas[0]["Region"] == {"Ref": "AWS::Region"}
    assert len(replicas) == count + 1
    for index, replica in enumerate(replicas[1:]):
        assert replica["Region"] == {"Fn::Select": [index, {"Fn::Split": [",", {"Ref": "ReplicaRegions"}]}]}
    for replica in replicas:
        assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert replica["DeletionProtectionEnabled"] is True
        assert [index["IndexName"] for index in replica["GlobalSecondaryIndexes"]] == GSI_NAMES
    # A KMS key serves one region: this one's is the app key, the others' the alias made there.
    assert replicas[0]["SSESpecification"]["KMSMasterKeyId"] == APP_KEY_ARN
    for replica in replicas[1:]:
        assert replica["SSESpecification"]["KMSMasterKeyId"] == {"Fn::Sub": "alias/stratus-${Stage}"}
    assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS"}


def test_replica_regions_accept_up_to_three_region_names() -> None:
    pattern = re.compile(TEMPLATE["Parameters"]["ReplicaRegions"]["AllowedPattern"])
    for accepted in ("", "us-west-2", "us-west-2,eu-west-1", REPLICAS, "us-gov-west-1"):
        assert pattern.match(accepted), accepted
    for refused in ("us-west-2,", "US-WEST-2", "us-west-2 eu-west-1", f"{REPLICAS},eu-central-1"):
        assert not pattern.match(refused), refused


# --- Capacity -------------------------------------------------------------------------------------------


def _scaling(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"].startswith("AWS::ApplicationAutoScaling::")
    }


def test_on_demand_by_default_without_a_cap_or_scaling() -> None:
    resources = deployed(TEMPLATE)
    table = resources["AppTable"]["Properties"]
    assert TEMPLATE["Parameters"]["BillingMode"]["Default"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in table
    assert table["OnDemandThroughput"] == {}
    assert all("ProvisionedThroughput" not in index for index in table["GlobalSecondaryIndexes"])
    assert _scaling(resources) == {}


def test_on_demand_caps_the_table_and_every_index() -> None:
    table = deployed(TEMPLATE, OnDemandMaxReadRequestUnits="400", OnDemandMaxWriteRequestUnits="100")[
        "AppTable"
    ]
    cap = {
        "MaxReadRequestUnits": {"Ref": "OnDemandMaxReadRequestUnits"},
        "MaxWriteRequestUnits": {"Ref": "OnDemandMaxWriteRequestUnits"},
    }
    assert table["Properties"]["OnDemandThroughput"] == cap
    assert all(index["OnDemandThroughput"] == cap for index in table["Properties"]["GlobalSecondaryIndexes"])


def test_provisioned_capacity_scales_on_the_table_and_every_index() -> None:
    resources = deployed(TEMPLATE, BillingMode="PROVISIONED")
    table = resources["AppTable"]["Properties"]
    assert "OnDemandThroughput" not in table
    assert "ProvisionedThroughput" in table
    assert all("ProvisionedThroughput" in index for index in table["GlobalSecondaryIndexes"])
    scaling = _scaling(resources)
    targets = {
        (p["ResourceId"]["Fn::Sub"], p["ScalableDimension"])
        for p in scaling.values()
        if "ScalableDimension" in p
    }
    expected = {
        (resource_id, f"dynamodb:{kind}:{capacity}CapacityUnits")
        for resource_id, kind in [
            ("table/${AppTable}", "table"),
            *((f"table/${{AppTable}}/index/{name}", "index") for name in GSI_NAMES),
        ]
        for capacity in ("Read", "Write")
    }
    assert targets == expected
    policies = [p for p in scaling.values() if "PolicyType" in p]
    assert len(policies) == len(expected)
    for policy in policies:
        target = scaling[policy["ScalingTargetId"]["Ref"]]
        capacity = "Read" if "Read" in target["ScalableDimension"] else "Write"
        configuration = policy["TargetTrackingScalingPolicyConfiguration"]
        assert configuration["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
            f"DynamoDB{capacity}CapacityUtilization"
        )
        assert configuration["TargetValue"] == {"Ref": "AutoScalingTargetUtilization"}


def test_a_provisioned_global_table_scales_writes_per_table_and_reads_per_replica() -> None:
    resources = deployed(TEMPLATE, BillingMode="PROVISIONED", ReplicaRegions="us-west-2")
    table = resources["AppGlobalTable"]["Properties"]
    assert _scaling(resources) == {}
    assert "WriteCapacityAutoScalingSettings" in table["WriteProvisionedThroughputSettings"]
    for index in table["GlobalSecondaryIndexes"]:
        assert "WriteCapacityAutoScalingSettings" in index["WriteProvisionedThroughputSettings"]
    for replica in table["Replicas"]:
        assert "ReadCapacityAutoScalingSettings" in replica["ReadProvisionedThroughputSettings"]
        for index in replica["GlobalSecondaryIndexes"]:
            assert "ReadCapacityAutoScalingSettings" in index["ReadProvisionedThroughputSettings"]


# --- Recovery and protection ------------------------------------------------------------------------------


@pytest.mark.parametrize(("protection", "expected"), [("true", True), ("false", False)])
def test_every_table_has_point_in_time_recovery_and_deletion_protection_unless_told(
    protection: str, expected: bool
) -> None:
    assert TEMPLATE["Parameters"]["TableDeletionProtection"]["Default"] == "true"
    resources = deployed(TEMPLATE, TableDeletionProtection=protection)
    tables = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {"AppTable", "IdempotencyTable", "RateLimitTable"}
    # Rate-limit windows last an hour at most: nothing there is worth restoring or protecting.
    counters = tables.pop("RateLimitTable")
    assert "PointInTimeRecoverySpecification" not in counters
    assert "DeletionProtectionEnabled" not in counters
    for name, table in tables.items():
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert table["DeletionProtectionEnabled"] is expected, name


# --- Encryption -----------------------------------------------------------------------------------------


def test_every_store_of_the_stack_is_encrypted_with_the_app_key() -> None:
    resources = deployed(TEMPLATE, EnablePartnerTier="true", EnableDataEventsTrail="true")
    encryption_of = {
        "AWS::DynamoDB::Table": lambda p: p["SSESpecification"]["KMSMasterKeyId"],
        "AWS::SecretsManager::Secret": lambda p: p["KmsKeyId"],
        "AWS::SQS::Queue": lambda p: p["KmsMasterKeyId"],
        "AWS::SNS::Topic": lambda p: p["KmsMasterKeyId"],
        "AWS::Logs::LogGroup": lambda p: p["KmsKeyId"],
    }
    stores = {name: r for name, r in resources.items() if r["Type"] in encryption_of}
    assert {r["Type"] for r in stores.values()} == set(encryption_of)
    for name, store in stores.items():
        assert encryption_of[store["Type"]](store["Properties"]) == APP_KEY_ARN, name
    for name in ("Backups", "DataEventsTrail"):
        assert resources[name]["Properties"]["Parameters"]["KeyArn"] == APP_KEY_ARN
    vault = nested("backup.yaml")["Resources"]["BackupVault"]["Properties"]
    assert vault["EncryptionKeyArn"] == {"Ref": "KeyArn"}
    trail = nested("data-events-trail.yaml")["Resources"]
    assert trail["Trail"]["Properties"]["KMSKeyId"] == {"Ref": "KeyArn"}
    (rule,) = trail["TrailBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Ref": "KeyArn"},
    }


def _key_statement(sid: str) -> dict[str, Any]:
    statements = TEMPLATE["Resources"]["AppKey"]["Properties"]["KeyPolicy"]["Statement"]
    (statement,) = [s for s in statements if s.get("Sid") == sid]
    return statement


def test_cloudwatch_logs_may_use_the_key_for_this_stacks_log_groups_only() -> None:
    import fnmatch

    statement = _key_statement("CloudWatchLogsUsesKeyForStackLogGroups")
    assert statement["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    patterns = [p["Fn::Sub"] for p in statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]]
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    resources = deployed(TEMPLATE, EnablePartnerTier="true")
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            arn = prefix + resource["Properties"]["LogGroupName"]["Fn::Sub"]
            assert any(fnmatch.fnmatchcase(arn, pattern) for pattern in patterns), name
    assert not any(fnmatch.fnmatchcase(prefix + "/aws/lambda/someone-else", p) for p in patterns)


# --- Rotation -------------------------------------------------------------------------------------------


def test_the_secret_rotates_on_a_schedule_through_its_function() -> None:
    resources = TEMPLATE["Resources"]
    schedule = resources["AppSecretRotationSchedule"]["Properties"]
    assert schedule["SecretId"] == {"Ref": "AppSecret"}
    assert schedule["RotationLambdaARN"] == {"Fn::GetAtt": ["RotateAppSecretFunction", "Arn"]}
    assert schedule["RotationRules"] == {"AutomaticallyAfterDays": {"Ref": "SecretRotationDays"}}
    assert schedule["RotateImmediatelyOnUpdate"] is False
    assert TEMPLATE["Parameters"]["SecretRotationDays"]["Default"] == 30
    function = resources["RotateAppSecretFunction"]["Properties"]
    assert function["Handler"] == "functions.rotate_app_secret.handler"
    assert function["Environment"]["Variables"]["KEY_RETIREMENT_ROTATIONS"] == {
        "Ref": "SecretKeyRetirementRotations"
    }


def test_by_default_a_key_retires_after_the_longest_api_key_has_expired() -> None:
    parameters = TEMPLATE["Parameters"]
    kept_for = timedelta(
        days=parameters["SecretRotationDays"]["Default"]
        * parameters["SecretKeyRetirementRotations"]["Default"]
    )
    assert kept_for > MAX_LIFETIME


def test_the_rotation_function_reaches_the_secret_and_its_key_only() -> None:
    role = TEMPLATE["Resources"]["RotateAppSecretFunctionRole"]["Properties"]
    (policy,) = role["Policies"]
    targets = {
        json.dumps(statement["Resource"], sort_keys=True): statement
        for statement in policy["PolicyDocument"]["Statement"]
    }
    assert set(targets) == {
        json.dumps({"Fn::GetAtt": ["RotateAppSecretFunctionLogGroup", "Arn"]}),
        json.dumps({"Ref": "AppSecret"}),
        json.dumps(APP_KEY_ARN, sort_keys=True),
    }
    assert all(statement["Effect"] == "Allow" for statement in targets.values())
    key_use = targets[json.dumps(APP_KEY_ARN, sort_keys=True)]
    assert key_use["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"}}
    }
    # What the function calls, and nothing more.
    source = (ROOT / "src" / "functions" / "rotate_app_secret.py").read_text()
    called = {
        "secretsmanager:" + "".join(part.title() for part in name.split("_"))
        for name in ("describe_secret", "get_secret_value", "put_secret_value", "update_secret_version_stage")
    }
    assert all(
        f".{name}(" in source
        for name in ("describe_secret", "get_secret_value", "put_secret_value", "update_secret_version_stage")
    )
    assert set(targets[json.dumps({"Ref": "AppSecret"})]["Action"]) == called


def test_the_rotation_function_imports_only_boto3_and_the_keyring() -> None:
    tree = ast.parse((ROOT / "src" / "functions" / "rotate_app_secret.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    }
    assert imported - set(sys.stdlib_module_names) == {"boto3", "app_keyring"}
    keyring = ast.parse((ROOT / "src" / "app_keyring.py").read_text())
    keyring_imports = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(keyring)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert keyring_imports <= set(sys.stdlib_module_names) | {"__future__"}


# --- Audit trail ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"ReplicaRegions": "us-west-2"}], ids=["regional", "global"])
def test_the_app_may_add_to_the_audit_trail_but_never_change_or_remove_it(overrides: dict[str, str]) -> None:
    resources = deployed(TEMPLATE, **overrides)
    (policy,) = resources["ApiFunctionRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s.get("Sid") == "AuditTrailIsAppendOnly"]
    assert deny["Condition"] == {"ForAnyValue:StringEquals": {"dynamodb:LeadingKeys": [AUDIT_PARTITION]}}
    assert set(deny["Action"]) >= {
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete",
    }
    assert "dynamodb:PutItem" not in deny["Action"]
    table = "AppGlobalTable" if overrides else "AppTable"
    assert deny["Resource"] == {"Fn::GetAtt": [table, "Arn"]}
    (read_write,) = [s for s in statements if s.get("Sid") == "ReadWriteAppTable"]
    assert "dynamodb:PutItem" in read_write["Action"]


def test_audit_retention_is_a_parameter_the_app_reads() -> None:
    parameter = TEMPLATE["Parameters"]["AuditRetentionDays"]
    assert timedelta(days=parameter["Default"]) == DEFAULT_RETENTION
    assert Settings.model_fields["audit_retention_days"].default == parameter["Default"]
    variables = TEMPLATE["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["AUDIT_RETENTION_DAYS"] == {"Ref": "AuditRetentionDays"}


# --- Backups and the data-events trail ----------------------------------------------------------------------


def test_backups_cover_both_tables_daily_and_monthly_with_their_retention() -> None:
    for overrides, table in (({}, "AppTable"), ({"ReplicaRegions": "us-west-2"}, "AppGlobalTable")):
        backups = deployed(TEMPLATE, **overrides)["Backups"]["Properties"]
        assert backups["Location"] == "templates/backup.yaml"
        assert backups["Parameters"]["TableArns"] == {
            "Fn::Join": [",", [{"Fn::GetAtt": [table, "Arn"]}, {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}]]
        }
    backup = nested("backup.yaml")
    rules = {
        rule["RuleName"]: rule
        for rule in backup["Resources"]["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"]
    }
    assert set(rules) == {"daily", "monthly"}
    assert rules["daily"]["Lifecycle"]["DeleteAfterDays"] == {"Ref": "DailyRetentionDays"}
    assert rules["monthly"]["Lifecycle"]["DeleteAfterDays"] == {"Ref": "MonthlyRetentionDays"}
    assert rules["monthly"]["ScheduleExpression"] == "cron(0 5 1 * ? *)"
    selection = backup["Resources"]["TablesSelection"]["Properties"]["BackupSelection"]
    assert selection["Resources"] == {"Ref": "TableArns"}
    assert backup["Resources"]["BackupVault"]["DeletionPolicy"] == "Retain"
    parent = TEMPLATE["Resources"]["Backups"]["Properties"]["Parameters"]
    assert set(parent) == set(backup["Parameters"])


def test_backups_are_copied_only_when_a_vault_is_named() -> None:
    backup = nested("backup.yaml")
    for rule in backup["Resources"]["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"]:
        condition, copies, none = rule["CopyActions"]["Fn::If"]
        assert condition == "HasCopyVault"
        assert copies[0]["DestinationBackupVaultArn"] == {"Ref": "CopyVaultArn"}
        assert none == {"Ref": "AWS::NoValue"}
    assert backup["Conditions"]["HasCopyVault"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CopyVaultArn"}, ""]}]
    }


def test_the_data_events_trail_is_optional_and_records_the_tables_items() -> None:
    assert "DataEventsTrail" not in deployed(TEMPLATE)
    trail_stack = deployed(TEMPLATE, EnableDataEventsTrail="true")["DataEventsTrail"]["Properties"]
    assert trail_stack["Location"] == "templates/data-events-trail.yaml"
    trail = nested("data-events-trail.yaml")["Resources"]
    selectors = trail["Trail"]["Properties"]["AdvancedEventSelectors"]
    data = next(s for s in selectors if {"Field": "eventCategory", "Equals": ["Data"]} in s["FieldSelectors"])
    assert {"Field": "resources.type", "Equals": ["AWS::DynamoDB::Table"]} in data["FieldSelectors"]
    assert {"Field": "resources.ARN", "Equals": {"Ref": "TableArns"}} in data["FieldSelectors"]
    # The key policy admits the trail by the name it is given.
    name = trail["Trail"]["Properties"]["TrailName"]["Fn::Sub"].replace("${NamePrefix}", "${AWS::StackName}")
    admitted = _key_statement("DataEventsTrailEncryptsLogFiles")["Condition"]["StringEquals"]["aws:SourceArn"]
    assert admitted["Fn::Sub"].endswith(f":trail/{name}")
    public = trail["TrailBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert all(public.values())


# --- Static checks --------------------------------------------------------------------------------------


def test_every_template_file_is_checked() -> None:
    makefile = (ROOT / "mk" / "checks.mk").read_text()
    assert "TEMPLATES := template.yaml $(sort $(wildcard templates/*.yaml))" in makefile
    assert sorted((ROOT / "templates").glob("*.yaml")) == NESTED_TEMPLATES
    assert {path.name for path in NESTED_TEMPLATES} >= {"backup.yaml", "data-events-trail.yaml"}


def test_every_skipped_check_says_why() -> None:
    for path in [ROOT / "template.yaml", *NESTED_TEMPLATES]:
        for name, resource in load_template(path)["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert skip["id"].startswith(("CKV_", "CKV2_")), (path.name, name)
                assert len(skip.get("comment", "")) > 20, f"{path.name} {name} {skip['id']}: no reason given"


@pytest.mark.slow
def test_a_failed_check_names_the_file_the_resource_and_the_check(tmp_path: Path) -> None:
    cfn_lint = ROOT / ".tools" / "sam" / "bin" / "cfn-lint"
    checkov = ROOT / ".tools" / "checkov" / "bin" / "checkov"
    if not (cfn_lint.exists() and checkov.exists()):
        missing_prerequisite("cfn-lint or checkov is not installed", "make sam-tools checkov-tools")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "AWSTemplateFormatVersion: '2010-09-09'\n"
        "Resources:\n"
        "  Jobs:\n"
        "    Type: AWS::SQS::Queue\n"
        "    Properties:\n"
        "      SqsManagedSseEnabled: false\n"
        "      MessageRetentionPeriod: 10\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "tools/check_templates.py",
            "--cfn-lint",
            str(cfn_lint),
            "--checkov",
            str(checkov),
            str(bad),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ},
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(
        line.startswith("checkov")
        and "bad.yaml" in line
        and "AWS::SQS::Queue.Jobs" in line
        and "CKV_AWS_27" in line
        for line in result.stdout.splitlines()
    ), result.stdout
    assert "checkov: skip" in result.stderr
