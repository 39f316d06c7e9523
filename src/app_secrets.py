"""Server-side keys (the API-key pepper, the cursor signing key), derived from one master key that lives in
Secrets Manager. The secret is read through Powertools parameters and cached per container; boto3 is
imported only when a key is first needed.

One generated master key (the template's GenerateSecretString makes exactly one random field) and an HMAC
per purpose keep every purpose's key independent: knowing the cursor key reveals nothing of the pepper.
Rotating the master invalidates outstanding cursors and every personal API key: see docs/operations.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

from errors import ServiceUnavailable
from observability import logger
from settings import Settings

MASTER_KEY_FIELD = "master_key"
KeyPurpose = Literal["api-key-pepper", "cursor-signing"]
_CACHE_SECONDS = 300
_UNAVAILABLE = "A server-side secret is unavailable; try again shortly."


def derived_key(settings: Settings, purpose: KeyPurpose) -> bytes:
    """The key for one purpose: HMAC-SHA256(master key, purpose)."""
    if not settings.app_secret_arn:
        raise ServiceUnavailable("The server is missing its signing secret.")
    from aws_lambda_powertools.utilities.parameters import GetParameterError, get_secret

    try:
        secret: dict[str, Any] = get_secret(settings.app_secret_arn, transform="json", max_age=_CACHE_SECONDS)
    except GetParameterError:
        # The error text names the secret and the AWS failure: log it, never return it.
        logger.exception("could not read the app secret")
        raise ServiceUnavailable(_UNAVAILABLE) from None
    master = secret.get(MASTER_KEY_FIELD)
    if not isinstance(master, str) or len(master) < 32:
        logger.error("the app secret lacks a usable master key", field=MASTER_KEY_FIELD)
        raise ServiceUnavailable(_UNAVAILABLE)
    return hmac.new(master.encode(), purpose.encode(), hashlib.sha256).digest()
