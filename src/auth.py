"""Who is calling, as FastAPI dependencies: Cognito access tokens (verified by tokens.py) and personal API
keys become a typed `Principal`; route authors use `CurrentUser`, `OptionalUser`, `require_groups(...)`
and `require_scopes(...)` in one line. Anything doubtful is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from errors import Forbidden, Unauthorized
from gateway import partner_entry_principal

# Token verification is FastAPI-free (tokens.py), for the partner authorizer; the app imports it from here.
from tokens import APP_SCOPES, Principal, SigningKeys, TokenVerifier, bearer_token

__all__ = [
    "APP_SCOPES",
    "ApiKeyAuthenticator",
    "CurrentUser",
    "OptionalUser",
    "Principal",
    "SigningKeys",
    "TokenVerifier",
    "bearer_token",
    "current_principal",
    "optional_principal",
    "require_groups",
    "require_scopes",
]

# Declared for the OpenAPI document (the docs page's Authorize dialog); the headers are read below so that
# a malformed Authorization header is a 401, not silently anonymous.
_bearer = HTTPBearer(auto_error=False, description="Cognito access token: `make -s token` locally.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="Personal API key (see /api-keys).")

ApiKeyAuthenticator = Callable[[Request, str], Awaitable[Principal]]


async def _authenticate(request: Request) -> Principal | None:
    authorization = request.headers.get("authorization")
    api_key = request.headers.get("x-api-key")
    if authorization is not None and api_key is not None:
        raise Unauthorized("Send either a bearer token or an API key, not both.", error="invalid_request")
    if authorization is not None:
        verifier: TokenVerifier = request.app.state.token_verifier
        principal = verifier.verify(bearer_token(authorization))
        # Partners are metered at their own entry point, which the app's own clients never use.
        admitted_partner = partner_entry_principal(request.scope)
        if principal.partner and admitted_partner != principal.client_id:
            raise Unauthorized("Partner clients call the partner entry point (/partner).")
        if admitted_partner is not None and not principal.partner:
            raise Unauthorized("Only partner clients call the partner entry point.")
        return principal
    if api_key is not None:
        authenticate_api_key: ApiKeyAuthenticator = request.app.state.api_key_authenticator
        return await authenticate_api_key(request, api_key)
    return None


async def optional_principal(
    request: Request,
    _bearer_docs: Annotated[Any, Security(_bearer)] = None,
    _api_key_docs: Annotated[Any, Security(_api_key)] = None,
) -> Principal | None:
    principal = await _authenticate(request)
    if principal is not None:
        request.scope.setdefault("state", {})["principal"] = principal
    return principal


async def current_principal(principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    if principal is None:
        raise Unauthorized("Authentication is required.", error="invalid_request")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
OptionalUser = Annotated[Principal | None, Depends(optional_principal)]


def require_groups(*groups: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Guard: the caller belongs to at least one of `groups` (403 otherwise)."""
    wanted = frozenset(groups)

    async def guard(principal: CurrentUser) -> Principal:
        if not principal.groups & wanted:
            raise Forbidden(f"This requires membership in: {', '.join(sorted(wanted))}.")
        return principal

    return guard


def require_scopes(*scopes: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Guard: the caller holds every one of `scopes` (403 otherwise)."""
    wanted = frozenset(scopes)

    async def guard(principal: CurrentUser) -> Principal:
        missing = wanted - principal.scopes
        if missing:
            raise Forbidden(f"This requires the scope(s): {', '.join(sorted(missing))}.")
        return principal

    return guard
