"""The edge and delivery parts of the templates against the code they deploy: every template file (the root,
its nested stacks, the us-east-1 edge stack) is wired consistently and validated by `make validate`; the
CDN stack passes what the app checks (origin secret, viewer address and host) and runs the functions the
tests run; the custom domain and the CDN exist only when asked for; the API function deploys through its
live alias with CodeDeploy rolling back on the existing alarms, after a pre-traffic hook whose role allows
exactly the calls it makes."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore import xform_name
from edge_auth import PUBLIC_PATHS, PUBLIC_PREFIXES

import gateway
from docs import ASSETS_URL, DOCS_URL, REDOC_URL, VENDOR_ASSETS_URL
from functions import pre_traffic
from tests.cloudformation import function_properties, load_template
from tests.test_template import _references, condition_is_true, deployed_resources

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
TEMPLATE_FILES = [ROOT / "template.yaml", *sorted(TEMPLATES.glob("*.yaml"))]
SAMCONFIG = ROOT / "samconfig.toml"
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"
HOOK_SOURCE = ROOT / "src" / "functions" / "pre_traffic.py"

# Resources SAM generates, which the raw templates may name: the CodeDeploy application of the alias, and
# the `<function>.Alias|Version` / `<api>.Stage` references it resolves.
SAM_GENERATED = {"ServerlessDeploymentApplication"}
PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
CLOUDFRONT_HOSTED_ZONE = "Z2FDTNDATAQYW2"
# SAM's predefined CodeDeploy configurations for Lambda (samtranslator's deployment preferences).
SAM_DEPLOYMENT_TYPES = {
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
}
IAM_ACTION_OF_OPERATION = {"lambda:Invoke": "lambda:InvokeFunction"}
EVERY_EDGE_OPTION = {
    "EnableCdn": "true",
    "EdgeAuthVersionArn": "arn:aws:lambda:us-east-1:123456789012:function:stratus-prod-edge-auth:3",
    "DomainName": "api.example.com",
    "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    "HostedZoneId": "Z0123456789ABC",
    "CdnWebAclArn": "arn:aws:wafv2:us-east-1:123456789012:global/webacl/stratus/abc",
    "CdnLogBucket": "stratus-logs",
    "EnablePartnerTier": "true",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def cdn_template() -> dict[str, Any]:
    return load_template(TEMPLATES / "cdn.yaml")


@pytest.fixture(scope="module")
def edge_template() -> dict[str, Any]:
    return load_template(TEMPLATES / "edge-auth.yaml")


# --- every template file -------------------------------------------------------------------------------------


def _intrinsics(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("Ref", "Fn::GetAtt", "Fn::Sub", "Fn::If", "Condition"):
                yield key, item
            yield from _intrinsics(item)
    elif isinstance(value, list):
        for item in value:
            yield from _intrinsics(item)


def _names_in_sub(argument: Any) -> set[str]:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    # ${!Literal} is an escape; dynamic references ({{resolve:...}}) hold ${...} of the Sub itself.
    return {name for name in re.findall(r"\$\{([^}!]+)\}", text) if name not in variables}


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda path: path.name)
def test_every_template_names_only_what_it_defines(path: Path) -> None:
    template = load_template(path)
    assert template.get("Description"), path.name
    parameters = set(template.get("Parameters", {}))
    resources = set(template["Resources"])
    conditions = set(template.get("Conditions", {}))
    known = parameters | resources | PSEUDO_PARAMETERS | SAM_GENERATED
    sections = [template["Resources"], template.get("Outputs", {}), template.get("Conditions", {})]
    for function, argument in (pair for section in sections for pair in _intrinsics(section)):
        if function == "Ref":
            assert str(argument).split(".", 1)[0] in known, (path.name, argument)
        elif function == "Fn::GetAtt":
            assert argument[0] in resources, (path.name, argument)
        elif function == "Fn::Sub":
            for name in _names_in_sub(argument):
                assert name.split(".", 1)[0] in known, (path.name, name)
        elif function == "Fn::If":
            assert argument[0] in conditions, (path.name, argument[0])
        elif function == "Condition" and isinstance(argument, str):  # (an IAM statement's is a mapping)
            assert argument in conditions, (path.name, argument)


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda path: path.name)
def test_every_parameter_of_every_template_is_used(path: Path) -> None:
    template = load_template(path)
    text = path.read_text()
    for name in template.get("Parameters", {}):
        uses = len(re.findall(rf"!Ref {name}\b|\$\{{{name}\}}|Ref: {name}\b", text))
        assert uses, f"{path.name}: parameter {name} is never used"


def test_make_validate_lints_every_template_file() -> None:
    """`make validate` (part of `make test`) is where each template, template.yaml included, gets `sam
    validate --lint`; the suite does not run that again."""
    dry_run = subprocess.run(
        ["make", "-n", "validate"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    (loop,) = re.findall(r"for template in ([^;]+);", dry_run)
    assert sorted(loop.split()) == sorted(str(path.relative_to(ROOT)) for path in TEMPLATE_FILES)


def _nested_applications(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Application"
    }


def test_every_template_file_is_deployed_by_the_root_or_is_the_edge_stack(template: dict[str, Any]) -> None:
    nested = {str(app["Properties"]["Location"]) for app in _nested_applications(template).values()}
    listed = {str(path.relative_to(ROOT)) for path in TEMPLATES.glob("*.yaml")}
    # The edge stack is deployed on its own, in us-east-1 (samconfig.toml's edge environments).
    assert listed == nested | {"templates/edge-auth.yaml"}


@pytest.mark.parametrize("application", ["CdnStack", "DomainStack"])
def test_nested_stacks_get_every_parameter_they_need_and_no_other(
    template: dict[str, Any], application: str
) -> None:
    properties = template["Resources"][application]["Properties"]
    child = load_template(ROOT / properties["Location"])
    passed = properties["Parameters"]
    declared = child["Parameters"]
    assert set(passed) <= set(declared), f"{application} passes unknown {set(passed) - set(declared)}"
    required = {name for name, spec in declared.items() if "Default" not in spec}
    assert required <= set(passed), f"{application} lacks {required - set(passed)}"
    parent_parameters = template["Parameters"]
    for name, value in passed.items():
        if not (isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parent_parameters):
            continue
        parent, spec = parent_parameters[value["Ref"]], declared[name]
        # Whatever the root accepts, the nested stack accepts too (else the nested stack's update fails).
        if "AllowedValues" in spec:
            assert set(parent["AllowedValues"]) <= set(spec["AllowedValues"]), name
        if "AllowedPattern" in spec and spec.get("Default") is not None:
            assert re.fullmatch(spec["AllowedPattern"], str(parent.get("Default", ""))), name


# --- what exists with which parameters ---------------------------------------------------------------------


def test_the_cdn_and_the_custom_domain_are_off_by_default(template: dict[str, Any]) -> None:
    resources = deployed_resources(template)
    assert not {"CdnStack", "DomainStack", "CdnOriginSecret"} & set(resources)
    # The endpoint the stack always had: edge-optimized.
    endpoint = resources["Api"]["Properties"]["EndpointConfiguration"]
    assert endpoint == {"Type": "EDGE"}
    assert "CDN_ORIGIN_SECRET_ARN" not in resources["ApiFunction"]["Properties"]["Environment"]["Variables"]


def test_with_the_cdn_the_api_is_regional_and_protected_by_the_origin_secret(
    template: dict[str, Any],
) -> None:
    resources = deployed_resources(template, EnableCdn="true")
    assert {"CdnStack", "CdnOriginSecret"} <= set(resources)
    assert "DomainStack" not in resources
    assert resources["Api"]["Properties"]["EndpointConfiguration"] == {"Type": "REGIONAL"}
    variables = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CDN_ORIGIN_SECRET_ARN"] == {"Ref": "CdnOriginSecret"}
    statements = {
        statement["Sid"]: statement
        for policy in resources["ApiFunctionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    }
    secret = resources["CdnOriginSecret"]["Properties"]
    # The role names the secret by its name: Secrets Manager's ARN adds six random characters.
    granted = statements["ReadCdnOriginSecret"]["Resource"]["Fn::Sub"]
    assert granted.endswith(":secret:" + secret["Name"]["Fn::Sub"] + "-??????")
    assert secret["KmsKeyId"] == {"Fn::GetAtt": ["AppKey", "Arn"]}
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "current"
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32


def test_a_custom_domain_without_the_cdn_is_api_gateways_with_a_base_path(template: dict[str, Any]) -> None:
    resources = deployed_resources(
        template, DomainName="api.example.com", CertificateArn=EVERY_EDGE_OPTION["CertificateArn"]
    )
    assert "DomainStack" in resources
    assert "CdnStack" not in resources
    assert resources["Api"]["Properties"]["EndpointConfiguration"] == {"Type": "REGIONAL"}
    assert resources["DomainStack"]["Properties"]["Parameters"]["BasePath"] == {"Ref": "ApiBasePath"}
    assert template["Parameters"]["ApiBasePath"]["Default"] == "v1"


def test_with_the_cdn_the_custom_domain_is_the_distributions(template: dict[str, Any]) -> None:
    resources = deployed_resources(template, **EVERY_EDGE_OPTION)
    assert "DomainStack" not in resources
    passed = resources["CdnStack"]["Properties"]["Parameters"]
    for name in ("DomainName", "CertificateArn", "HostedZoneId"):
        assert passed[name] == {"Ref": name}


def test_a_domain_needs_its_certificate_and_the_edge_check_needs_the_cdn(template: dict[str, Any]) -> None:
    rules = template["Rules"]
    domain = rules["DomainNameNeedsItsCertificate"]
    assert domain["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]}
    assert domain["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CertificateArn"}, ""]}]}
    edge = rules["EdgeAuthRunsOnTheCdn"]
    assert edge["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "EnableCdn"}, "true"]}


@pytest.mark.parametrize(
    "parameters",
    [{"EnableCdn": "true"}, EVERY_EDGE_OPTION, {"DomainName": "api.example.com", "PreTrafficHook": "false"}],
    ids=["cdn", "every-edge-option", "domain-without-hook"],
)
def test_resources_depend_on_each_other_without_a_cycle_with_the_edge(
    template: dict[str, Any], parameters: dict[str, str]
) -> None:
    resources = deployed_resources(template, **parameters)
    needs = {
        name: {
            other for other in _references(_as_transformed(resource)) if other in resources and other != name
        }
        for name, resource in resources.items()
    }
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


def _as_transformed(resource: dict[str, Any]) -> dict[str, Any]:
    """What a resource refers to once SAM has transformed it: a function's DeploymentPreference moves to the
    CodeDeploy deployment group, which the function's alias (not the function) depends on."""
    properties = resource.get("Properties", {})
    return {name: value for name, value in properties.items() if name != "DeploymentPreference"}


# --- the CDN stack -------------------------------------------------------------------------------------------


def _distribution(cdn_template: dict[str, Any], **parameters: str) -> dict[str, Any]:
    defaults = {
        "ApiId": "abc123",
        "ApiStage": "prod",
        "OriginSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        **parameters,
    }
    config: dict[str, Any] = deployed_resources(cdn_template, **defaults)["Distribution"]["Properties"][
        "DistributionConfig"
    ]
    return config


def test_the_distribution_sends_the_origin_secret_the_app_checks(cdn_template: dict[str, Any]) -> None:
    (origin,) = _distribution(cdn_template)["Origins"]
    (header,) = origin["OriginCustomHeaders"]
    assert header["HeaderName"].lower() == gateway.ORIGIN_SECRET_HEADER
    # A dynamic reference: CloudFormation reads the value; no parameter or output of any stack holds it.
    reference = header["HeaderValue"]["Fn::Sub"]
    assert reference == "{{resolve:secretsmanager:${OriginSecretArn}:SecretString:current}}"
    versioned = _distribution(cdn_template, OriginSecretVersion="a" * 36)["Origins"][0][
        "OriginCustomHeaders"
    ][0]
    assert versioned["HeaderValue"]["Fn::Sub"].endswith(":SecretString:current::${OriginSecretVersion}}}")
    assert origin["OriginPath"] == {"Fn::Sub": "/${ApiStage}"}
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]


def test_api_paths_are_never_cached_and_reach_the_api_with_the_viewers_headers(
    cdn_template: dict[str, Any],
) -> None:
    behavior = _distribution(cdn_template)["DefaultCacheBehavior"]
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    # Every viewer header but Host (API Gateway routes by its own), with CloudFront-Viewer-Address.
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert set(behavior["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
    assert behavior["ViewerProtocolPolicy"] == "https-only"
    assert behavior["Compress"] is True
    assert behavior["ResponseHeadersPolicyId"] == {"Ref": "SecurityHeadersPolicy"}


def test_the_cached_behaviors_are_exactly_the_apps_public_docs(cdn_template: dict[str, Any]) -> None:
    behaviors = {b["PathPattern"]: b for b in _distribution(cdn_template)["CacheBehaviors"]}
    assert set(behaviors) == {f"{DOCS_URL}/*", DOCS_URL, REDOC_URL, "/openapi.json"}
    assert VENDOR_ASSETS_URL.startswith(f"{DOCS_URL}/")
    assert ASSETS_URL.startswith(f"{DOCS_URL}/")
    assert behaviors[f"{DOCS_URL}/*"]["CachePolicyId"] == {"Ref": "DocsAssetsCachePolicy"}
    for path in (DOCS_URL, REDOC_URL, "/openapi.json"):
        assert behaviors[path]["CachePolicyId"] == {"Ref": "DocsPagesCachePolicy"}
    for behavior in behaviors.values():
        assert set(behavior["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS"}
        assert "LambdaFunctionAssociations" not in behavior
    resources = cdn_template["Resources"]
    assets_key = resources["DocsAssetsCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert assets_key["ParametersInCacheKeyAndForwardedToOrigin"]["QueryStringsConfig"]["QueryStrings"] == [
        "v"
    ]
    pages = resources["DocsPagesCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert pages["MaxTTL"] <= 3600
    for policy in (assets_key, pages):
        assert policy["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]["Headers"] == ["Origin"]
    # The cached docs still reach the app with what it needs to know the viewer.
    docs_headers = resources["DocsOriginRequestPolicy"]["Properties"]["OriginRequestPolicyConfig"][
        "HeadersConfig"
    ]
    assert {name.lower() for name in docs_headers["Headers"]} == {
        gateway.VIEWER_HOST_HEADER,
        gateway.VIEWER_ADDRESS_HEADER,
    }


def test_the_edge_checks_tokens_everywhere_but_on_the_apps_public_paths(cdn_template: dict[str, Any]) -> None:
    # Public at the edge: the root and the routes API Gateway lets through without a token.
    assert set(PUBLIC_PATHS) == {"/", "/health", "/health/ready", DOCS_URL, REDOC_URL, "/openapi.json"}
    assert tuple(PUBLIC_PREFIXES) == (f"{DOCS_URL}/",)
    behavior = _distribution(cdn_template, EdgeAuthVersionArn=EVERY_EDGE_OPTION["EdgeAuthVersionArn"])[
        "DefaultCacheBehavior"
    ]
    assert behavior["LambdaFunctionAssociations"] == [
        {
            "EventType": "origin-request",
            "LambdaFunctionARN": {"Ref": "EdgeAuthVersionArn"},
            "IncludeBody": False,
        }
    ]
    assert "LambdaFunctionAssociations" not in _distribution(cdn_template)["DefaultCacheBehavior"]


def test_every_behavior_runs_the_viewer_request_function(cdn_template: dict[str, Any]) -> None:
    config = _distribution(cdn_template)
    for behavior in [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]:
        assert behavior["FunctionAssociations"] == [
            {
                "EventType": "viewer-request",
                "FunctionARN": {"Fn::GetAtt": ["ViewerRequestFunction", "FunctionARN"]},
            }
        ]


def test_the_viewer_function_strips_and_sets_the_headers_the_app_trusts(cdn_template: dict[str, Any]) -> None:
    code = cdn_template["Resources"]["ViewerRequestFunction"]["Properties"]["FunctionCode"]
    (stripped,) = re.findall(r"var STRIPPED_HEADERS = \[([^\]]*)\]", code)
    names = set(re.findall(r"'([a-z-]+)'", stripped))
    assert {gateway.ORIGIN_SECRET_HEADER, gateway.VIEWER_ADDRESS_HEADER, gateway.VIEWER_HOST_HEADER} <= names
    assert (
        f"request.headers['{gateway.VIEWER_HOST_HEADER}'] = {{ value: request.headers.host.value }}" in code
    )


def test_the_distribution_speaks_modern_http_and_tls(cdn_template: dict[str, Any]) -> None:
    config = _distribution(
        cdn_template, DomainName="api.example.com", CertificateArn=EVERY_EDGE_OPTION["CertificateArn"]
    )
    assert config["HttpVersion"] == "http2and3"
    assert config["IPV6Enabled"] is True
    assert config["Aliases"] == [{"Ref": "DomainName"}]
    assert config["ViewerCertificate"]["MinimumProtocolVersion"] == "TLSv1.2_2021"
    assert config["ViewerCertificate"]["SslSupportMethod"] == "sni-only"
    assert config["PriceClass"] == {"Ref": "PriceClass"}
    assert "Logging" not in _distribution(cdn_template)
    assert _distribution(cdn_template, LogBucket="logs")["Logging"]["Bucket"] == {
        "Fn::Sub": "${LogBucket}.s3.amazonaws.com"
    }


def test_the_security_headers_match_the_apps(cdn_template: dict[str, Any]) -> None:
    config = cdn_template["Resources"]["SecurityHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    security = config["SecurityHeadersConfig"]
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] == 31536000
    assert security["StrictTransportSecurity"]["IncludeSubdomains"] is True
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    # The docs pages send their own Content-Security-Policy: the distribution's must not replace it.
    assert security["ContentSecurityPolicy"]["Override"] is False


@pytest.mark.parametrize("stack", ["cdn.yaml", "domain.yaml"])
def test_dns_records_are_aliases_for_ipv4_and_ipv6_only_with_a_hosted_zone(stack: str) -> None:
    child = load_template(TEMPLATES / stack)
    records = {name: r for name, r in child["Resources"].items() if r["Type"] == "AWS::Route53::RecordSet"}
    assert {r["Properties"]["Type"] for r in records.values()} == {"A", "AAAA"}
    for record in records.values():
        assert record["Condition"] == "HasDnsRecords"
        assert record["Properties"]["Name"] == {"Ref": "DomainName"}
    if stack == "cdn.yaml":
        assert all(
            r["Properties"]["AliasTarget"]["HostedZoneId"] == CLOUDFRONT_HOSTED_ZONE for r in records.values()
        )
        assert condition_is_true(
            child, "HasDnsRecords", {"DomainName": "a.b", "CertificateArn": "x", "HostedZoneId": "Z1"}
        )
        assert not condition_is_true(
            child, "HasDnsRecords", {"DomainName": "a.b", "CertificateArn": "x", "HostedZoneId": ""}
        )


def test_the_api_custom_domain_is_regional_with_tls_1_2() -> None:
    domain = load_template(TEMPLATES / "domain.yaml")["Resources"]["ApiDomain"]["Properties"]
    assert domain["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert domain["SecurityPolicy"] == "TLS_1_2"


# --- the edge stack --------------------------------------------------------------------------------------------


def test_the_edge_function_meets_lambda_at_edges_constraints(edge_template: dict[str, Any]) -> None:
    function = (
        function_properties(edge_template, "EdgeAuthFunction")
        if "Globals" in edge_template
        else {**edge_template["Resources"]["EdgeAuthFunction"]["Properties"]}
    )
    assert function["Architectures"] == ["x86_64"]
    assert function["Runtime"] == "python3.13"
    assert function["Handler"] == "edge_auth.handler"
    assert function["CodeUri"] == "../edge/"
    assert function.get("Environment", {}).get("Variables") in (None, {})
    assert "Tracing" not in function
    assert "Layers" not in function
    # CloudFront runs a numbered version; each build with new code or keys publishes one.
    assert function["AutoPublishAlias"] == "live"
    assert edge_template["Outputs"]["EdgeAuthVersionArn"]["Value"] == {"Ref": "EdgeAuthFunction.Version"}
    role = edge_template["Resources"]["EdgeAuthFunctionRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert set(role["Statement"][0]["Principal"]["Service"]) == {
        "lambda.amazonaws.com",
        "edgelambda.amazonaws.com",
    }
    region_rule = edge_template["Rules"]["OnlyInUsEast1"]["Assertions"][0]["Assert"]
    assert region_rule == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}


def test_the_edge_web_acl_blocks_known_bad_inputs_and_never_logs_credentials(
    edge_template: dict[str, Any],
) -> None:
    resources = deployed_resources(edge_template, EnableWebAcl="true")
    acl = resources["CdnWebAcl"]["Properties"]
    assert acl["Scope"] == "CLOUDFRONT"
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    assert rules["AwsKnownBadInputsRuleSet"]["OverrideAction"] == {"None": {}}
    redacted = resources["CdnWebAclLogging"]["Properties"]["RedactedFields"]
    assert {field["SingleHeader"]["Name"] for field in redacted} == {"authorization", "x-api-key"}
    assert not {"CdnWebAcl", "CdnWebAclLogging"} & set(deployed_resources(edge_template))


def test_the_edge_stacks_samconfig_builds_and_deploys_it_in_us_east_1(edge_template: dict[str, Any]) -> None:
    config = tomllib.loads(SAMCONFIG.read_text())
    for environment in ("edge-dev", "edge-prod"):
        values = _overrides(environment)
        assert set(values) <= set(edge_template["Parameters"]), environment
        assert deployed_resources(edge_template, **values)
        sections = config[environment]
        assert sections["global"]["parameters"]["region"] == "us-east-1"
        build = sections["build"]["parameters"]
        assert build["template_file"] == "templates/edge-auth.yaml"
        assert sections["deploy"]["parameters"]["template_file"] == f"{build['build_dir']}/template.yaml"
        assert sections["validate"]["parameters"]["template_file"] == "templates/edge-auth.yaml"


# --- safe deployments ----------------------------------------------------------------------------------------


def test_the_api_function_deploys_through_its_live_alias(template: dict[str, Any]) -> None:
    function = template["Resources"]["ApiFunction"]["Properties"]
    assert function["AutoPublishAlias"] == "live"
    preference = function["DeploymentPreference"]
    assert preference["Type"] == {"Ref": "DeploymentPreferenceType"}
    parameter = template["Parameters"]["DeploymentPreferenceType"]
    assert set(parameter["AllowedValues"]) <= SAM_DEPLOYMENT_TYPES
    assert parameter["Default"] == "AllAtOnce"


def _overrides(environment: str) -> dict[str, str]:
    text = tomllib.loads(SAMCONFIG.read_text())[environment]["deploy"]["parameters"]["parameter_overrides"]
    return dict(item.split("=", 1) for item in text.split())


def test_prod_deploys_a_canary_and_dev_all_at_once() -> None:
    assert _overrides("prod")["DeploymentPreferenceType"] == "Canary10Percent5Minutes"
    assert _overrides("default")["DeploymentPreferenceType"] == "AllAtOnce"


def test_the_function_errors_and_the_apis_5xx_and_latency_roll_a_deployment_back(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    alarms = resources["ApiFunction"]["Properties"]["DeploymentPreference"]["Alarms"]
    assert alarms == [
        {"Ref": "ApiFunctionErrorsAlarm"},
        {"Ref": "ApiServerErrorsAlarm"},
        {"Ref": "ApiLatencyAlarm"},
    ]
    # FunctionName alone is every version and alias together (a canary's new version included); a
    # Resource or ExecutedVersion dimension would narrow it to one alias or one version number.
    errors = resources["ApiFunctionErrorsAlarm"]["Properties"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ApiFunction"}}]
    api = [
        {"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}},
        {"Name": "Stage", "Value": {"Ref": "Stage"}},
    ]
    assert resources["ApiLatencyAlarm"]["Properties"]["Dimensions"] == api
    for query in resources["ApiServerErrorsAlarm"]["Properties"]["Metrics"]:
        if "MetricStat" in query:
            assert query["MetricStat"]["Metric"]["Dimensions"] == api
    assert resources["Api"]["Properties"]["Name"] == {"Ref": "AWS::StackName"}


def test_api_gateway_invokes_the_alias_for_every_route(template: dict[str, Any]) -> None:
    resources = deployed_resources(template, EnablePartnerTier="true")
    uris = [
        operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for item in resources["Api"]["Properties"]["DefinitionBody"]["paths"].values()
        for operation in item.values()
    ]
    assert uris
    assert all("${ApiFunction.Alias}" in uri for uri in uris)
    assert resources["ApiFunctionInvokePermission"]["Properties"]["FunctionName"] == {
        "Ref": "ApiFunction.Alias"
    }
    # The partner authorizer is its own function, invoked by name: the alias does not touch it.
    assert resources["PartnerAuthorizerInvokePermission"]["Properties"]["FunctionName"] == {
        "Ref": "PartnerAuthorizerFunction"
    }


def test_the_pre_traffic_hook_is_optional_and_on_by_default(template: dict[str, Any]) -> None:
    hooks = template["Resources"]["ApiFunction"]["Properties"]["DeploymentPreference"]["Hooks"]
    assert hooks["PreTraffic"] == {
        "Fn::If": ["PreTrafficHookEnabled", {"Ref": "PreTrafficHookFunction"}, {"Ref": "AWS::NoValue"}]
    }
    assert template["Parameters"]["PreTrafficHook"]["Default"] == "true"
    assert "PreTrafficHookFunction" not in deployed_resources(template, PreTrafficHook="false")


def test_codedeploys_managed_role_may_invoke_the_hook(template: dict[str, Any]) -> None:
    name = template["Resources"]["PreTrafficHookFunction"]["Properties"]["FunctionName"]["Fn::Sub"]
    # AWSCodeDeployRoleForLambda (SAM's deployment group role) invokes CodeDeployHook_* functions only.
    assert name.startswith("CodeDeployHook_")
    assert len(name.replace("${AWS::StackName}", "s" * 37)) <= 64


def _hook_statements(template: dict[str, Any], **parameters: str) -> dict[str, dict[str, Any]]:
    role = deployed_resources(template, **parameters)["PreTrafficHookFunctionRole"]["Properties"]
    return {
        statement["Sid"]: statement
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    }


def _actions(statements: dict[str, dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements.values():
        actions = statement["Action"]
        found |= set(actions if isinstance(actions, list) else [actions])
    return found


def _calls_of(source: Path, service: str) -> set[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    by_method = {xform_name(operation): operation for operation in model.operation_names}
    called = set(re.findall(r"\.([a-z][a-z0-9_]*)\(", source.read_text()))
    return {f"{service}:{by_method[method]}" for method in called if method in by_method}


def test_the_hooks_role_allows_exactly_the_calls_it_makes(template: dict[str, Any]) -> None:
    called = set()
    for service in ("lambda", "cognito-idp", "codedeploy", "secretsmanager"):
        called |= _calls_of(HOOK_SOURCE, service)
    assert "codedeploy:PutLifecycleEventHookExecutionStatus" in called
    # Lambda's Invoke operation is authorized as lambda:InvokeFunction.
    called = {IAM_ACTION_OF_OPERATION.get(call, call) for call in called}
    with_cdn = _hook_statements(template, EnableCdn="true")
    granted = {action for action in _actions(with_cdn) if not action.startswith(("logs:", "kms:"))}
    assert called == granted
    invoke = with_cdn["InvokeApiFunctionVersions"]["Resource"]["Fn::Sub"]
    assert invoke.endswith(":function:${AWS::StackName}-api:*")


def test_the_hook_gets_every_variable_it_reads(template: dict[str, Any]) -> None:
    read = set(re.findall(r'os\.environ(?:\.get)?[\[(]"([A-Z_]+)"', HOOK_SOURCE.read_text()))
    assert read >= {"API_FUNCTION_VERSION_ARN", "MACHINE_CLIENT_ID", "TOKEN_URL"}
    variables = function_properties(template, "PreTrafficHookFunction")["Environment"]["Variables"]
    assert read <= set(variables)
    # The version being deployed (SAM updates the hook with it before the alias moves).
    assert variables["API_FUNCTION_VERSION_ARN"] == {"Ref": "ApiFunction.Version"}
    assert variables["TOKEN_URL"]["Fn::Sub"].endswith("/oauth2/token")
    assert (
        pre_traffic.READ_SCOPE in template["Resources"]["MachineClient"]["Properties"]["AllowedOAuthScopes"]
    )


def test_operations_guide_deploys_the_edge_stack_before_the_main_stack() -> None:
    guide = OPERATIONS_GUIDE.read_text()
    edge_deploy = guide.index("sam deploy --config-env edge-prod")
    main_deploy = guide.index("EdgeAuthVersionArn=", edge_deploy)
    assert edge_deploy < main_deploy
    for topic in ("Rotate the origin secret", "Refresh the edge's keys", "Roll back by hand"):
        assert topic in guide, topic
