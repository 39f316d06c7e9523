"""One typed Settings: safe development defaults, and production refuses development-only values."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from settings import Settings

PROD_OK = {
    "stage": "prod",
    "cors_allow_origins": ["https://app.example.com"],
    "rate_limit_storage_uri": "dynamodb://stratus-prod",
    "cognito_user_pool_id": "us-east-1_AbCdEf123",
    "cognito_client_ids": ["abc123"],
}


@pytest.fixture(autouse=True)
def no_endpoint_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)


def test_production_settings_with_real_values_are_accepted() -> None:
    settings = Settings(**PROD_OK)
    assert settings.stage == "prod"
    assert settings.jwks_url == (
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123/.well-known/jwks.json"
    )


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"cors_allow_origins": ["*"]}, "CORS_ALLOW_ORIGINS"),
        ({"cors_allow_origins": ["https://*.example.com"]}, "CORS_ALLOW_ORIGINS"),
        ({"cors_allow_origins": ["http://app.example.com"]}, "https"),
        ({"rate_limit_storage_uri": "memory://"}, "RATE_LIMIT_STORAGE_URI"),
        ({"cognito_jwks_url": "http://127.0.0.1:4566/pool/.well-known/jwks.json"}, "COGNITO_JWKS_URL"),
        ({"cognito_user_pool_id": ""}, "COGNITO_USER_POOL_ID"),
        ({"cognito_client_ids": []}, "COGNITO_CLIENT_IDS"),
    ],
)
def test_production_refuses_development_values(override: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**PROD_OK, **override})


@pytest.mark.parametrize(
    "variable",
    [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        # botocore's names: the service id, upper case, spaces as underscores.
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ],
)
def test_production_refuses_an_sdk_endpoint_override(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:4566")
    with pytest.raises(ValidationError, match=variable):
        Settings(**PROD_OK)


def test_the_refused_variable_names_are_the_ones_botocore_reads() -> None:
    import botocore.session

    session = botocore.session.get_session()
    for service in ("dynamodb", "cognito-idp", "secretsmanager"):
        service_id = session.get_service_model(service).service_id
        variable = "AWS_ENDPOINT_URL_" + str(service_id).upper().replace(" ", "_")
        assert variable in {
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        }, variable


def test_production_refuses_the_docker_hosts_jwks_url() -> None:
    url = "http://host.docker.internal:4566/pool/.well-known/jwks.json"
    with pytest.raises(ValidationError, match="COGNITO_JWKS_URL"):
        Settings(**{**PROD_OK, "cognito_jwks_url": url})


def test_the_app_itself_refuses_to_start_in_prod_with_development_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import main
    from settings import get_settings

    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("RATE_LIMIT_STORAGE_URI", "memory://")
    get_settings.cache_clear()  # a container reads its settings once; this test plays a new one
    try:
        with pytest.raises(ValidationError, match="RATE_LIMIT_STORAGE_URI"):
            main.create_app()
    finally:
        get_settings.cache_clear()


def test_development_values_are_fine_outside_production() -> None:
    settings = Settings(stage="dev", cors_allow_origins=["*"], rate_limit_storage_uri="memory://")
    assert settings.cors_allow_origins == ["*"]


def test_lists_are_read_from_comma_separated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("COGNITO_CLIENT_IDS", "one,two")
    settings = Settings()
    assert settings.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert settings.cognito_client_ids == ["one", "two"]


def test_the_app_refuses_to_start_with_dev_values_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "*")
    with pytest.raises(ValidationError):
        Settings()


DEPLOYED_DEV_OK = {**PROD_OK, "stage": "dev", "cors_allow_origins": ["http://localhost:3000"]}


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """As Lambda's runtime sets it for every function."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "stratus-dev-ApiFunction-AbC123")
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)


@pytest.mark.usefixtures("in_lambda")
@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"cors_allow_origins": ["*"]}, "CORS_ALLOW_ORIGINS"),
        ({"rate_limit_storage_uri": "memory://"}, "RATE_LIMIT_STORAGE_URI"),
        ({"cognito_jwks_url": "http://127.0.0.1:4566/pool/.well-known/jwks.json"}, "COGNITO_JWKS_URL"),
        ({"cognito_user_pool_id": ""}, "COGNITO_USER_POOL_ID"),
        ({"cognito_client_ids": []}, "COGNITO_CLIENT_IDS"),
    ],
)
def test_every_deployed_stage_refuses_development_values(override: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**{**DEPLOYED_DEV_OK, **override})


@pytest.mark.usefixtures("in_lambda")
def test_a_deployed_dev_stage_with_real_values_starts() -> None:
    assert Settings(**DEPLOYED_DEV_OK).deployed


@pytest.mark.usefixtures("in_lambda")
def test_a_deployed_stage_refuses_an_sdk_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    with pytest.raises(ValidationError, match="AWS_ENDPOINT_URL"):
        Settings(**DEPLOYED_DEV_OK)


@pytest.mark.usefixtures("in_lambda")
@pytest.mark.parametrize(
    "url",
    [
        "http://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123/.well-known/jwks.json",
        "https://cognito-idp.us-east-1.amazonaws.com.evil.example/pool/.well-known/jwks.json",
        "https://evil.example/cognito-idp.us-east-1.amazonaws.com/.well-known/jwks.json",
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json",
        "https://user@cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123/.well-known/jwks.json",
        "https://cognito-idp.us-east-1.amazonaws.com:8443/us-east-1_AbCdEf123/.well-known/jwks.json",
    ],
)
def test_a_deployed_jwks_url_must_be_https_on_the_regions_cognito_host(url: str) -> None:
    with pytest.raises(ValidationError, match="COGNITO_JWKS_URL"):
        Settings(**{**DEPLOYED_DEV_OK, "cognito_jwks_url": url})


@pytest.mark.usefixtures("in_lambda")
def test_a_deployed_jwks_url_on_cognito_is_accepted() -> None:
    url = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEf123/.well-known/jwks.json"
    assert Settings(**{**DEPLOYED_DEV_OK, "cognito_jwks_url": url}).jwks_url == url


def test_sam_local_is_not_deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    # `sam local` runs the function in a container that also sets AWS_LAMBDA_FUNCTION_NAME, pointed at the
    # local stand-in on purpose (docs/operations.md).
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://host.docker.internal:4566")
    settings = Settings(stage="dev", rate_limit_storage_uri="memory://")
    assert not settings.deployed
