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

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)

from auth import TokenVerifier, bearer_token
from errors import Unauthorized
from gateway import PARTNER_BASE_PATH
from observability import logger
from partner_keys import PartnerKeys
from settings import Settings, get_settings

# The one message API Gateway turns into a 401 (anything else raised becomes a 500).
_UNAUTHORIZED = "Unauthorized"


class PartnerAuthorizer:
    def __init__(
        self, settings: Settings, *, verifier: TokenVerifier | None = None, keys: PartnerKeys | None = None
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
    return PartnerAuthorizer(get_settings())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point (API Gateway TOKEN authorizer event)."""
    return _authorizer()(event)
