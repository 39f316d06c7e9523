"""template.yaml against the code it deploys: the table matches the PynamoDB models, the function matches
the build and the settings, the gateway lets through exactly the app's public routes, the identity setup
issues tokens the app accepts, optional protections exist only when enabled, IAM stays least-privilege,
and requirements/lambda.txt matches uv.lock."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore import xform_name
from local.resources import LocalResources, aws_client
from pynamodb.attributes import TTLAttribute
from starlette.routing import Mount, Route

import gateway
import models
from auth import APP_SCOPES
from main import create_app
from models.table import StratusItem, table_models
from observability import REQUEST_LINE_METRICS
from settings import Settings
from tests.cloudformation import (
    decide_conditions,
    deployed,
    evaluate_condition,
    function_properties,
    load_template,
)
from tests.prerequisites import missing_prerequisite

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
LAMBDA_REQUIREMENTS = ROOT / "requirements" / "lambda.txt"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"

ANY = "x-amazon-apigateway-any-method"
PUBLIC_PAGES = {"/health", "/health/ready", "/docs", "/docs/{proxy+}", "/redoc", "/openapi.json"}
# What API Gateway lets through without a token: the app's public pages and every CORS preflight.
PUBLIC_OPERATIONS = {
    ("/", "get"),
    ("/", "options"),
    ("/{proxy+}", "options"),
    *((path, method) for path in PUBLIC_PAGES for method in ("get", "options")),
}
# Everything else reaches the app through these, behind the Cognito authorizer when it is on.
GATED_OPERATIONS = {("/", ANY), ("/{proxy+}", ANY)}
# The partner entry point (EnablePartnerTier=true): the app again, behind the partner authorizer.
PARTNER_OPERATIONS = {("/partner", ANY), ("/partner/{proxy+}", ANY)}
# Scopes the gateway accepts: the API's own (hosted UI and machine tokens) and SRP sign-in's.
GATEWAY_SCOPES = [*sorted(APP_SCOPES), "aws.cognito.signin.user.admin"]
# Every response type API Gateway knows, with the status the template pins for it: API Gateway's documented
# default, except the two types a failed function comes back as (both 502).
GATEWAY_RESPONSE_STATUS = {
    "ACCESS_DENIED": 403,
    "API_CONFIGURATION_ERROR": 502,
    "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "AUTHORIZER_FAILURE": 500,
    "BAD_REQUEST_PARAMETERS": 400,
    "BAD_REQUEST_BODY": 400,
    "EXPIRED_TOKEN": 403,
    "INTEGRATION_FAILURE": 502,
    "INTEGRATION_TIMEOUT": 504,
    "INVALID_API_KEY": 403,
    "INVALID_SIGNATURE": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "RESOURCE_NOT_FOUND": 404,
    "THROTTLED": 429,
    "UNAUTHORIZED": 401,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "WAF_FILTERED": 403,
}
# The fallbacks, reached only by types added to API Gateway later: their bodies name the status class.
GATEWAY_FALLBACK_STATUS_CLASS = {"DEFAULT_4XX": 400, "DEFAULT_5XX": 500}
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "request_id"}
# What API Gateway substitutes into a gateway response body, with stand-in values shaped like the real ones
# ($context.error.messageString is the message already quoted as a JSON string).
GATEWAY_TEMPLATE_VALUES = {
    "$context.error.messageString": '"Unauthorized"',
    "$context.error.responseType": "UNAUTHORIZED",
    "$context.requestId": "c0ffee00-1234-4bcd-9876-0123456789ab",
    "$context.path": "/prod/projects/p-1",
}
NO_VALUE = {"Ref": "AWS::NoValue"}

# Statements allowed to name Resource "*", each with the reason AWS leaves no narrower choice.
DOCUMENTED_WILDCARDS = {
    ("ApiFunctionRole", "XRayHasNoResourceLevelPermissions"): "X-Ray has no resource-level permissions",
    ("StreamFunctionRole", "XRayHasNoResourceLevelPermissions"): "X-Ray has no resource-level permissions",
    ("PartnerAuthorizerFunctionRole", "XRayHasNoResourceLevelPermissions"): (
        "X-Ray has no resource-level permissions"
    ),
    # In a key policy, "*" is the key the policy is attached to.
    ("AppKey", "AccountAdministersAndDelegatesToIam"): "key policy: the key itself",
    ("AppKey", "DynamoDbReadsKeyMetadata"): "key policy: the key itself",
    ("AppKey", "StackAlarmsPublishToEncryptedTopic"): "key policy: the key itself",
    ("AppKey", "CloudWatchLogsUsesKeyForStackLogGroups"): "key policy: the key itself",
    ("AppKey", "DataEventsTrailEncryptsLogFiles"): "key policy: the key itself",
}
# Managed policies allowed on roles, each with its reason.
DOCUMENTED_MANAGED_POLICIES = {
    ("ApiGatewayCloudWatchRole", "AmazonAPIGatewayPushToCloudWatchLogs"): (
        "the account-wide API Gateway logging role: API Gateway names each API's log groups itself"
    ),
    **{
        (role, "AWSLambdaENIManagementAccess"): (
            "in a VPC (SubnetIds) only: Lambda creates the function's network interfaces with its role"
        )
        for role in ("ApiFunctionRole", "StreamFunctionRole", "PartnerAuthorizerFunctionRole")
    },
}
DEV_ONLY_PACKAGES = {"uvicorn", "pytest", "moto", "ruff", "mypy"}
# Read by libraries rather than by Settings fields (botocore reads AWS_ENDPOINT_URL).
ENVIRONMENT_READ_ELSEWHERE = {
    "POWERTOOLS_SERVICE_NAME",
    "AWS_ENDPOINT_URL",
    # Read by the ADOT layer's wrapper and the OpenTelemetry distro it starts (Tracing=otel).
    "AWS_LAMBDA_EXEC_WRAPPER",
    "OTEL_AWS_APPLICATION_SIGNALS_ENABLED",
    "OTEL_PYTHON_DISTRO",
    "OTEL_PYTHON_CONFIGURATOR",
}


# The template's conditions as CloudFormation decides them (tests/cloudformation.py), by the names the
# template tests use.
condition_is_true = evaluate_condition
resolve_conditions = decide_conditions
deployed_resources = deployed


def operations(api: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) -> operation of an AWS::Serverless::Api's DefinitionBody."""
    return {
        (path, method): operation
        for path, path_item in api["Properties"]["DefinitionBody"]["paths"].items()
        for method, operation in path_item.items()
    }


def load_tool(name: str) -> ModuleType:
    """A module of tools/ (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location(f"stratus_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


@pytest.fixture(scope="module")
def table(resources: dict[str, Any]) -> dict[str, Any]:
    tables = {name for name, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}
    # Single-table design for app data; Powertools idempotency records and the rate-limit counters
    # (tests/test_template_ratelimit.py) each keep a table of their own.
    assert tables == {"AppTable", "IdempotencyTable", "RateLimitTable"}
    properties: dict[str, Any] = resources["AppTable"]["Properties"]
    return properties


def test_idempotency_table_matches_the_one_the_local_stack_creates(
    resources: dict[str, Any], aws_resources: LocalResources
) -> None:
    properties = resources["IdempotencyTable"]["Properties"]
    dynamodb = aws_client("dynamodb", aws_resources.endpoint)
    local = dynamodb.describe_table(TableName=aws_resources.idempotency_table_name)["Table"]
    local_ttl = dynamodb.describe_time_to_live(TableName=aws_resources.idempotency_table_name)
    assert properties["KeySchema"] == local["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == local["AttributeDefinitions"]
    assert properties["TimeToLiveSpecification"]["AttributeName"] == "expiration"
    assert local_ttl["TimeToLiveDescription"]["AttributeName"] == "expiration"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"


def test_stream_consumer_reads_the_app_tables_stream_and_reports_failures_per_record(
    resources: dict[str, Any],
) -> None:
    function = resources["StreamFunction"]["Properties"]
    assert function["Handler"] == "stream.handler"
    assert function["CodeUri"] == "src/"
    source = function["Events"]["TableStream"]["Properties"]
    # The app table's stream, whichever of its two declarations is deployed (ReplicaRegions).
    assert source["Stream"] == {
        "Fn::If": [
            "HasReplicaRegions",
            {"Fn::GetAtt": ["AppGlobalTable", "StreamArn"]},
            {"Fn::GetAtt": ["AppTable", "StreamArn"]},
        ]
    }
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["BisectBatchOnFunctionError"] is True
    assert "OnFailure" in source["DestinationConfig"]


@pytest.fixture(scope="module")
def model_schema() -> dict[str, Any]:
    # Entity models register their indexes on import: load every module of the models package first.
    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"models.{module.name}")
    schema: dict[str, Any] = dict(StratusItem._get_schema())
    return schema


@pytest.fixture(scope="module")
def api_function(template: dict[str, Any], resources: dict[str, Any]) -> dict[str, Any]:
    """ApiFunction's properties with the template's Globals applied (as SAM applies them)."""
    return function_properties(template, "ApiFunction", resources)


def _key_schema(entries: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(entry["AttributeName"], entry["KeyType"]) for entry in entries]


def _projection(projection: dict[str, Any]) -> tuple[str, list[str]]:
    return projection["ProjectionType"], sorted(projection.get("NonKeyAttributes", []))


def _indexes(entries: list[dict[str, Any]], *, name: str, keys: str, projection: str) -> dict[str, Any]:
    return {entry[name]: (_key_schema(entry[keys]), _projection(entry[projection])) for entry in entries}


# --- The table and the PynamoDB models ----------------------------------------------------------------


def test_table_key_schema_matches_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    assert _key_schema(table["KeySchema"]) == _key_schema(model_schema["key_schema"])


def test_table_defines_exactly_the_key_attributes_of_table_and_indexes(
    table: dict[str, Any], model_schema: dict[str, Any]
) -> None:
    expected = {(d["AttributeName"], d["AttributeType"]) for d in model_schema["attribute_definitions"]}
    for index in model_schema["global_secondary_indexes"] + model_schema["local_secondary_indexes"]:
        expected |= {(d["AttributeName"], d["AttributeType"]) for d in index["attribute_definitions"]}
    declared = [(d["AttributeName"], d["AttributeType"]) for d in table["AttributeDefinitions"]]
    assert len(declared) == len(set(declared)), "an attribute is declared twice"
    assert set(declared) == expected


def test_global_secondary_indexes_match_the_model(
    table: dict[str, Any], model_schema: dict[str, Any]
) -> None:
    declared = _indexes(
        table.get("GlobalSecondaryIndexes", []), name="IndexName", keys="KeySchema", projection="Projection"
    )
    expected = _indexes(
        model_schema["global_secondary_indexes"],
        name="index_name",
        keys="key_schema",
        projection="projection",
    )
    assert declared == expected


def test_local_secondary_indexes_match_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    declared = _indexes(
        table.get("LocalSecondaryIndexes", []), name="IndexName", keys="KeySchema", projection="Projection"
    )
    expected = _indexes(
        model_schema["local_secondary_indexes"], name="index_name", keys="key_schema", projection="projection"
    )
    assert declared == expected


def test_ttl_attribute_matches_the_model(table: dict[str, Any], model_schema: dict[str, Any]) -> None:
    ttl_names = {
        attribute.attr_name
        for model in table_models()
        for attribute in model.get_attributes().values()
        if isinstance(attribute, TTLAttribute)
    }
    assert len(ttl_names) == 1, f"one table has one TTL attribute, models declare {sorted(ttl_names)}"
    assert table["TimeToLiveSpecification"] == {"AttributeName": ttl_names.pop(), "Enabled": True}


def test_stream_and_billing_mode_match_the_model(template: dict[str, Any], table: dict[str, Any]) -> None:
    assert table["StreamSpecification"]["StreamViewType"] == StratusItem.Meta.stream_view_type
    # A parameter (on demand unless PROVISIONED is chosen): the model's mode is its default.
    assert table["BillingMode"] == {"Ref": "BillingMode"}
    assert template["Parameters"]["BillingMode"]["Default"] == StratusItem.Meta.billing_mode


def test_table_is_encrypted_with_the_app_key_and_survives_stack_deletion(resources: dict[str, Any]) -> None:
    table = resources["AppTable"]
    assert table["Properties"]["SSESpecification"]["KMSMasterKeyId"] == {"Fn::GetAtt": ["AppKey", "Arn"]}
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # The key must outlive the data it encrypts.
    for name in ("AppTable", "AppKey"):
        assert resources[name]["DeletionPolicy"] == "Retain"
        assert resources[name]["UpdateReplacePolicy"] == "Retain"


# --- The function --------------------------------------------------------------------------------------


FUNCTION_NAMES = sorted(
    name
    for name, resource in load_template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_every_function_runs_the_built_artifact_on_python313_arm64(
    template: dict[str, Any], name: str
) -> None:
    function = function_properties(template, name)
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["CodeUri"] == "src/"
    assert function["Metadata"]["BuildMethod"] == "makefile"
    # SAM runs `make build-<logical id>` from src/Makefile for each function.
    makefile = (ROOT / "src" / "Makefile").read_text()
    targets = {
        target for line in re.findall(r"^([\w -]+):", makefile, re.MULTILINE) for target in line.split()
    }
    assert f"build-{name}" in targets


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_handler_named_in_the_template_exists(template: dict[str, Any], name: str) -> None:
    function = function_properties(template, name)
    module_name, attribute = function["Handler"].rsplit(".", 1)
    # A module in a package (functions.rotate_app_secret) is a file in its folder.
    tree = ast.parse((ROOT / function["CodeUri"] / f"{module_name.replace('.', '/')}.py").read_text())
    names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    names |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in names


def test_api_function_runs_the_app(api_function: dict[str, Any]) -> None:
    assert api_function["Handler"] == "main.handler"


def test_function_times_out_before_api_gateway(api_function: dict[str, Any]) -> None:
    assert api_function["Timeout"] < 29


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_every_function_logs_to_its_own_log_group_with_retention(
    template: dict[str, Any], resources: dict[str, Any], name: str
) -> None:
    function = function_properties(template, name)
    # Lambda would create /aws/lambda/<name> itself, without retention, if the names disagreed.
    log_group_name = function["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = resources[log_group_name]
    assert log_group["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/" + function["FunctionName"]["Fn::Sub"]
    }
    assert "RetentionInDays" in log_group["Properties"]
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    # A conditional function's log group exists exactly when the function does.
    assert log_group.get("Condition") == resources[name].get("Condition")


def _settings_environment_names() -> set[str]:
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(field_name.upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names |= {str(choice).upper() for choice in getattr(alias, "choices", [])}
    return names


def test_every_function_environment_variable_is_read_by_the_app(api_function: dict[str, Any]) -> None:
    unread = set(api_function["Environment"]["Variables"]) - _settings_environment_names()
    assert unread <= ENVIRONMENT_READ_ELSEWHERE, f"no Settings field reads {sorted(unread)}"


def _deployed_value(value: Any, parameters: dict[str, str]) -> str:
    """What CloudFormation would put in an environment variable, with stand-in ids for resources."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return parameters.get(value["Ref"], f"{value['Ref'].lower()}-id")
    if "Fn::Sub" in value:
        return re.sub(
            r"\$\{([^}]+)\}",
            lambda m: parameters.get(m.group(1), f"{m.group(1).lower()}-id"),
            value["Fn::Sub"],
        )
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_deployed_value(part, parameters) for part in parts)
    if "Fn::GetAtt" in value:
        resource, attribute = value["Fn::GetAtt"]
        return f"{resource.lower()}-{attribute.lower()}"
    raise AssertionError(f"unexpected intrinsic in an environment variable: {value}")


@pytest.mark.parametrize("function_name", FUNCTION_NAMES)
def test_every_function_starts_with_the_prod_environment(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, function_name: str
) -> None:
    # The prod Settings refuse development values and missing ids: a function deployed without them
    # would fail at import, on its first invocation. Every function exists with the partner tier on.
    parameters = {
        **{name: str(parameter["Default"]) for name, parameter in template["Parameters"].items()},
        "Stage": "prod",
        "CorsAllowOrigins": "https://app.example.com",
        "EnablePartnerTier": "true",
    }
    resources = deployed_resources(template, **parameters)
    environment = resolve_conditions(
        template["Globals"]["Function"]["Environment"],
        lambda name: condition_is_true(template, name, parameters),
    )
    declared = {
        **environment["Variables"],
        **resources[function_name]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    # CloudFormation leaves out a variable whose value is AWS::NoValue.
    variables = {name: value for name, value in declared.items() if value != NO_VALUE}
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, _deployed_value(value, parameters))
    settings = Settings()
    assert settings.stage == "prod"
    assert settings.rate_limit_storage_uri.startswith("dynamodb://")


def _documented_sam_local_environment() -> dict[str, str]:
    """The env.json docs/operations.md gives for `sam local start-api` (the guide's one JSON block)."""
    (block,) = re.findall(r"```json\n(.*?)```", OPERATIONS_GUIDE.read_text(), re.DOTALL)
    environment: dict[str, str] = json.loads(block)["ApiFunction"]
    return environment


def test_documented_sam_local_environment_overrides_what_sam_local_cannot_resolve(
    template: dict[str, Any], api_function: dict[str, Any]
) -> None:
    declared = api_function["Environment"]["Variables"]
    documented = _documented_sam_local_environment()
    # SAM CLI applies an env file only to variables the template declares and drops the others silently.
    assert set(documented) <= set(declared)

    # It resolves a resource reference to the logical id (a table named "AppTable") and NoValue to nothing:
    # only parameters resolve to something the stand-in knows.
    def resolves(value: Any) -> bool:
        # Parameters, and pseudo parameters (SAM CLI gives AWS::StackName "local", and so on); a condition
        # on parameters picks one of such values.
        if isinstance(value, str):
            return True
        if "Fn::If" in value:
            return all(resolves(branch) for branch in value["Fn::If"][1:])
        return value.get("Ref") in template["Parameters"] or str(value.get("Ref", "")).startswith("AWS::")

    resolvable = {name for name, value in declared.items() if resolves(value)}
    assert set(declared) - resolvable <= set(documented)
    assert documented["RATE_LIMIT_STORAGE_URI"] == f"dynamodb://{documented['TABLE_NAME']}-ratelimits"
    assert documented["COGNITO_JWKS_URL"].startswith(documented["AWS_ENDPOINT_URL"] + "/")
    # Declared for sam local only: deployed functions never get a stand-in's endpoint.
    assert declared["AWS_ENDPOINT_URL"] == declared["COGNITO_JWKS_URL"] == NO_VALUE


def test_stage_parameter_values_are_stages_the_settings_accept(template: dict[str, Any]) -> None:
    allowed = set(Settings.model_fields["stage"].annotation.__args__)  # type: ignore[union-attr]
    assert set(template["Parameters"]["Stage"]["AllowedValues"]) <= allowed


# --- The API -------------------------------------------------------------------------------------------


def test_api_pins_openapi_version_and_stage(resources: dict[str, Any]) -> None:
    api = resources["Api"]["Properties"]
    # Without OpenApiVersion SAM also creates a stage named "Stage".
    assert re.fullmatch(r"3\.\d+\.\d+", str(api["OpenApiVersion"]))
    assert api["StageName"] == {"Ref": "Stage"}
    assert "Cors" not in api, "the app answers CORS itself"


def test_api_redeploys_its_stage_on_every_stack_update(resources: dict[str, Any]) -> None:
    # The definition depends on parameters (GatewayAuthorizer, CorsAllowOrigins) that SAM's deployment
    # hash never sees: without this, changing them would leave the stage on the old deployment.
    assert resources["Api"]["Properties"]["AlwaysDeploy"] is True


def test_every_route_is_either_public_or_behind_a_gate(template: dict[str, Any]) -> None:
    routes = PUBLIC_OPERATIONS | GATED_OPERATIONS
    assert set(operations(deployed_resources(template)["Api"])) == routes
    assert set(operations(deployed_resources(template, EnablePartnerTier="true")["Api"])) == (
        routes | PARTNER_OPERATIONS
    )


def test_every_route_proxies_to_the_api_function(template: dict[str, Any]) -> None:
    api = deployed_resources(template, EnablePartnerTier="true")["Api"]
    for route, operation in operations(api).items():
        integration = operation["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST"), route
        # The alias `live`: CodeDeploy moves it to each new version (safe deployments), and SnapStart or
        # provisioned concurrency pre-warms the version it points at.
        assert "/functions/${ApiFunction.Alias}/invocations" in integration["uri"]["Fn::Sub"], route


def test_public_routes_and_preflights_carry_no_authorizer(template: dict[str, Any]) -> None:
    for gateway_authorizer in ("cognito", "none"):
        api = deployed_resources(template, GatewayAuthorizer=gateway_authorizer)["Api"]
        for route in PUBLIC_OPERATIONS:
            assert "security" not in operations(api)[route], (gateway_authorizer, route)


def test_gateway_authorizer_defaults_to_cognito(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["GatewayAuthorizer"]
    assert parameter["AllowedValues"] == ["cognito", "none"]
    assert parameter["Default"] == "cognito"
    assert template["Conditions"]["UseGatewayAuthorizer"] == {
        "Fn::Equals": [{"Ref": "GatewayAuthorizer"}, "cognito"]
    }


def test_catch_all_routes_require_a_cognito_access_token_by_default(template: dict[str, Any]) -> None:
    api = deployed_resources(template)["Api"]
    for route in GATED_OPERATIONS:
        # Scopes on the method make API Gateway demand an access token (an ID token is refused).
        assert operations(api)[route]["security"] == [{"CognitoAccessToken": GATEWAY_SCOPES}], route
    scheme = api["Properties"]["DefinitionBody"]["components"]["securitySchemes"]["CognitoAccessToken"]
    assert scheme["x-amazon-apigateway-authtype"] == "cognito_user_pools"
    assert scheme["x-amazon-apigateway-authorizer"] == {
        "type": "cognito_user_pools",
        "providerARNs": [{"Fn::GetAtt": ["UserPool", "Arn"]}],
    }
    assert (scheme["in"], scheme["name"]) == ("header", "Authorization")


def test_gateway_authorizer_none_lets_every_request_reach_the_app(template: dict[str, Any]) -> None:
    # For personal API keys (X-API-Key), which a Cognito authorizer would refuse; the app verifies them.
    api = deployed_resources(template, GatewayAuthorizer="none")["Api"]
    # An absent or empty `security` is no requirement at all.
    assert all(not operation.get("security") for operation in operations(api).values())


def test_sam_local_can_read_every_operations_security(resources: dict[str, Any]) -> None:
    # `sam local start-api` resolves no Fn::If in a DefinitionBody and refuses a `security` that is not a
    # list: a condition must sit inside the list, never around it. It skips a path item that is a whole
    # Fn::If (the partner entry point, which it does not serve), and an authorizer it cannot read.
    paths = resources["Api"]["Properties"]["DefinitionBody"]["paths"]
    conditional = {path for path, item in paths.items() if set(item) == {"Fn::If"}}
    assert {(path, ANY) for path in conditional} == PARTNER_OPERATIONS
    for path, path_item in paths.items():
        if path in conditional:
            continue
        for method, operation in path_item.items():
            assert isinstance(operation.get("security", []), list), (path, method)


def test_only_the_partner_entry_point_demands_a_gateway_key_and_never_from_a_header(
    template: dict[str, Any],
) -> None:
    # A required key is required of every caller of the method: on the catch-alls it would lock out every
    # user. And API Gateway would read it from X-API-Key, where the app reads personal API keys, unless the
    # key comes from the authorizer.
    assert not any(
        "PartnerApiKey" in requirement
        for operation in operations(deployed_resources(template)["Api"]).values()
        for requirement in operation.get("security", [])
    )
    api = deployed_resources(template, EnablePartnerTier="true")["Api"]
    for route, operation in operations(api).items():
        if route in PARTNER_OPERATIONS:
            assert operation["security"] == [{"PartnerAuthorizer": [], "PartnerApiKey": []}], route
        else:
            assert all("PartnerApiKey" not in r for r in operation.get("security", [])), route
    assert api["Properties"]["DefinitionBody"]["x-amazon-apigateway-api-key-source"] == "AUTHORIZER"
    # API Gateway's default where no method requires a key.
    disabled = deployed_resources(template)["Api"]["Properties"]["DefinitionBody"]
    assert disabled["x-amazon-apigateway-api-key-source"] == "HEADER"


def _references(value: Any) -> Iterator[str]:
    """The logical ids a resource's properties refer to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            yield str(value["Ref"]).split(".", 1)[0]
            return
        if set(value) == {"Fn::GetAtt"}:
            yield str(value["Fn::GetAtt"][0])
            return
        if set(value) == {"Fn::Sub"}:
            text, variables = (
                (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
            )
            for name in re.findall(r"\$\{([^}!]+)\}", text):
                if name not in variables:
                    yield name.split(".", 1)[0]
            yield from _references(variables)
            return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@pytest.mark.parametrize(
    "parameters",
    [{}, {"EnablePartnerTier": "true", "EnableWaf": "true", "AlarmEmail": "ops@example.com"}],
    ids=["defaults", "every-option"],
)
def test_resources_depend_on_each_other_without_a_cycle(
    template: dict[str, Any], parameters: dict[str, str]
) -> None:
    # CloudFormation refuses a stack whose resources refer to each other in a circle (E3004 once SAM has
    # transformed it); the raw template's linting cannot see the cycles SAM's resources close.
    resources = deployed_resources(template, **parameters)
    needs: dict[str, set[str]] = {}
    for name, resource in resources.items():
        depends_on = resource.get("DependsOn", [])
        # SAM moves a function's DeploymentPreference (its alarms) to the CodeDeploy deployment group, which
        # the function's alias depends on, not the function.
        properties = {k: v for k, v in resource.get("Properties", {}).items() if k != "DeploymentPreference"}
        named = set(_references(properties)) | set(
            [depends_on] if isinstance(depends_on, str) else depends_on
        )
        needs[name] = {other for other in named if other in resources and other != name}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " → ".join((*path[path.index(name) :], name))
        if name in done:
            return
        for other in sorted(needs[name]):
            visit(other, (*path, name))
        done.add(name)

    for name in sorted(needs):
        visit(name, ())


def test_partner_resources_are_the_ones_the_app_mounts(template: dict[str, Any]) -> None:
    # The app strips exactly these resources' prefix (gateway.py); a renamed path would reach it unstripped.
    api = deployed_resources(template, EnablePartnerTier="true")["Api"]
    partner_paths = {path for path, _ in operations(api) if path.startswith(gateway.PARTNER_BASE_PATH)}
    assert partner_paths == set(gateway.PARTNER_RESOURCES) == {path for path, _ in PARTNER_OPERATIONS}


def test_partner_authorizer_is_a_cached_token_authorizer_of_its_own_function(
    template: dict[str, Any],
) -> None:
    api = deployed_resources(template, EnablePartnerTier="true")["Api"]
    scheme = api["Properties"]["DefinitionBody"]["components"]["securitySchemes"]["PartnerAuthorizer"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert scheme["x-amazon-apigateway-authtype"] == "custom"
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "token"
    # Named by the function's fixed name (a reference would close a dependency cycle through the plan).
    function_arn = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
    function = deployed_resources(template, EnablePartnerTier="true")["PartnerAuthorizerFunction"]
    function_name = function["Properties"]["FunctionName"]["Fn::Sub"]
    assert f"/functions/{function_arn}{function_name}/invocations" in authorizer["authorizerUri"]["Fn::Sub"]
    assert 0 < authorizer["authorizerResultTtlInSeconds"] <= 3600
    # API Gateway refuses what is not a bearer token without invoking the function.
    expression = re.compile(authorizer["identityValidationExpression"])
    assert expression.fullmatch("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_")
    assert expression.fullmatch("bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_")
    for refused in ("Basic dXNlcjpwdw==", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "Bearer ", "Bearer a b"):
        assert not expression.fullmatch(refused), refused
    # Without the tier, neither the scheme nor the function exists.
    disabled = deployed_resources(template)
    schemes = disabled["Api"]["Properties"]["DefinitionBody"]["components"]["securitySchemes"]
    assert "PartnerAuthorizer" not in schemes
    assert "PartnerAuthorizerFunction" not in disabled


def test_partner_authorizer_reads_only_the_partner_plans_keys(template: dict[str, Any]) -> None:
    resources = deployed_resources(template, EnablePartnerTier="true")
    function = resources["PartnerAuthorizerFunction"]["Properties"]
    assert function["Handler"] == "partner_authorizer.handler"
    assert function["Environment"]["Variables"]["PARTNER_USAGE_PLAN_ID"] == {"Ref": "PartnerUsagePlan"}
    statements = {
        statement["Sid"]: statement
        for policy in resources[function["Role"]["Fn::GetAtt"][0]]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    }
    assert set(statements) == {
        "WriteOwnLogs",
        "ReadPartnerUsagePlanKeys",
        "XRayHasNoResourceLevelPermissions",
    }
    keys = statements["ReadPartnerUsagePlanKeys"]
    assert keys["Action"] == "apigateway:GET"
    assert keys["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/usageplans/${PartnerUsagePlan}/keys"
    }


def test_example_partner_has_a_client_credentials_client_and_a_key_named_after_it(
    template: dict[str, Any],
) -> None:
    resources = deployed_resources(template, EnablePartnerTier="true")
    client = resources["ExamplePartnerClient"]["Properties"]
    assert client["AllowedOAuthFlows"] == ["client_credentials"]
    assert client["GenerateSecret"] is True
    assert client["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    assert resources["ExamplePartnerApiKey"]["Properties"]["Name"] == {"Ref": "ExamplePartnerClient"}
    plan_key = resources["ExamplePartnerUsagePlanKey"]["Properties"]
    assert plan_key["KeyId"] == {"Ref": "ExamplePartnerApiKey"}
    assert plan_key["UsagePlanId"] == {"Ref": "PartnerUsagePlan"}
    stages = resources["PartnerUsagePlan"]["Properties"]["ApiStages"]
    assert stages == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "Api.Stage"}}]


def test_every_resource_answers_preflights_without_an_authorizer(template: dict[str, Any]) -> None:
    # API Gateway routes to the most specific resource and never falls back to /{proxy+}: a resource
    # without its own OPTIONS would answer a browser's preflight with the gateway's 403.
    # The partner entry point is the exception: partners call from servers, never from browsers.
    for gateway_authorizer in ("cognito", "none"):
        api = deployed_resources(template, GatewayAuthorizer=gateway_authorizer, EnablePartnerTier="true")[
            "Api"
        ]
        for path, path_item in api["Properties"]["DefinitionBody"]["paths"].items():
            if (path, ANY) in PARTNER_OPERATIONS:
                assert set(path_item) == {ANY}, path
                continue
            assert "options" in path_item, path
            assert "security" not in path_item["options"], (gateway_authorizer, path)


def test_gateway_public_routes_are_routes_of_the_app() -> None:
    # A renamed docs or health route must not silently fall behind the gate (or leave a stale hole).
    app = create_app(Settings())
    served = {(path, method) for path, item in app.openapi()["paths"].items() for method in item}
    # The docs pages, their assets and the schema itself are outside the OpenAPI document.
    served |= {
        (str(route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    mounted = {str(route.path) for route in app.routes if isinstance(route, Mount)}
    for path, method in PUBLIC_OPERATIONS:
        if method == "options":
            continue  # CORS preflights: the app's CORS middleware answers them on every path
        if path.endswith("/{proxy+}"):
            prefix = path.removesuffix("{proxy+}")
            assert any(m.startswith(prefix) for m in mounted), path
        else:
            assert (path, method) in served, (path, method)


def test_only_api_gateway_invokes_the_functions_and_only_for_this_api(template: dict[str, Any]) -> None:
    resources = deployed_resources(template, EnablePartnerTier="true")
    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    api_arn = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}"
    # Besides: Secrets Manager runs the rotation function, for the app secret only.
    rotation = {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Ref": "RotateAppSecretFunction"},
        "Principal": "secretsmanager.amazonaws.com",
        "SourceArn": {"Ref": "AppSecret"},
    }
    assert rotation in permissions
    permissions.remove(rotation)
    assert permissions == [
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "ApiFunction.Alias"},
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": f"{api_arn}/*"},
        },
        {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "PartnerAuthorizerFunction"},
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": {"Fn::Sub": f"{api_arn}/authorizers/*"},
        },
    ]


def _static_header(value: str) -> str:
    """The value of a static gateway response header, which API Gateway writes in single quotes."""
    assert re.fullmatch(r"'[^']*'", value), value
    return value[1:-1]


def _render_gateway_template(body: str) -> Any:
    """A gateway response body as a client receives it, with stand-in values for API Gateway's variables."""
    for variable, value in GATEWAY_TEMPLATE_VALUES.items():
        body = body.replace(variable, value)
    assert "$context" not in body, f"a variable the test has no stand-in for: {body}"
    return json.loads(body)


def test_gateway_errors_are_problem_json_with_a_cors_origin(resources: dict[str, Any]) -> None:
    for name, response in resources["Api"]["Properties"]["GatewayResponses"].items():
        headers = response["ResponseParameters"]["Headers"]
        assert "Access-Control-Allow-Origin" in headers, name
        assert headers["Content-Type"] == "'application/problem+json'", name
        # The template API Gateway selects by default; the header then labels the body problem+json.
        assert set(response["ResponseTemplates"]) == {"application/json"}, name


def test_every_gateway_response_type_has_its_own_fixed_status(resources: dict[str, Any]) -> None:
    # A body cannot read the status ($context has none): each type pins the status its body names.
    responses = resources["Api"]["Properties"]["GatewayResponses"]
    assert set(responses) == set(GATEWAY_RESPONSE_STATUS) | set(GATEWAY_FALLBACK_STATUS_CLASS)
    for name, status in GATEWAY_RESPONSE_STATUS.items():
        assert responses[name]["StatusCode"] == status, name
    for name in GATEWAY_FALLBACK_STATUS_CLASS:
        # A status on a fallback would replace the status of every response type that falls back to it.
        assert "StatusCode" not in responses[name], name


def test_every_gateway_error_body_is_a_complete_problem(resources: dict[str, Any]) -> None:
    for name, response in resources["Api"]["Properties"]["GatewayResponses"].items():
        problem = _render_gateway_template(response["ResponseTemplates"]["application/json"])
        assert set(problem) >= PROBLEM_MEMBERS, name
        assert problem["type"].startswith("urn:stratus:problem:"), name
        assert problem["status"] == {**GATEWAY_RESPONSE_STATUS, **GATEWAY_FALLBACK_STATUS_CLASS}[name], name
        assert problem["detail"] == "Unauthorized", name
        assert problem["instance"] == GATEWAY_TEMPLATE_VALUES["$context.path"], name
        assert problem["request_id"] == GATEWAY_TEMPLATE_VALUES["$context.requestId"], name


def test_gateway_refusals_tell_the_client_how_to_recover(resources: dict[str, Any]) -> None:
    responses = resources["Api"]["Properties"]["GatewayResponses"]
    # RFC 6750: the scheme with an error code; invalid_token tells the client to get a fresh access token.
    challenge = _static_header(responses["UNAUTHORIZED"]["ResponseParameters"]["Headers"]["WWW-Authenticate"])
    assert challenge == 'Bearer error="invalid_token"'
    assert _static_header(responses["THROTTLED"]["ResponseParameters"]["Headers"]["Retry-After"]).isdigit()


def test_stage_throttling_applies_to_every_method(resources: dict[str, Any]) -> None:
    (settings,) = resources["Api"]["Properties"]["MethodSettings"]
    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}


# --- Identity ------------------------------------------------------------------------------------------


def _clients(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Cognito::UserPoolClient"
    }


def _resource_server_scopes(resources: dict[str, Any]) -> set[str]:
    (server,) = [
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Cognito::UserPoolResourceServer"
    ]
    return {f"{server['Identifier']}/{scope['ScopeName']}" for scope in server["Scopes"]}


def test_resource_server_defines_exactly_the_apps_scopes(resources: dict[str, Any]) -> None:
    assert _resource_server_scopes(resources) == set(APP_SCOPES)


def test_web_client_is_public_and_uses_the_code_flow_only(resources: dict[str, Any]) -> None:
    client = _clients(resources)["WebClient"]
    assert client["GenerateSecret"] is False
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert client["AllowedOAuthFlows"] == ["code"]
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email", "profile", *APP_SCOPES}
    assert client["CallbackURLs"] == {"Ref": "WebCallbackUrls"}
    assert client["LogoutURLs"] == {"Ref": "WebLogoutUrls"}
    assert client["PreventUserExistenceErrors"] == "ENABLED"


def test_web_client_rotates_refresh_tokens_and_issues_short_lived_access(resources: dict[str, Any]) -> None:
    client = _clients(resources)["WebClient"]
    assert client["RefreshTokenRotation"]["Feature"] == "ENABLED"
    # Cognito refuses REFRESH_TOKEN_AUTH on a rotating client: refreshes go through the token endpoint.
    assert client["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH"]
    assert client["EnableTokenRevocation"] is True
    assert (client["AccessTokenValidity"], client["IdTokenValidity"], client["RefreshTokenValidity"]) == (
        15,
        15,
        30,
    )
    assert client["TokenValidityUnits"] == {
        "AccessToken": "minutes",
        "IdToken": "minutes",
        "RefreshToken": "days",
    }


def test_machine_client_uses_client_credentials_with_resource_server_scopes_only(
    resources: dict[str, Any],
) -> None:
    client = _clients(resources)["MachineClient"]
    assert client["GenerateSecret"] is True
    assert client["AllowedOAuthFlows"] == ["client_credentials"]
    assert set(client["AllowedOAuthScopes"]) == _resource_server_scopes(resources)
    # No user can sign in through the machine client (Cognito's default would allow SRP and custom auth).
    assert not {
        "ALLOW_USER_SRP_AUTH",
        "ALLOW_USER_PASSWORD_AUTH",
        "ALLOW_CUSTOM_AUTH",
        "ALLOW_USER_AUTH",
    } & set(client["ExplicitAuthFlows"])
    assert (client["AccessTokenValidity"], client["TokenValidityUnits"]["AccessToken"]) == (60, "minutes")


def test_clients_granted_custom_scopes_wait_for_the_resource_server(resources: dict[str, Any]) -> None:
    (server_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::Cognito::UserPoolResourceServer"]
    for name, client in _clients(resources).items():
        if set(client.get("AllowedOAuthScopes", [])) & set(APP_SCOPES):
            depends_on = resources[name].get("DependsOn", [])
            assert server_name in ([depends_on] if isinstance(depends_on, str) else depends_on), name


def test_functions_accept_every_app_client_and_partners_as_partners(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["COGNITO_CLIENT_IDS"] == {
        "Fn::Join": [",", [{"Ref": "WebClient"}, {"Ref": "MachineClient"}]]
    }
    # The example partner and the ids of further partners (a parameter); nobody without the tier.
    assert variables["PARTNER_CLIENT_IDS"] == {
        "Fn::If": [
            "PartnerTierEnabled",
            {"Fn::Join": [",", [{"Ref": "ExamplePartnerClient"}, {"Ref": "PartnerClientIds"}]]},
            "",
        ]
    }
    named = {"WebClient", "MachineClient", "ExamplePartnerClient"}
    assert named == set(_clients(deployed_resources(template, EnablePartnerTier="true")))


def test_social_providers_exist_only_when_configured(template: dict[str, Any]) -> None:
    providers = {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Cognito::UserPoolIdentityProvider"
    }
    assert {r["Properties"]["ProviderType"]: r["Condition"] for r in providers.values()} == {
        "Google": "HasGoogle",
        "SignInWithApple": "HasApple",
    }
    for secret in ("GoogleClientSecret", "ApplePrivateKey"):
        assert template["Parameters"][secret]["NoEcho"] is True
    for provider in providers.values():
        assert provider["Properties"]["AttributeMapping"]["email"] == "email"
        assert "name" in provider["Properties"]["AttributeMapping"]
    google = next(r for r in providers.values() if r["Properties"]["ProviderType"] == "Google")
    assert google["Properties"]["AttributeMapping"]["email_verified"] == "email_verified"


def test_web_client_offers_exactly_the_configured_providers(template: dict[str, Any]) -> None:
    def offered(**parameters: str) -> list[Any]:
        resources = deployed_resources(template, **parameters)
        offered_providers: list[Any] = resources["WebClient"]["Properties"]["SupportedIdentityProviders"]
        # Each provider is referenced, not named, so that CloudFormation creates it before the client.
        for entry in offered_providers:
            assert entry == "COGNITO" or entry["Ref"] in resources, entry
        return offered_providers

    assert offered() == ["COGNITO"]
    assert offered(GoogleClientId="google-client") == ["COGNITO", {"Ref": "GoogleIdentityProvider"}]
    assert offered(GoogleClientId="google-client", AppleServicesId="com.example.web") == [
        "COGNITO",
        {"Ref": "GoogleIdentityProvider"},
        {"Ref": "AppleIdentityProvider"},
    ]


def test_hosted_ui_domain_always_exists_named_by_the_prefix_or_the_stack(template: dict[str, Any]) -> None:
    def domain(**parameters: str) -> Any:
        resources = deployed_resources(template, **parameters)
        (found,) = [
            r["Properties"] for r in resources.values() if r["Type"] == "AWS::Cognito::UserPoolDomain"
        ]
        return found["Domain"]

    assert domain(CognitoDomainPrefix="stratus-test") == {"Ref": "CognitoDomainPrefix"}
    # The UUID of the stack id (arn:...:stack/<name>/<uuid>): lower-case hex, unlike the stack name.
    assert domain() == {
        "Fn::Join": ["-", ["stratus", {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}]]
    }
    assert "Condition" not in template["Outputs"]["HostedUiUrl"]
    assert "HostedUiDomain" in json.dumps(template["Outputs"]["HostedUiUrl"]["Value"])


def test_password_policy_defaults(template: dict[str, Any]) -> None:
    policy = deployed_resources(template)["UserPool"]["Properties"]["Policies"]["PasswordPolicy"]
    parameters = template["Parameters"]
    defaults = {key: parameters[value["Ref"]]["Default"] for key, value in policy.items()}
    assert defaults == {
        "MinimumLength": 12,
        "RequireUppercase": "true",
        "RequireLowercase": "true",
        "RequireNumbers": "true",
        "RequireSymbols": "true",
        "TemporaryPasswordValidityDays": 3,
    }


def test_mfa_is_optional_by_default_and_authenticator_apps_only(template: dict[str, Any]) -> None:
    assert template["Parameters"]["MfaConfiguration"]["AllowedValues"] == ["OFF", "OPTIONAL", "ON"]
    for setting in ("OPTIONAL", "ON"):
        pool = deployed_resources(template, MfaConfiguration=setting)["UserPool"]["Properties"]
        assert pool["MfaConfiguration"] == {"Ref": "MfaConfiguration"}
        assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    # Cognito refuses a second factor on a pool whose MFA is off.
    assert "EnabledMfas" not in deployed_resources(template, MfaConfiguration="OFF")["UserPool"]["Properties"]
    assert deployed_resources(template)["UserPool"]["Properties"]["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]


def test_user_pool_signs_in_by_verified_email(resources: dict[str, Any]) -> None:
    pool = resources["UserPool"]["Properties"]
    assert pool["UsernameAttributes"] == ["email"]
    assert pool["UsernameConfiguration"] == {"CaseSensitive": False}
    assert pool["AutoVerifiedAttributes"] == ["email"]
    assert pool["AccountRecoverySetting"]["RecoveryMechanisms"] == [{"Name": "verified_email", "Priority": 1}]
    assert pool["DeletionProtection"] == {"Fn::If": ["IsProd", "ACTIVE", "INACTIVE"]}
    groups = {
        r["Properties"]["GroupName"] for r in resources.values() if r["Type"] == "AWS::Cognito::UserPoolGroup"
    }
    assert groups == {"admin", "user"}


# --- Optional protections ------------------------------------------------------------------------------


WAF_TYPES = {"AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation"}
PARTNER_TIER_TYPES = {
    "AWS::ApiGateway::UsagePlan",
    "AWS::ApiGateway::ApiKey",
    "AWS::ApiGateway::UsagePlanKey",
}


def _types_among(resources: dict[str, Any], types: set[str]) -> set[str]:
    return {r["Type"] for r in resources.values()} & types


def test_waf_and_partner_tier_are_off_by_default_and_carry_their_conditions(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        if resource["Type"] in WAF_TYPES:
            assert resource.get("Condition") == "WafEnabled", name
        if resource["Type"] in PARTNER_TIER_TYPES:
            assert resource.get("Condition") == "PartnerTierEnabled", name
    assert template["Parameters"]["EnableWaf"]["Default"] == "false"
    assert template["Parameters"]["EnablePartnerTier"]["Default"] == "false"
    by_default = deployed_resources(template)
    assert not _types_among(by_default, WAF_TYPES | PARTNER_TIER_TYPES)
    assert _types_among(deployed_resources(template, EnableWaf="true"), WAF_TYPES) == WAF_TYPES
    enabled = deployed_resources(template, EnablePartnerTier="true")
    assert _types_among(enabled, PARTNER_TIER_TYPES) == PARTNER_TIER_TYPES


def test_waf_blocks_an_ip_over_its_rate_with_a_429(template: dict[str, Any]) -> None:
    acl = deployed_resources(template, EnableWaf="true")["ApiWebAcl"]["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    rate = rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP"
    assert rate["Limit"] == {"Ref": "WafRateLimitPer5Min"}
    assert template["Parameters"]["WafRateLimitPer5Min"]["Default"] == 2000
    response = rules["RateLimitPerIp"]["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    assert response["CustomResponseBodyKey"] in acl["CustomResponseBodies"]
    assert {header["Name"] for header in response["ResponseHeaders"]} >= {
        "Retry-After",
        "Access-Control-Allow-Origin",
    }
    # A WAF body is static text: no request id, no path, so only the members that do not vary.
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    problem = json.loads(body["Content"])
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert problem["status"] == response["ResponseCode"]


def test_waf_common_rule_set_counts_until_told_to_block(template: dict[str, Any]) -> None:
    def override(**parameters: str) -> dict[str, Any]:
        acl = deployed_resources(template, EnableWaf="true", **parameters)["ApiWebAcl"]["Properties"]
        (rule,) = [r for r in acl["Rules"] if "ManagedRuleGroupStatement" in r["Statement"]]
        assert rule["Statement"]["ManagedRuleGroupStatement"] == {
            "VendorName": "AWS",
            "Name": "AWSManagedRulesCommonRuleSet",
        }
        action: dict[str, Any] = rule["OverrideAction"]
        return action

    assert override() == {"Count": {}}
    assert override(WafCommonRuleSetAction="block") == {"None": {}}


def test_waf_protects_the_api_stage(resources: dict[str, Any]) -> None:
    association = resources["ApiWebAclAssociation"]["Properties"]
    # ${Api.Stage} is SAM's reference to the stage it generates, and makes the association wait for it.
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${Api}/stages/${Api.Stage}"
    }
    assert association["WebACLArn"] == {"Fn::GetAtt": ["ApiWebAcl", "Arn"]}


def test_partner_usage_plan_throttles_and_meters_the_api_stage(resources: dict[str, Any]) -> None:
    plan = resources["PartnerUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": "Api.Stage"}}]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "PartnerRateLimit"},
        "BurstLimit": {"Ref": "PartnerBurstLimit"},
    }
    assert plan["Quota"] == {"Limit": {"Ref": "PartnerQuotaLimit"}, "Period": {"Ref": "PartnerQuotaPeriod"}}
    key = resources["ExamplePartnerUsagePlanKey"]["Properties"]
    assert key == {
        "KeyId": {"Ref": "ExamplePartnerApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "PartnerUsagePlan"},
    }


# --- samconfig.toml ------------------------------------------------------------------------------------


def _parameter_overrides() -> dict[str, dict[str, str]]:
    config = tomllib.loads(SAMCONFIG.read_text())
    found: dict[str, dict[str, str]] = {}
    for environment, commands in config.items():
        if not isinstance(commands, dict):
            continue
        deploy = commands.get("deploy", {}).get("parameters", {})
        overrides = deploy.get("parameter_overrides")
        # Environments of another template (the us-east-1 edge stack) are checked in test_template_edge.py.
        if overrides is not None and "template_file" not in deploy:
            found[environment] = dict(pair.split("=", 1) for pair in overrides.split())
    return found


def test_samconfig_overrides_only_parameters_the_template_accepts(template: dict[str, Any]) -> None:
    overrides = _parameter_overrides()
    assert set(overrides) == {"default", "prod"}
    for environment, values in overrides.items():
        for name, value in values.items():
            assert name in template["Parameters"], (environment, name)
            allowed = template["Parameters"][name].get("AllowedValues")
            assert allowed is None or value in allowed, (environment, name, value)
        # Deploys with these values get the resources they describe, conditions decided.
        assert deployed_resources(template, **values)


def test_prod_uses_https_origins_and_redirects(template: dict[str, Any]) -> None:
    prod = _parameter_overrides()["prod"]
    assert prod["Stage"] == "prod"
    for name in ("CorsAllowOrigins", "WebCallbackUrls", "WebLogoutUrls"):
        assert all(url.startswith("https://") for url in prod[name].split(",")), name


# --- IAM -----------------------------------------------------------------------------------------------


def _policy_statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, resource in resources.items():
        properties = resource.get("Properties", {})
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
        elif resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            documents.append(properties["PolicyDocument"])
        elif resource["Type"] == "AWS::KMS::Key":
            documents.append(properties["KeyPolicy"])
        elif resource["Type"] == "AWS::Serverless::Function":
            documents += [
                p for p in properties.get("Policies", []) if isinstance(p, dict) and "Statement" in p
            ]
        found += [(name, statement) for document in documents for statement in document["Statement"]]
    return found


def test_no_iam_statement_names_every_resource_without_a_documented_reason(resources: dict[str, Any]) -> None:
    statements = _policy_statements(resources)
    assert statements
    for name, statement in statements:
        targets = statement.get("Resource", [])
        targets = targets if isinstance(targets, list) else [targets]
        if "*" in targets and statement["Effect"] == "Allow":
            assert (name, statement.get("Sid")) in DOCUMENTED_WILDCARDS, f"{name}: {statement}"


def test_roles_carry_only_documented_managed_policies(template: dict[str, Any]) -> None:
    in_vpc = deployed_resources(
        template, EnablePartnerTier="true", SubnetIds="subnet-0a1", SecurityGroupIds="sg-0b2"
    )
    for name, resource in in_vpc.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in resource["Properties"].get("ManagedPolicyArns", []):
            policy = str(arn.get("Fn::Sub", arn) if isinstance(arn, dict) else arn).rsplit("/", 1)[-1]
            assert (name, policy) in DOCUMENTED_MANAGED_POLICIES, f"{name}: {arn}"


def _granted_actions(resources: dict[str, Any], role: str) -> set[str]:
    actions: set[str] = set()
    for name, statement in _policy_statements(resources):
        if name == role and statement["Effect"] == "Allow":
            granted = statement["Action"]
            actions |= set(granted if isinstance(granted, list) else [granted])
    return actions


def _operations_called(source: Path, service: str) -> set[str]:
    """`<service>:<Operation>` for every client method of `service` that `source` calls (`.admin_get_user(`)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    by_method = {xform_name(operation): operation for operation in model.operation_names}
    called = set(re.findall(r"\.([a-z][a-z0-9_]*)\(", source.read_text()))
    return {f"{service}:{by_method[method]}" for method in called if method in by_method}


def test_the_function_may_make_exactly_the_cognito_calls_the_directory_makes(
    resources: dict[str, Any],
) -> None:
    called = _operations_called(ROOT / "src" / "directory.py", "cognito-idp")
    assert "cognito-idp:AdminGetUser" in called  # the scan finds the calls at all
    granted = {
        action
        for action in _granted_actions(resources, "ApiFunctionRole")
        if action.startswith("cognito-idp:")
    }
    assert called - granted == set(), "called but not granted: AccessDenied in AWS"
    assert granted - called == set(), "granted but never called: more privilege than needed"


def test_function_uses_its_explicit_least_privilege_role(resources: dict[str, Any]) -> None:
    # SAM's generated role would add AWSLambdaBasicExecutionRole (every log group) behind our back.
    properties = resources["ApiFunction"]["Properties"]
    assert properties["Role"] == {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}
    assert "Policies" not in properties


# --- Alarms --------------------------------------------------------------------------------------------

ALARM_TOPIC = {"Ref": "AlarmTopic"}
# Alarm names start with the stack's name: the topic policy and the key policy admit CloudWatch for
# alarms matching it (aws:SourceArn), and the runbook entry is named by the rest.
ALARM_NAME_PREFIX = "${AWS::StackName}-"
# SNS asks KMS on CloudWatch's behalf with the topic's ARN as the encryption context.
ALARM_TOPIC_ENCRYPTION = {
    "StringEquals": {
        "kms:EncryptionContext:aws:sns:topicArn": {
            "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:"
            + ALARM_NAME_PREFIX
            + "alarms"
        }
    }
}
STACK_ALARMS_SOURCE = {
    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
    "ArnLike": {
        "aws:SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
            + ALARM_NAME_PREFIX
            + "*"
        }
    },
}
# The app's own metrics: Powertools EMF lines written by the functions (src/observability.py).
APP_NAMESPACE = "Stratus"
ADD_METRIC_NAME = re.compile(r"\.add_metric\(\s*name=[\"']([^\"']+)[\"']")
# What each metric an alarm watches is about: the logical id (and index) it names, as _metric_subject says.
REQUIRED_ALARM_METRICS = {
    ("AWS/ApiGateway", "5XXError", "Api"),
    ("AWS/ApiGateway", "Latency", "Api"),
    ("AWS/Lambda", "Errors", "ApiFunction"),
    ("AWS/Lambda", "Throttles", "ApiFunction"),
    ("AWS/Lambda", "Errors", "StreamFunction"),
    ("AWS/Lambda", "IteratorAge", "StreamFunction"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "StreamFailureQueue"),
    ("AWS/DynamoDB", "ReadThrottleEvents", "IdempotencyTable"),
    ("AWS/DynamoDB", "WriteThrottleEvents", "IdempotencyTable"),
    (APP_NAMESPACE, "RateLimitStorageErrors", "ApiFunction"),
    (APP_NAMESPACE, "FollowUpsLeftToStream", "ApiFunction"),
}
# Writes each named metric as the API function would: its observability module, its service name.
EMIT_APP_METRICS = """
import sys
from aws_lambda_powertools.metrics import MetricUnit
from observability import metrics
for name in sys.argv[1:]:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
"""


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _watched_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its one metric, or those of its metric math."""
    if "MetricName" in alarm:
        return [{key: alarm[key] for key in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def _function_environment(
    template: dict[str, Any], resources: dict[str, Any], function: str
) -> dict[str, Any]:
    """A function's environment variables as SAM deploys them: Globals, then the function's own."""
    variables: dict[str, Any] = function_properties(template, function, resources)["Environment"]["Variables"]
    return variables


def _metric_subject(metric: dict[str, Any], template: dict[str, Any], resources: dict[str, Any]) -> str:
    """The resource of this template a metric is about (`AppTable/gsi1` for an index); fails for any other."""
    namespace, dimensions = metric["Namespace"], {d["Name"]: d["Value"] for d in metric["Dimensions"]}

    def resource(reference: Any, resource_type: str) -> str:
        if "Fn::If" in reference:
            # The app table's two declarations (ReplicaRegions): the regional one stands for both.
            reference = reference["Fn::If"][2]
        name = reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]
        assert resources[name]["Type"] == resource_type, (metric, name)
        return str(name)

    if namespace == "AWS/Lambda":
        assert set(dimensions) == {"FunctionName"}, metric
        return resource(dimensions["FunctionName"], "AWS::Serverless::Function")
    if namespace == "AWS/SQS":
        assert set(dimensions) == {"QueueName"}, metric
        assert dimensions["QueueName"] == {
            "Fn::GetAtt": [resource(dimensions["QueueName"], "AWS::SQS::Queue"), "QueueName"]
        }
        return resource(dimensions["QueueName"], "AWS::SQS::Queue")
    if namespace == "AWS/DynamoDB":
        assert set(dimensions) in ({"TableName"}, {"TableName", "GlobalSecondaryIndexName"}), metric
        table = resource(dimensions["TableName"], "AWS::DynamoDB::Table")
        if "GlobalSecondaryIndexName" not in dimensions:
            return table
        indexes = {i["IndexName"] for i in resources[table]["Properties"].get("GlobalSecondaryIndexes", [])}
        assert dimensions["GlobalSecondaryIndexName"] in indexes, metric
        return f"{table}/{dimensions['GlobalSecondaryIndexName']}"
    if namespace == "AWS/ApiGateway":
        # A REST API's metrics are named by the API's name and stage, not by its id.
        assert set(dimensions) == {"ApiName", "Stage"}, metric
        (api,) = [
            name
            for name, r in resources.items()
            if r["Type"] == "AWS::Serverless::Api" and r["Properties"]["Name"] == dimensions["ApiName"]
        ]
        assert dimensions["Stage"] == resources[api]["Properties"]["StageName"], metric
        return api
    if namespace == APP_NAMESPACE:
        # Powertools names the emitting function by one dimension, its POWERTOOLS_SERVICE_NAME.
        assert set(dimensions) == {"service"}, metric
        (function,) = [
            name
            for name, r in resources.items()
            if r["Type"] == "AWS::Serverless::Function"
            and _function_environment(template, resources, name)["POWERTOOLS_SERVICE_NAME"]
            == dimensions["service"]
        ]
        return function
    if namespace == "AWS/WAFV2":
        # WAF names a web ACL's metrics by its metric name, the region, and a rule's metric name (or ALL).
        assert set(dimensions) == {"WebACL", "Region", "Rule"}, metric
        (acl,) = [
            name
            for name, r in resources.items()
            if r["Type"] == "AWS::WAFv2::WebACL"
            and r["Properties"]["VisibilityConfig"]["MetricName"] == dimensions["WebACL"]
        ]
        return acl
    raise AssertionError(f"an alarm on a namespace no resource of this template writes to: {metric}")


def _app_metric_names() -> set[str]:
    return {
        name
        for source in (ROOT / "src").rglob("*.py")
        for name in ADD_METRIC_NAME.findall(source.read_text())
    }


def _watch_section() -> str:
    (section,) = re.findall(
        r"^## Watch\n(.*?)(?=^## |\Z)", OPERATIONS_GUIDE.read_text(), re.DOTALL | re.MULTILINE
    )
    return str(section)


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_recovers(resources: dict[str, Any]) -> None:
    alarms = _alarms(resources)
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [ALARM_TOPIC], name
        assert alarm["OKActions"] == [ALARM_TOPIC], name
        # Every watched metric is quiet while all is well (no traffic, no errors, an empty queue).
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_every_alarm_watches_a_resource_of_this_stack(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    for name, alarm in _alarms(resources).items():
        metrics = _watched_metrics(alarm)
        assert metrics, name
        for metric in metrics:
            _metric_subject(metric, template, resources)
        if "Metrics" in alarm:
            # Metric math: one result, computed from exactly the queries the alarm declares.
            (result,) = [query for query in alarm["Metrics"] if query.get("ReturnData", True)]
            declared = {query["Id"] for query in alarm["Metrics"] if "MetricStat" in query}
            assert set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", result["Expression"])) == declared, name


def test_alarms_cover_the_gateway_both_functions_the_failure_queue_the_tables_and_the_apps_metrics(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    watched = {
        (metric["Namespace"], metric["MetricName"], _metric_subject(metric, template, resources))
        for alarm in _alarms(resources).values()
        for metric in _watched_metrics(alarm)
    }
    # The app table's throttles count per index too: a new index must join the alarm.
    indexes = [i["IndexName"] for i in resources["AppTable"]["Properties"]["GlobalSecondaryIndexes"]]
    app_table = {
        ("AWS/DynamoDB", metric, subject)
        for metric in ("ReadThrottleEvents", "WriteThrottleEvents")
        for subject in ["AppTable", *(f"AppTable/{index}" for index in indexes)]
    }
    missing = (REQUIRED_ALARM_METRICS | app_table) - watched
    assert not missing, f"no alarm watches {sorted(missing)}"


def test_app_metric_alarms_match_what_powertools_emits(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # The invocation's own EMF line (not add_metric) writes the request metrics: tests/test_template_observability.py
    # checks the alarms on those against a real request's line.
    alarmed = [
        metric
        for alarm in _alarms(resources).values()
        for metric in _watched_metrics(alarm)
        if metric["Namespace"] == APP_NAMESPACE and metric["MetricName"] not in REQUEST_LINE_METRICS
    ]
    emitted_names = _app_metric_names()
    assert {"RateLimitStorageErrors", "FollowUpsLeftToStream"} <= emitted_names  # the scan finds the calls
    for metric in alarmed:
        assert metric["MetricName"] in emitted_names, f"no add_metric call emits {metric['MetricName']}"
    # Emit every alarmed metric the way the API function does, with the service name the template gives it,
    # and read the EMF lines: CloudWatch matches an alarm to a metric only on the exact dimension set.
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in {"POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV"}
    }
    stack = {"AWS::StackName": "stratus-test"}
    environment["POWERTOOLS_SERVICE_NAME"] = _deployed_value(
        _function_environment(template, resources, "ApiFunction")["POWERTOOLS_SERVICE_NAME"], stack
    )
    environment["PYTHONPATH"] = str(ROOT / "src")
    finished = subprocess.run(
        [sys.executable, "-c", EMIT_APP_METRICS, *(metric["MetricName"] for metric in alarmed)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(alarmed), finished.stdout
    for metric, line in zip(alarmed, lines, strict=True):
        (directive,) = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == metric["Namespace"]
        assert [entry["Name"] for entry in directive["Metrics"]] == [metric["MetricName"]]
        (dimension_set,) = directive["Dimensions"]
        assert {name: line[name] for name in dimension_set} == {
            d["Name"]: _deployed_value(d["Value"], stack) for d in metric["Dimensions"]
        }, metric["MetricName"]


def test_alarms_on_metrics_named_by_the_app_or_the_api_see_only_this_stack(resources: dict[str, Any]) -> None:
    # API Gateway files metrics by API name and the app's EMF metrics by service name; both carry the
    # stack's name, so a second stack in the account (dev beside prod) never fires this one's alarms.
    named = [
        metric
        for alarm in _alarms(resources).values()
        for metric in _watched_metrics(alarm)
        if metric["Namespace"] in (APP_NAMESPACE, "AWS/ApiGateway")
    ]
    assert named
    for metric in named:
        assert "AWS::StackName" in json.dumps(metric["Dimensions"]), metric
    assert resources["Api"]["Properties"]["Name"] == {"Ref": "AWS::StackName"}


def test_cloudwatch_may_publish_to_the_encrypted_topic_for_this_stacks_alarms_only(
    resources: dict[str, Any],
) -> None:
    topic = resources["AlarmTopic"]["Properties"]
    # A customer managed key: the AWS managed alias/aws/sns does not admit CloudWatch, and its policy is fixed.
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AppKey", "Arn"]}
    assert topic["TopicName"] == {"Fn::Sub": ALARM_NAME_PREFIX + "alarms"}
    key_grants = [
        statement
        for statement in resources["AppKey"]["Properties"]["KeyPolicy"]["Statement"]
        if statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert [(set(s["Action"]), s["Effect"], s["Condition"]) for s in key_grants] == [
        ({"kms:Decrypt", "kms:GenerateDataKey*"}, "Allow", ALARM_TOPIC_ENCRYPTION)
    ]
    policy = resources["AlarmTopicPolicy"]["Properties"]
    assert policy["Topics"] == [ALARM_TOPIC]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "StackAlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": ALARM_TOPIC,
            "Condition": STACK_ALARMS_SOURCE,
        }
    ]
    # Both policies admit alarms by name: an alarm named otherwise could not notify anyone.
    for name, alarm in _alarms(resources).items():
        assert fnmatch.fnmatchcase(alarm["AlarmName"]["Fn::Sub"], ALARM_NAME_PREFIX + "*"), name


def test_alarm_email_is_subscribed_only_when_given(template: dict[str, Any]) -> None:
    def subscriptions(**parameters: str) -> list[Any]:
        resources = deployed_resources(template, **parameters)
        # The topic exists either way, so every alarm always has an action.
        assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
        return [r["Properties"] for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]

    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert subscriptions() == []
    assert subscriptions(AlarmEmail="oncall@example.com") == [
        {"TopicArn": ALARM_TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    ]
    pattern = template["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "oncall@example.com")
    assert not re.fullmatch(pattern, "oncall")


def test_every_alarm_names_its_runbook_entry_and_every_entry_an_alarm(resources: dict[str, Any]) -> None:
    # GitHub makes the heading ### `api-5xx` the anchor #api-5xx.
    entries = set(re.findall(r"^### `([a-z0-9-]+)`$", _watch_section(), re.MULTILINE))
    runbooks = set()
    for name, alarm in _alarms(resources).items():
        suffix = alarm["AlarmName"]["Fn::Sub"].removeprefix(ALARM_NAME_PREFIX)
        assert f"docs/operations.md#{suffix}" in alarm["AlarmDescription"], name
        runbooks.add(suffix)
    assert runbooks == entries


def test_latency_alarm_fires_before_requests_time_out(
    resources: dict[str, Any], api_function: dict[str, Any]
) -> None:
    (alarm,) = [
        a
        for a in _alarms(resources).values()
        if a.get("Namespace") == "AWS/ApiGateway" and a["MetricName"] == "Latency"
    ]
    assert alarm["ExtendedStatistic"] == "p99"
    # Below the function's timeout (then the gateway's 29 s): after that, requests fail instead of slowing.
    assert alarm["Threshold"] < api_function["Timeout"] * 1000 < 29_000


# --- Lambda requirements -------------------------------------------------------------------------------


def test_lambda_requirements_are_the_runtime_set_of_uv_lock() -> None:
    lambda_requirements = load_tool("lambda_requirements")
    uv = lambda_requirements.find_uv()
    if uv is None:
        missing_prerequisite(
            "uv not found: requirements/lambda.txt cannot be checked", "set UV or put uv on PATH"
        )
    expected = lambda_requirements.render(uv)
    assert LAMBDA_REQUIREMENTS.read_text() == expected, "stale: run `make lambda-requirements`"


def test_lambda_requirements_hold_no_development_tools() -> None:
    pinned = {
        re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in LAMBDA_REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert pinned, "no requirements found"
    assert not pinned & DEV_ONLY_PACKAGES
    # Markers are decided for Lambda when the file is made: pip would evaluate them for the build machine.
    assert ";" not in LAMBDA_REQUIREMENTS.read_text()
