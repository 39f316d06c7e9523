"""One typed Settings: safe development defaults, and production refuses development-only values."""

from __future__ import annotations

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
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_COGNITO_IDP",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ):
        monkeypatch.delenv(name, raising=False)


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


def test_production_refuses_an_sdk_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")
    with pytest.raises(ValidationError, match="AWS_ENDPOINT_URL"):
        Settings(**PROD_OK)


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
