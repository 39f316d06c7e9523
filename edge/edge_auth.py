"""Lambda@Edge (origin request): refuses requests to protected paths whose bearer token the API would
refuse anyway, before they reach the region, so a flood of bad tokens costs neither the API's concurrency
nor DynamoDB. The regional app still verifies every token; this is a pre-check with the same rules as
`src/auth.py` (TokenVerifier): RS256 only, the header decided first, a known key id, then the signature,
`iss`, `exp` (30 s leeway), `iat`, `nbf`, `sub`, `jti`, `token_use=access` and the client id.

Lambda@Edge has no environment variables: the pool's issuer, client ids, JWKS and the browser origins are
baked into `edge_config.json` when the package is built (tools/build_edge.py). Only the standard library is
imported: the package must stay far below the 1 MB a viewer-facing function may weigh.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rsa_pkcs1 import RsaPublicKey, public_key_from_jwk_numbers, verify_rs256

CONFIG_FILE = "edge_config.json"
ALGORITHM = "RS256"
# The same numbers as src/auth.py.
CLOCK_LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
PROBLEM_CONTENT_TYPE = "application/problem+json"

# What anyone may read without a token (the app's public routes): the docs pages, their assets, the
# OpenAPI document, liveness/readiness and the root. CORS preflights never carry a token, on any path.
PUBLIC_PATHS = frozenset({"/", "/health", "/health/ready", "/docs", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/docs/",)

Headers = dict[str, list[dict[str, str]]]


class Refusal(Exception):
    """Why a request is refused; `error` is the RFC 6750 error code of the WWW-Authenticate challenge."""

    def __init__(self, detail: str, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


def _base64url_decode(segment: bytes) -> bytes:
    # As python-jose decodes (jose.utils.base64url_decode), so that both sides read a token alike.
    remainder = len(segment) % 4
    if remainder:
        segment += b"=" * (4 - remainder)
    return base64.urlsafe_b64decode(segment)


def _claim_as_int(claims: Mapping[str, Any], name: str) -> int:
    # python-jose converts NumericDate claims with int(): so does this, refusing what int() cannot take.
    try:
        return int(claims[name])
    except (TypeError, ValueError, OverflowError):
        raise Refusal("The token's claims are not valid here.") from None


class TokenCheck:
    """The edge's copy of the API's access-token rules for one user pool and its allowed app clients."""

    def __init__(
        self,
        issuer: str,
        client_ids: Iterable[str],
        keys: Mapping[str, RsaPublicKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.client_ids = frozenset(client_ids)
        self.keys = dict(keys)
        self.clock = clock

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or a Refusal saying (without internals) what is wrong with it."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise Refusal("The bearer token is malformed.")
        header, payload, signing_input, signature = self._segments(token)
        # Decided on the header before any key is used: only RS256, only a key id of the pool's JWKS.
        if header.get("alg") != ALGORITHM:
            raise Refusal("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Refusal("The token names no signing key.")
        key = self.keys.get(kid)
        if key is None:
            # The pool's keys were baked in at build time; the region refetches its JWKS for a new kid, the
            # edge refuses (docs/operations.md: a new key means rebuilding and publishing this function).
            raise Refusal("The token was signed by an unknown key.")
        if not verify_rs256(key, signing_input, signature):
            raise Refusal("The token's signature or claims are not valid.")
        try:
            claims = json.loads(payload.decode("utf-8"))
        except ValueError:
            raise Refusal("The token's signature or claims are not valid.") from None
        if not isinstance(claims, dict):
            raise Refusal("The token's signature or claims are not valid.")
        self._check_registered_claims(claims)
        self._check_access_token(claims)
        return claims

    @staticmethod
    def _segments(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
        raw = token.encode("utf-8")
        signing_input, signature_segment = raw.rsplit(b".", 1)
        header_segment, payload_segment = signing_input.split(b".", 1)
        # As python-jose reads the header: every segment decoded, the header a JSON object.
        try:
            header = json.loads(_base64url_decode(header_segment).decode("utf-8"))
            payload = _base64url_decode(payload_segment)
            signature = _base64url_decode(signature_segment)
        except ValueError:
            raise Refusal("The bearer token is malformed.") from None
        if not isinstance(header, dict):
            raise Refusal("The bearer token is malformed.")
        return header, payload, signing_input, signature

    def _check_registered_claims(self, claims: dict[str, Any]) -> None:
        # The order and the rules of python-jose's jwt.decode with the app's options: exp, iat and sub
        # required; iat, nbf and exp as integers; iss exact; sub and jti strings; at_hash refused (an
        # access token has none to compare against).
        for required in ("exp", "iat", "sub"):
            if required not in claims:
                raise Refusal("The token's signature or claims are not valid.")
        now = int(self.clock())
        _claim_as_int(claims, "iat")
        if "nbf" in claims and _claim_as_int(claims, "nbf") > now + CLOCK_LEEWAY_SECONDS:
            raise Refusal("The token's claims are not valid here.")
        if _claim_as_int(claims, "exp") < now - CLOCK_LEEWAY_SECONDS:
            raise Refusal("The token has expired.")
        if claims.get("iss") != self.issuer:
            raise Refusal("The token's claims are not valid here.")
        if not isinstance(claims["sub"], str):
            raise Refusal("The token's claims are not valid here.")
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise Refusal("The token's claims are not valid here.")
        if "at_hash" in claims:
            raise Refusal("The token's claims are not valid here.")

    def _check_access_token(self, claims: dict[str, Any]) -> None:
        if claims.get("token_use") != "access":
            raise Refusal("Only access tokens are accepted.")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in self.client_ids:
            raise Refusal("The token was issued to another client.")
        if not claims["sub"]:
            raise Refusal("The token names no subject.")


def keys_from_jwks(jwks: Mapping[str, Any]) -> dict[str, RsaPublicKey]:
    """The RS256 signing keys of a JWKS document, by key id (as the app's SigningKeys filters them)."""
    keys: dict[str, RsaPublicKey] = {}
    for entry in jwks.get("keys", []):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("kid"), str)
            and entry.get("kty") == "RSA"
            and entry.get("alg", ALGORITHM) == ALGORITHM
            and entry.get("use", "sig") == "sig"
        ):
            continue
        keys[entry["kid"]] = public_key_from_jwk_numbers(
            _base64url_decode(entry["n"].encode()), _base64url_decode(entry["e"].encode())
        )
    return keys


def is_public(method: str, uri: str) -> bool:
    return method == "OPTIONS" or uri in PUBLIC_PATHS or uri.startswith(PUBLIC_PREFIXES)


def _header(headers: Headers, name: str) -> str | None:
    values = headers.get(name)
    return values[0].get("value") if values else None


class EdgeAuth:
    """The origin-request handler for one baked configuration."""

    def __init__(self, config: Mapping[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.tokens = TokenCheck(
            issuer=config["issuer"],
            client_ids=config["client_ids"],
            keys=keys_from_jwks(config["jwks"]),
            clock=clock,
        )
        self.cors_allow_origins = frozenset(config.get("cors_allow_origins", []))

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The request, untouched, when it may go on to the origin; else a problem+json response."""
        cf = event["Records"][0]["cf"]
        request: dict[str, Any] = cf["request"]
        try:
            self.check(request)
        except Refusal as refusal:
            return self.refusal_response(refusal, request, cf.get("config", {}))
        return request

    def check(self, request: Mapping[str, Any]) -> None:
        if is_public(request["method"], request["uri"]):
            return
        headers: Headers = request.get("headers", {})
        authorization = _header(headers, "authorization")
        api_key = _header(headers, "x-api-key")
        if authorization is not None and api_key is not None:
            raise Refusal("Send either a bearer token or an API key, not both.", error="invalid_request")
        if authorization is None:
            if api_key is None:
                raise Refusal("Authentication is required.", error="invalid_request")
            # Personal API keys are verified in the region (their hashes need the app's secret pepper).
            return
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refusal("Use `Authorization: Bearer <access token>`.", error="invalid_request")
        self.tokens.verify(token.strip())

    def refusal_response(
        self, refusal: Refusal, request: Mapping[str, Any], config: Mapping[str, Any]
    ) -> dict[str, Any]:
        # The app's problem shape (src/errors.py); the request id is CloudFront's (x-amz-cf-id), since the
        # request never reached API Gateway.
        problem = {
            "type": "urn:stratus:problem:unauthorized",
            "title": "Authentication required",
            "status": 401,
            "detail": refusal.detail,
            "instance": request.get("uri", "/"),
            "request_id": config.get("requestId", ""),
        }
        headers: Headers = {
            "content-type": [{"key": "Content-Type", "value": PROBLEM_CONTENT_TYPE}],
            "www-authenticate": [{"key": "WWW-Authenticate", "value": f'Bearer error="{refusal.error}"'}],
            "cache-control": [{"key": "Cache-Control", "value": "no-store"}],
        }
        origin = _header(request.get("headers", {}), "origin")
        if origin is not None and origin in self.cors_allow_origins:
            # Without it a browser reports a CORS failure instead of the 401.
            headers["access-control-allow-origin"] = [{"key": "Access-Control-Allow-Origin", "value": origin}]
            headers["vary"] = [{"key": "Vary", "value": "Origin"}]
        return {
            "status": "401",
            "statusDescription": "Unauthorized",
            "headers": headers,
            "body": json.dumps(problem, separators=(",", ":")),
        }


_edge_auth: EdgeAuth | None = None


def _baked() -> EdgeAuth:
    global _edge_auth  # noqa: PLW0603 - one configuration per container, read on the first request
    if _edge_auth is None:
        with open(os.path.join(os.path.dirname(__file__), CONFIG_FILE), encoding="utf-8") as config:
            _edge_auth = EdgeAuth(json.load(config))
    return _edge_auth


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda@Edge entry point (origin request)."""
    return _baked().handle(event)
