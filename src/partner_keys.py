"""The partner usage plan's keys in API Gateway: the one place that reads them.

A partner's key is named after the partner's app client id. The value is what API Gateway needs from the
authorizer (`usageIdentifierKey`); it meters and throttles, it authenticates nothing, and it is never
logged. Only keys of the partner usage plan count, so a key elsewhere in the account with the same name
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from domain_errors import ServiceUnavailable
from observability import logger

# A new or removed key takes effect within this time (API Gateway also caches each token's answer).
_FOUND_TTL_SECONDS = 300.0
# Unknown clients are looked up again at most this often: a burst of their requests is one API call.
_MISSING_TTL_SECONDS = 60.0


@lru_cache(maxsize=1)
def _apigateway() -> Any:
    from botocore.config import Config
    from botocore.session import get_session

    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})
    return get_session().create_client("apigateway", config=config)


class PartnerKeys:
    """Usage plan key values by partner client id, cached per container.

    A dict with expiry times rather than Powertools Parameters: its providers cache what they fetch but
    not an absence, and a client without a key must be remembered too (one lookup a minute)."""

    def __init__(
        self,
        usage_plan_id: str,
        *,
        client: Callable[[], Any] = _apigateway,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.usage_plan_id = usage_plan_id
        self._client = client
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}

    def value_for(self, client_id: str) -> str | None:
        """The value of the partner's key, or None when the plan holds no key of that name (or several:
        which one would be a guess)."""
        cached = self._cache.get(client_id)
        now = self._clock()
        if cached is not None and now < cached[1]:
            return cached[0]
        value = self._lookup(client_id)
        ttl = _FOUND_TTL_SECONDS if value is not None else _MISSING_TTL_SECONDS
        self._cache[client_id] = (value, now + ttl)
        return value

    def _lookup(self, client_id: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.usage_plan_id:
            return None
        try:
            paginator = self._client().get_paginator("get_usage_plan_keys")
            # nameQuery matches by prefix: keep exact names only.
            matches = [
                key
                for page in paginator.paginate(usagePlanId=self.usage_plan_id, nameQuery=client_id)
                for key in page.get("items", [])
                if key.get("name") == client_id and key.get("type") == "API_KEY" and key.get("value")
            ]
        except (BotoCoreError, ClientError) as error:
            code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
            logger.exception(
                "the partner usage plan's keys could not be read", code=code or type(error).__name__
            )
            raise ServiceUnavailable(
                "The partner keys cannot be read right now.", retry_after_seconds=2
            ) from None
        if len(matches) > 1:
            logger.error("several keys of the partner usage plan carry one client id", client_id=client_id)
            return None
        return str(matches[0]["value"]) if matches else None
