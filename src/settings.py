"""The one typed configuration of Stratus, read from the environment (pydantic-settings)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Stage = Literal["dev", "test", "staging", "prod"]

# The local stand-in signs every user pool with one key whose private half is public knowledge; its
# issuer host is the real Cognito one, so a deployed app must refuse keys fetched from anywhere else.
_ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the app. Defaults are safe for development; `STAGE=prod` refuses dev-only values."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, populate_by_name=True)

    stage: Stage = "dev"
    service_name: str = "stratus"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One structured line per request (route, status, latency): on by default for local development. The
    # template turns it off (parameter AccessLog): API Gateway's access log records every request under the
    # same request id, and the line would cost each request about as much as the rest of the middleware.
    # Cold starts and server errors are logged either way.
    access_log: bool = True

    # --- Observability (src/observability.py, src/tracing.py) ---
    # One CloudWatch EMF line per request (route, status, latency, request id, subject); off only to
    # measure what it costs (make bench).
    request_metrics: bool = True
    # "otel": a span per request under the invocation's trace (deployed with the ADOT layer, template
    # parameter Tracing). "off" loads no OpenTelemetry SDK code at all.
    tracing: Literal["off", "otel"] = "off"

    aws_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region")
    )
    table_name: str = "stratus-dev"
    # Powertools idempotency records (Idempotency-Key on POST): a table of its own, keyed by `id`.
    idempotency_table_name: str = "stratus-dev-idempotency"

    cognito_user_pool_id: str = ""
    cognito_client_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Partners' app clients: their tokens are accepted only on requests through the partner entry point
    # (/partner, behind the partner authorizer), where API Gateway meters each partner.
    partner_client_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The partner usage plan whose keys the partner authorizer hands to API Gateway.
    partner_usage_plan_id: str = ""
    # Override for where the signing keys are fetched; empty means the issuer's own JWKS URL.
    cognito_jwks_url: str = ""

    # Secrets Manager secret (JSON) holding the API-key pepper and the cursor signing key.
    app_secret_arn: str = ""
    # The app secret's keyring (src/app_secrets.py): how long a container uses its copy before reading the
    # secret again, and at least how long between two reads forced by a key id the copy does not hold.
    app_secret_cache_seconds: float = 300.0
    app_secret_refresh_cooldown_seconds: float = 15.0
    # Days an admin audit record is kept (then TTL removes it; backups keep it longer).
    audit_retention_days: int = Field(default=400, ge=1)
    # Seconds between two JWKS refetches triggered by an unknown key id.
    jwks_refetch_cooldown_seconds: float = 60.0
    jwks_timeout_seconds: float = 2.0
    # The pool's signing keys (its JWKS document, JSON), shipped with the deployment (template.yaml,
    # PoolSigningKeys): tokens are verified without a network call, and the JWKS URL is fetched only for a
    # key id these lack. Empty (local development): fetched on the first token check.
    cognito_jwks: str = ""

    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"]
    )
    # Rate-limit counters: memory:// counts in this process only; deployed, dynamodb://<the rate-limit
    # table> (a table of its own, never the app's: ratelimit.py refuses that).
    rate_limit_storage_uri: str = "memory://"
    # leased-fixed-window: each container spends leased slices of a window's budget, about one DynamoDB call
    # per eight limited requests. fixed-window: one counter write per request (exact X-RateLimit-Remaining).
    rate_limit_strategy: Literal["leased-fixed-window", "fixed-window"] = "leased-fixed-window"
    # Limits per route class in limits' notation, one limit each ("60/minute", "5 per 2 seconds").
    rate_limit_read: str = "300/minute"
    rate_limit_write: str = "60/minute"
    rate_limit_expensive: str = "20/minute"
    # Callers without credentials: one budget per client address across every limited route.
    rate_limit_anonymous: str = "30/minute"
    # True: 503 while the counters are unreachable. False: admit, log, count RateLimitStorageErrors.
    rate_limit_fail_closed: bool = False

    # CloudFront in front (template EnableCdn): the Secrets Manager secret (JSON `current`, and `previous`
    # during a rotation) whose value CloudFront sends in X-Origin-Verify. When set, requests without it
    # (the execute-api URL) are refused, and only requests with it are believed about the viewer's address
    # and host (src/gateway.py).
    cdn_origin_secret_arn: str = ""

    # DynamoDB client limits: a request must never wait near API Gateway's 29 s integration timeout.
    dynamodb_connect_timeout_seconds: float = 1.0
    dynamodb_read_timeout_seconds: float = 2.5
    dynamodb_max_retry_attempts: int = 2

    # tRPC (/trpc): the most calls one batch request may carry; each call counts against the rate limits.
    trpc_max_batch_size: int = Field(default=25, ge=1, le=100)

    # The activity feed (written by the stream consumer): entries expire this many days after the change
    # (the table's TTL; readers hide older ones at once). Template parameter ActivityRetentionDays.
    activity_retention_days: int = Field(default=90, ge=1, le=3650)

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, data: object) -> object:
        if isinstance(data, dict):
            for key in ("cognito_client_ids", "partner_client_ids", "cors_allow_origins"):
                for candidate in (key, key.upper()):
                    if candidate in data:
                        data[candidate] = _split_csv(data[candidate])
        return data

    @property
    def cognito_issuer(self) -> str:
        return f"https://cognito-idp.{self.aws_region}.amazonaws.com/{self.cognito_user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return self.cognito_jwks_url or f"{self.cognito_issuer}/.well-known/jwks.json"

    @property
    def endpoint_overrides(self) -> list[str]:
        """The SDK endpoint overrides in the environment: AWS_ENDPOINT_URL and every
        AWS_ENDPOINT_URL_<SERVICE> (botocore reads one per service, e.g. ..._COGNITO_IDENTITY_PROVIDER),
        so prod can refuse a stand-in whichever service it would reach."""
        return sorted(
            name for name, value in os.environ.items() if name.startswith(_ENDPOINT_VARIABLE) and value
        )

    @property
    def deployed(self) -> bool:
        """Running in AWS Lambda (not under `sam local`, which sets AWS_SAM_LOCAL), or a prod stage
        anywhere. Every deployed stage refuses development-only values, not only prod."""
        in_lambda = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and not os.environ.get("AWS_SAM_LOCAL")
        return in_lambda or self.stage == "prod"

    @model_validator(mode="after")
    def _refuse_development_values_when_deployed(self) -> Settings:
        if not self.deployed:
            return self
        problems: list[str] = []
        if any(origin == "*" or "*" in origin for origin in self.cors_allow_origins):
            problems.append("CORS_ALLOW_ORIGINS must list exact origins (no wildcard)")
        if self.stage == "prod" and any(origin.startswith("http://") for origin in self.cors_allow_origins):
            problems.append("CORS_ALLOW_ORIGINS must be https origins in prod")
        if self.endpoint_overrides:
            problems.append(
                f"{', '.join(self.endpoint_overrides)} must not be set (they point the SDK at a stand-in)"
            )
        if self.rate_limit_storage_uri.startswith("memory://"):
            problems.append("RATE_LIMIT_STORAGE_URI must be shared storage, not memory://")
        if self.cognito_jwks_url and not _is_cognito_jwks_url(self.cognito_jwks_url, self.aws_region):
            problems.append("COGNITO_JWKS_URL must be an https URL on the region's Cognito host")
        if not self.cognito_user_pool_id:
            problems.append("COGNITO_USER_POOL_ID is required")
        if not self.cognito_client_ids:
            problems.append("COGNITO_CLIENT_IDS is required")
        if problems:
            raise ValueError(
                f"refusing to start ({self.stage}, deployed) with development-only settings: "
                + "; ".join(problems)
            )
        return self


def _is_cognito_jwks_url(url: str, region: str) -> bool:
    """An https URL on Cognito's own host for the region (the stand-in serves its keys from elsewhere)."""
    parsed = urlparse(url)
    return (
        parsed.scheme == "https"
        and parsed.hostname
        in {f"cognito-idp.{region}.amazonaws.com", f"cognito-idp.{region}.amazonaws.com.cn"}
        and parsed.port in (None, 443)
        and not parsed.username
        and not parsed.password
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once per container."""
    return Settings()
