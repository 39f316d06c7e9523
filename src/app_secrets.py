"""Server-side secrets (the API-key pepper, the cursor signing key), read from Secrets Manager through
Powertools parameters and cached per container; boto3 is imported only when a secret is first needed."""

from __future__ import annotations

from typing import Any

from errors import ServiceUnavailable
from observability import logger
from settings import Settings

_CACHE_SECONDS = 300


def app_secret_value(settings: Settings, field: str) -> bytes:
    """One field of the app secret (a JSON object), as bytes for HMAC keys."""
    if not settings.app_secret_arn:
        raise ServiceUnavailable("The server is missing its signing secret.")
    from aws_lambda_powertools.utilities.parameters import GetParameterError, get_secret

    try:
        secret: dict[str, Any] = get_secret(settings.app_secret_arn, transform="json", max_age=_CACHE_SECONDS)
    except GetParameterError:
        # The error text names the secret and the AWS failure: log it, never return it.
        logger.exception("could not read the app secret")
        raise ServiceUnavailable("A server-side secret is unavailable; try again shortly.") from None
    value = secret.get(field)
    if not isinstance(value, str) or len(value) < 32:
        logger.error("the app secret lacks a usable field", field=field)
        raise ServiceUnavailable("A server-side secret is unavailable; try again shortly.")
    return value.encode()
