"""The runtime options deploy what they say: one dependencies layer for every function; SnapStart or
provisioned concurrency on the alias API Gateway calls, never both; the functions in a VPC with the
endpoints they need; the pool's signing keys in the token-verifying functions' environment, within Lambda's
budget; and the container-image variant (Dockerfile, tools/image_template.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cloudformation import (
    CloudFormationLoader,
    function_properties,
    keeps_the_shared_layer,
    load_template,
)
from tests.prerequisites import missing_prerequisite
from tests.runtime_environment import LAMBDA_ENVIRONMENT_LIMIT, deployed_environment, environment_size
from tests.test_template import condition_is_true, deployed_resources, load_tool, resolve_conditions

ROOT = Path(__file__).resolve().parent.parent
SAM_ENVIRONMENT = {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
SAM_TOOLS = ROOT / ".tools" / "sam" / "bin"
NO_VALUE = {"Ref": "AWS::NoValue"}
# The functions that serve requests (in the VPC when there is one) and the one that runs at deployment.
REQUEST_FUNCTIONS = ("ApiFunction", "StreamFunction", "PartnerAuthorizerFunction")
IN_A_VPC = {"SubnetIds": "subnet-0a1,subnet-0b2", "SecurityGroupIds": "sg-0c3", "EnablePartnerTier": "true"}
# The endpoint parameter that serves each AWS service the code calls (sts: credential providers of local
# profiles only; Lambda hands functions their credentials).
ENDPOINT_OF_SERVICE = {
    "dynamodb": "DynamoDbVpcEndpoint",
    "secretsmanager": "SecretsManagerVpcEndpoint",
    "kms": "KmsVpcEndpoint",
    "cognito-idp": "CognitoVpcEndpoint",
    "apigateway": "ApiGatewayVpcEndpoint",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _parameters(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(overrides)
    return values


def _globals(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    parameters = _parameters(template, **overrides)
    resolved: dict[str, Any] = resolve_conditions(
        template["Globals"]["Function"], lambda name: condition_is_true(template, name, parameters)
    )
    return resolved


# --- Rules ---------------------------------------------------------------------------------------------


def _rule_holds(template: dict[str, Any], name: str, **overrides: str) -> bool:
    """A rule of the template evaluated as CloudFormation does before it changes anything."""
    parameters = _parameters(template, **overrides)
    types = {name: spec["Type"] for name, spec in template["Parameters"].items()}

    def value(expression: Any) -> Any:
        if isinstance(expression, dict) and set(expression) == {"Ref"}:
            raw = parameters[expression["Ref"]]
            return raw.split(",") if types[expression["Ref"]] == "CommaDelimitedList" else raw
        return evaluate(expression)

    def evaluate(expression: Any) -> Any:
        if not isinstance(expression, dict):
            return expression
        (function, argument), *_ = expression.items()
        if function == "Fn::Equals":
            return str(value(argument[0])) == str(value(argument[1]))
        if function == "Fn::EachMemberEquals":
            return all(member == argument[1] for member in value(argument[0]))
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(item) for item in argument)
        if function == "Fn::Or":
            return any(evaluate(item) for item in argument)
        raise AssertionError(f"unsupported in a rule: {function}")

    rule = template["Rules"][name]
    if "RuleCondition" in rule and not evaluate(rule["RuleCondition"]):
        return True
    return all(evaluate(assertion["Assert"]) for assertion in rule["Assertions"])


def _rules_hold(template: dict[str, Any], **overrides: str) -> bool:
    return all(_rule_holds(template, name, **overrides) for name in template["Rules"])


def test_the_defaults_pass_every_rule(template: dict[str, Any]) -> None:
    assert _rules_hold(template)


# --- The dependencies layer ----------------------------------------------------------------------------


def test_every_function_gets_its_dependencies_from_the_one_layer(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "DependenciesLayer"}]
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            # A function's own list would be added to the shared one; an If (the API function's, with
            # the tracing layer) replaces it, so it names the shared layer first in every branch.
            assert keeps_the_shared_layer(resource["Properties"], "DependenciesLayer"), name
    layers = [
        name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"
    ]
    assert layers == ["DependenciesLayer"]


def test_the_layer_is_built_for_python313_arm64_by_its_makefile(template: dict[str, Any]) -> None:
    layer = template["Resources"]["DependenciesLayer"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    properties = layer["Properties"]
    assert properties["CompatibleRuntimes"] == [template["Globals"]["Function"]["Runtime"]] == ["python3.13"]
    assert properties["CompatibleArchitectures"] == template["Globals"]["Function"]["Architectures"]
    # Its content is requirements/: a changed lambda.txt is a changed layer for SAM's build cache.
    makefile = ROOT / properties["ContentUri"] / "Makefile"
    assert re.search(r"^build-DependenciesLayer:", makefile.read_text(), re.MULTILINE)
    assert (ROOT / properties["ContentUri"] / "lambda.txt").is_file()


# --- Pre-warming ---------------------------------------------------------------------------------------


def test_api_gateway_calls_the_alias_every_deployment_moves(template: dict[str, Any]) -> None:
    api_function = template["Resources"]["ApiFunction"]["Properties"]
    assert api_function["AutoPublishAlias"] == "live"
    body = json.dumps(deployed_resources(template, EnablePartnerTier="true")["Api"]["Properties"])
    assert "${ApiFunction.Arn}" not in body
    assert "/functions/${ApiFunction.Alias}/invocations" in body
    permission = template["Resources"]["ApiFunctionInvokePermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "ApiFunction.Alias"}


def test_by_default_nothing_is_pre_warmed(template: dict[str, Any]) -> None:
    api_function = deployed_resources(template)["ApiFunction"]["Properties"]
    assert "SnapStart" not in api_function
    assert "ProvisionedConcurrencyConfig" not in api_function


def test_snapstart_snapshots_the_published_versions(template: dict[str, Any]) -> None:
    api_function = deployed_resources(template, SnapStart="true")["ApiFunction"]["Properties"]
    assert api_function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "ProvisionedConcurrencyConfig" not in api_function
    # Lambda offers SnapStart for Python from 3.12 on.
    assert template["Globals"]["Function"]["Runtime"] in ("python3.12", "python3.13")


def test_provisioned_concurrency_warms_the_alias(template: dict[str, Any]) -> None:
    api_function = deployed_resources(template, ProvisionedConcurrency="3")["ApiFunction"]["Properties"]
    assert api_function["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": {"Ref": "ProvisionedConcurrency"}
    }
    assert "SnapStart" not in api_function


def test_snapstart_and_provisioned_concurrency_are_never_both_deployed(template: dict[str, Any]) -> None:
    assert _rules_hold(template, SnapStart="true")
    assert _rules_hold(template, ProvisionedConcurrency="2")
    assert not _rule_holds(template, "PreWarmingOneWayAtMost", SnapStart="true", ProvisionedConcurrency="2")


# --- VPC -----------------------------------------------------------------------------------------------


def test_without_subnets_no_function_is_in_a_vpc(template: dict[str, Any]) -> None:
    assert "VpcConfig" not in _globals(template)
    resources = deployed_resources(template, EnablePartnerTier="true")
    for name in REQUEST_FUNCTIONS:
        assert "ManagedPolicyArns" not in resources[f"{name}Role"]["Properties"], name
    assert "VpcEndpoints" not in resources


def test_with_subnets_the_request_functions_run_in_the_vpc(template: dict[str, Any]) -> None:
    assert _globals(template, **IN_A_VPC)["VpcConfig"] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    resources = deployed_resources(template, **IN_A_VPC)
    for name in REQUEST_FUNCTIONS:
        assert "VpcConfig" not in resources[name]["Properties"], f"{name} overrides the VPC"
        (policy,) = resources[f"{name}Role"]["Properties"]["ManagedPolicyArns"]
        assert policy["Fn::Sub"].endswith(":iam::aws:policy/service-role/AWSLambdaENIManagementAccess")
    # The deployment-time function reads a public document on Cognito's public endpoint: never in the VPC.
    assert resources["SigningKeysFunction"]["Properties"]["VpcConfig"] == {
        "SubnetIds": [],
        "SecurityGroupIds": [],
    }


def test_subnets_and_security_groups_come_together(template: dict[str, Any]) -> None:
    assert _rules_hold(template, **IN_A_VPC)
    assert not _rules_hold(template, SubnetIds="subnet-0a1")
    assert not _rules_hold(template, SecurityGroupIds="sg-0c3")


def test_endpoints_need_the_vpc_and_the_gateway_endpoint_its_route_tables(template: dict[str, Any]) -> None:
    assert not _rules_hold(template, SecretsManagerVpcEndpoint="true")
    assert not _rules_hold(template, **IN_A_VPC, SecretsManagerVpcEndpoint="true")
    assert _rules_hold(template, **IN_A_VPC, VpcId="vpc-0d4", SecretsManagerVpcEndpoint="true")
    assert not _rules_hold(template, **IN_A_VPC, VpcId="vpc-0d4", DynamoDbVpcEndpoint="true")
    assert _rules_hold(
        template, **IN_A_VPC, VpcId="vpc-0d4", DynamoDbVpcEndpoint="true", VpcRouteTableIds="rtb-0e5,rtb-0f6"
    )


@pytest.fixture(scope="module")
def endpoints_template(template: dict[str, Any]) -> dict[str, Any]:
    location = template["Resources"]["VpcEndpoints"]["Properties"]["Location"]
    return load_template(ROOT / location)


def _endpoints(endpoints_template: dict[str, Any], **flags: str) -> dict[str, Any]:
    parameters = {
        "VpcId": "vpc-0d4",
        "SubnetIds": "subnet-0a1,subnet-0b2",
        "FunctionSecurityGroupId": "sg-0c3",
        "RouteTableIds": "rtb-0e5",
        **{name: "false" for name in ("DynamoDb", "SecretsManager", "Kms", "Cognito", "ApiGateway")},
        **flags,
    }
    return {
        name: resource
        for name, resource in endpoints_template["Resources"].items()
        if "Condition" not in resource
        or condition_is_true(endpoints_template, resource["Condition"], parameters)
    }


def test_each_endpoint_parameter_creates_its_endpoint_only(
    template: dict[str, Any], endpoints_template: dict[str, Any]
) -> None:
    passed = template["Resources"]["VpcEndpoints"]["Properties"]["Parameters"]
    for flag in ("DynamoDb", "SecretsManager", "Kms", "Cognito", "ApiGateway"):
        assert passed[flag] == {"Ref": f"{flag}VpcEndpoint"}
        created = _endpoints(endpoints_template, **{flag: "true"})
        services = {
            resource["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]
            for resource in created.values()
            if resource["Type"] == "AWS::EC2::VPCEndpoint"
        }
        assert (
            services
            == {
                "DynamoDb": {"dynamodb"},
                "SecretsManager": {"secretsmanager"},
                "Kms": {"kms"},
                "Cognito": {"cognito-idp"},
                "ApiGateway": {"apigateway"},
            }[flag]
        )
    # The nested stack exists when any endpoint does.
    assert template["Conditions"]["HasVpcEndpoints"]["Fn::Or"] == [
        {"Fn::Equals": [{"Ref": f"{flag}VpcEndpoint"}, "true"]}
        for flag in ("DynamoDb", "SecretsManager", "Kms", "Cognito", "ApiGateway")
    ]


def test_interface_endpoints_admit_the_functions_on_https_with_private_dns(
    endpoints_template: dict[str, Any],
) -> None:
    created = _endpoints(endpoints_template, SecretsManager="true", Cognito="true")
    group = created["EndpointSecurityGroup"]["Properties"]
    assert group["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "SourceSecurityGroupId": {"Ref": "FunctionSecurityGroupId"},
            "Description": "The Stratus functions",
        }
    ]
    for name in ("SecretsManagerEndpoint", "CognitoEndpoint"):
        properties = created[name]["Properties"]
        assert properties["VpcEndpointType"] == "Interface"
        assert properties["PrivateDnsEnabled"] is True
        assert properties["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    gateway = _endpoints(endpoints_template, DynamoDb="true")
    assert "EndpointSecurityGroup" not in gateway
    assert gateway["DynamoDbEndpoint"]["Properties"]["VpcEndpointType"] == "Gateway"
    assert gateway["DynamoDbEndpoint"]["Properties"]["RouteTableIds"] == {
        "Fn::Split": [",", {"Ref": "RouteTableIds"}]
    }


def test_every_service_the_code_calls_has_an_endpoint_option() -> None:
    used = set(load_tool("build_lambda").services_used(ROOT / "src"))
    assert "dynamodb" in used
    # Lambda and CodeDeploy are called by the pre-traffic hook only, which stays outside the VPC.
    assert used - {"sts", "lambda", "codedeploy"} <= set(ENDPOINT_OF_SERVICE)


# --- Signing keys shipped with the deployment ----------------------------------------------------------


def test_the_token_verifying_functions_get_the_pools_keys_from_the_deployment(
    template: dict[str, Any],
) -> None:
    for name in ("ApiFunction", "PartnerAuthorizerFunction"):
        variables = function_properties(template, name)["Environment"]["Variables"]
        assert variables["COGNITO_JWKS"] == {"Fn::GetAtt": ["PoolSigningKeys", "Jwks"]}, name
    keys = template["Resources"]["PoolSigningKeys"]
    assert keys["Type"] == "Custom::PoolSigningKeys"
    assert keys["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SigningKeysFunction", "Arn"]}
    # The URL Settings derives for the pool (settings.jwks_url), on AWS's own endpoint.
    assert keys["Properties"]["JwksUrl"] == {
        "Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}/.well-known/jwks.json"
    }


def test_the_signing_keys_function_may_only_write_its_logs(template: dict[str, Any]) -> None:
    function = function_properties(template, "SigningKeysFunction")
    assert function["Handler"] == "functions/signing_keys.handler"
    assert function["Tracing"] == "PassThrough"
    (policy,) = template["Resources"]["SigningKeysFunctionRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert statement["Resource"] == {"Fn::GetAtt": ["SigningKeysFunctionLogGroup", "Arn"]}


@pytest.mark.parametrize("function", ["ApiFunction", "PartnerAuthorizerFunction", "StreamFunction"])
def test_each_environment_fits_lambdas_budget_with_the_keys(function: str, record_property: Any) -> None:
    variables = deployed_environment(function, parameters={"EnablePartnerTier": "true", "Stage": "prod"})
    size = environment_size(variables)
    record_property(f"{function}_environment_bytes", size)
    print(f"\n{function}: environment {size} bytes of {LAMBDA_ENVIRONMENT_LIMIT}")
    # Room left for what later work adds: half the budget at most.
    assert size <= LAMBDA_ENVIRONMENT_LIMIT // 2


# --- The container-image variant -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    output = tmp_path_factory.mktemp("image") / "template-image.yaml"
    load_tool("image_template").write(output)
    variant: dict[str, Any] = yaml.load(output.read_text(), Loader=CloudFormationLoader)
    return output, variant


def test_the_image_variant_deploys_every_function_from_the_dockerfile(
    template: dict[str, Any], image_template: tuple[Path, dict[str, Any]]
) -> None:
    output, variant = image_template
    functions = {n: r for n, r in variant["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == {
        n for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["PackageType"] == "Image"
        assert properties["ImageConfig"]["Command"] == [template["Resources"][name]["Properties"]["Handler"]]
        assert not {"CodeUri", "Handler", "Runtime", "Layers", "SnapStart"} & set(properties), name
        context = (output.parent / function["Metadata"]["DockerContext"]).resolve()
        assert (context / function["Metadata"]["Dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert not {"Runtime", "Layers"} & set(variant["Globals"]["Function"])
    assert variant["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert "DependenciesLayer" not in variant["Resources"]
    # Lambda offers SnapStart for zip functions only; provisioned concurrency stays.
    assert "SnapStart" not in variant["Parameters"]
    assert "ProvisionedConcurrencyConfig" in variant["Resources"]["ApiFunction"]["Properties"]
    # No layer, so no ADOT: tracing is off, and the wrapper it would name is never set.
    assert variant["Parameters"]["Tracing"]["AllowedValues"] == ["off"]
    assert "AdotPythonLayer" not in variant.get("Mappings", {})
    nested = variant["Resources"]["VpcEndpoints"]["Properties"]["Location"]
    assert (output.parent / nested).resolve() == ROOT / "templates" / "vpc-endpoints.yaml"


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_image_is_aws_python313_arm64_with_the_locked_dependencies_and_bytecode() -> None:
    instructions = _dockerfile()
    base = next(line for line in instructions if line.startswith("ARG BASE_IMAGE="))
    assert base == "ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.13"
    assert "FROM --platform=linux/arm64 ${BASE_IMAGE}" in instructions
    # The dependencies are requirements/lambda.txt: derived from uv.lock (test_template checks it is current).
    assert "COPY requirements/lambda.txt /tmp/lambda.txt" in instructions
    (install,) = [line for line in instructions if "pip install" in line]
    for flag in (
        "--no-deps",
        "--only-binary=:all:",
        "--requirement /tmp/lambda.txt",
        '--target "${LAMBDA_TASK_ROOT}"',
    ):
        assert flag in install
    assert "COPY src/ ${LAMBDA_TASK_ROOT}/" in instructions
    (compile_step,) = [line for line in instructions if "compileall" in line]
    assert "--invalidation-mode unchecked-hash" in compile_step
    assert instructions[-1] == 'CMD ["main.handler"]'
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"*", "!requirements/lambda.txt", "!src/", "src/Makefile", "**/__pycache__"} <= set(ignored)


@pytest.mark.slow
def test_sam_validate_lint_passes_on_the_image_variant(image_template: tuple[Path, dict[str, Any]]) -> None:
    sam = SAM_TOOLS / "sam"
    if not sam.exists():
        missing_prerequisite("SAM CLI not installed", "make sam-tools")
    output, _ = image_template
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--template-file", str(output)],
        cwd=output.parent,
        env={**os.environ, **SAM_ENVIRONMENT},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- SAM's own translation -----------------------------------------------------------------------------

_TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse
class NoManagedPolicies:
    def load(self):
        return {}
template = yaml_parse(open(sys.argv[1]).read())
# As `sam package` leaves it: local artifacts uploaded, their places in S3.
for name, resource in template["Resources"].items():
    properties = resource.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(properties.get(key), str):
            properties[key] = f"s3://artifacts/{name}.zip"
    if resource["Type"] == "AWS::Serverless::Application":
        properties["Location"] = f"https://artifacts.s3.amazonaws.com/{name}.yaml"
print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())["Resources"]))
"""


def _translated(**parameters: str) -> dict[str, Any]:
    python = SAM_TOOLS / "python"
    if not python.exists():
        missing_prerequisite("SAM CLI not installed: SAM's translation is not checked", "make sam-tools")
    result = subprocess.run(
        [str(python), "-c", _TRANSLATE, str(ROOT / "template.yaml"), json.dumps(parameters)],
        env={**os.environ, **SAM_ENVIRONMENT},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resources: dict[str, Any] = json.loads(result.stdout)
    return resources


def test_sam_turns_the_options_into_lambdas_own_properties() -> None:
    resources = _translated(SnapStart="true", ProvisionedConcurrency="0")
    function = resources["ApiFunction"]["Properties"]
    assert function["SnapStart"]["Fn::If"][1] == {"ApplyOn": "PublishedVersions"}
    assert function["VpcConfig"]["Fn::If"][0] == "InVpc"
    # SAM names each layer version after its content, and renames the references inside the API function's
    # If (with and without the tracing layer) too.
    _, with_tracing, without_tracing = function["Layers"]["Fn::If"]
    layer = without_tracing[0]
    assert without_tracing == [layer] == with_tracing[:1]
    assert resources[layer["Ref"]]["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Ref"].startswith("DependenciesLayer")
    (alias,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Alias"]
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["ProvisionedConcurrencyConfig"]["Fn::If"][0] == "UseProvisionedConcurrency"
    assert resources["SigningKeysFunction"]["Properties"]["VpcConfig"] == {
        "SubnetIds": [],
        "SecurityGroupIds": [],
    }
