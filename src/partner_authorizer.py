"""The partner entry point's Lambda authorizer (a third function, `partner_authorizer.handler`; template.yaml
creates it with EnablePartnerTier=true).

API Gateway calls it with the `Authorization` header of each request to `/partner/...` (a TOKEN
authorizer; its answer is cached per token for five minutes). It verifies the access token exactly as the
app does, accepts partners' app clients only, and answers with an Allow for the entry point and the
partner's usage plan key, which API Gateway then uses to throttle and meter the partner. The app verifies
the token again (it trusts nothing it did not check itself).

Outcomes, as API Gateway shows them to the partner: a missing, malformed, forged or foreign token → 401;
a partner client without a key in the plan → 403; the signing keys or the plan's keys unreachable → 500
(API Gateway reports any other failure as AUTHORIZER_CONFIGURATION_ERROR, and does not cache it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)

from domain_errors import Unauthorized
from observability import logger
from partner_entry import PARTNER_BASE_PATH
from partner_keys import PartnerKeys
from tokens import TokenSettings, TokenVerifier, bearer_token

# The one message API Gateway turns into a 401 (anything else raised becomes a 500).
_UNAUTHORIZED = "Unauthorized"


class PartnerAuthorizerSettings(TokenSettings, Protocol):
    """What the authorizer reads: Settings provides it (tests), and AuthorizerSettings (deployed)."""

    @property
    def partner_usage_plan_id(self) -> str: ...


# Settings' values and its refusals in prod, for the variables read here (tests/test_cold_start_functions.py
# compares the two readers). Kept apart from settings.py: importing pydantic and building one model is most
# of this function's cold start (make bench), and a token check needs none of it.
_STAGES = ("dev", "test", "staging", "prod")
# Host names refused in prod (no socket is bound to them here; bandit B104 reads a bind).
_DEVELOPMENT_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "[::1]", "host.docker.internal")  # noqa: S104  # nosec B104


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class AuthorizerSettings:
    """The partner authorizer's configuration, read from the environment variables that settings.Settings
    reads, with the same defaults and the same refusals in prod, without pydantic."""

    stage: str = "dev"
    aws_region: str = "us-east-1"
    cognito_user_pool_id: str = ""
    cognito_client_ids: tuple[str, ...] = ()
    partner_client_ids: tuple[str, ...] = ()
    partner_usage_plan_id: str = ""
    cognito_jwks_url: str = ""
    cognito_jwks: str = ""
    jwks_refetch_cooldown_seconds: float = 60.0
    jwks_timeout_seconds: float = 2.0

    @property
    def cognito_issuer(self) -> str:
        return f"https://cognito-idp.{self.aws_region}.amazonaws.com/{self.cognito_user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return self.cognito_jwks_url or f"{self.cognito_issuer}/.well-known/jwks.json"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AuthorizerSettings:
        defaults = cls()
        settings = cls(
            stage=environ.get("STAGE", defaults.stage),
            aws_region=next(
                (environ[name] for name in ("AWS_REGION", "AWS_DEFAULT_REGION") if name in environ),
                defaults.aws_region,
            ),
            cognito_user_pool_id=environ.get("COGNITO_USER_POOL_ID", ""),
            cognito_client_ids=_csv(environ.get("COGNITO_CLIENT_IDS", "")),
            partner_client_ids=_csv(environ.get("PARTNER_CLIENT_IDS", "")),
            partner_usage_plan_id=environ.get("PARTNER_USAGE_PLAN_ID", ""),
            cognito_jwks_url=environ.get("COGNITO_JWKS_URL", ""),
            cognito_jwks=environ.get("COGNITO_JWKS", ""),
            jwks_refetch_cooldown_seconds=float(
                environ.get("JWKS_REFETCH_COOLDOWN_SECONDS", defaults.jwks_refetch_cooldown_seconds)
            ),
            jwks_timeout_seconds=float(environ.get("JWKS_TIMEOUT_SECONDS", defaults.jwks_timeout_seconds)),
        )
        settings.refuse_invalid(environ)
        return settings

    def refuse_invalid(self, environ: Mapping[str, str]) -> None:
        problems: list[str] = []
        if self.stage not in _STAGES:
            problems.append(f"STAGE must be one of {', '.join(_STAGES)}")
        elif self.stage == "prod":
            overrides = sorted(
                name for name, value in environ.items() if name.startswith("AWS_ENDPOINT_URL") and value
            )
            if overrides:
                problems.append(
                    f"{', '.join(overrides)} must not be set in prod (they point the SDK at a stand-in)"
                )
            if self.cognito_jwks_url and any(host in self.cognito_jwks_url for host in _DEVELOPMENT_HOSTS):
                problems.append("COGNITO_JWKS_URL points at a local stand-in")
            if not self.cognito_user_pool_id:
                problems.append("COGNITO_USER_POOL_ID is required in prod")
        if problems:
            raise ValueError("refusing to start with development-only settings: " + "; ".join(problems))


class PartnerAuthorizer:
    def __init__(
        self,
        settings: PartnerAuthorizerSettings,
        *,
        verifier: TokenVerifier | None = None,
        keys: PartnerKeys | None = None,
    ):
        self.verifier = verifier or TokenVerifier(settings, client_ids=settings.partner_client_ids)
        self.keys = keys or PartnerKeys(settings.partner_usage_plan_id)

    def _partner_of(self, authorization: str) -> str:
        """The partner client id of a verified client-credentials token; Unauthorized otherwise."""
        principal = self.verifier.verify(bearer_token(authorization))
        if not principal.is_machine or principal.client_id is None:
            raise Unauthorized("partners call with client-credentials tokens")
        return principal.client_id

    def __call__(self, raw_event: dict[str, Any]) -> dict[str, Any]:
        event = APIGatewayAuthorizerTokenEvent(raw_event)
        try:
            client_id = self._partner_of(event.get("authorizationToken") or "")
        except Unauthorized as refused:
            logger.info("partner request refused", reason=refused.detail)
            raise Exception(_UNAUTHORIZED) from None  # noqa: TRY002 - API Gateway's contract
        usage_key = self.keys.value_for(client_id)
        arn = event.parsed_arn
        answer = APIGatewayAuthorizerResponse(
            principal_id=client_id,
            region=arn.region,
            aws_account_id=arn.aws_account_id,
            api_id=arn.api_id,
            stage=arn.stage,
            usage_identifier_key=usage_key,
            partition=arn.partition,
        )
        # The answer is cached per token, so it covers the whole entry point, not just this request.
        if usage_key is None:
            logger.warning("partner client without a usage plan key", client_id=client_id)
            answer.deny_route("*", PARTNER_BASE_PATH)
            answer.deny_route("*", f"{PARTNER_BASE_PATH}/*")
        else:
            logger.info("partner admitted", client_id=client_id)
            answer.allow_route("*", PARTNER_BASE_PATH)
            answer.allow_route("*", f"{PARTNER_BASE_PATH}/*")
        return answer.asdict()


@lru_cache(maxsize=1)
def _authorizer() -> PartnerAuthorizer:
    # Built on the first invocation, once per container.
    return PartnerAuthorizer(AuthorizerSettings.from_environment())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (API Gateway TOKEN authorizer event)."""
    return _authorizer()(event)
