"""The partner entry point's place in the API (template.yaml, EnablePartnerTier): the whole app again under
this path, behind the partner authorizer. Apart from gateway.py so that the authorizer imports no Mangum."""

from __future__ import annotations

# Its prefix belongs to the root path, like the stage: the app sees its own routes.
PARTNER_BASE_PATH = "/partner"
PARTNER_RESOURCES = frozenset({PARTNER_BASE_PATH, f"{PARTNER_BASE_PATH}/{{proxy+}}"})
