"""Cognito access tokens: verified (RS256 only) against the user pool's signing keys into a typed
`Principal`. The keys ship with the deployment (COGNITO_JWKS) and are fetched only for a key id they lack.
FastAPI-free and pydantic-free: the partner authorizer verifies tokens with this module alone."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from domain_errors import ServiceUnavailable, Unauthorized
from observability import logger

if TYPE_CHECKING:
    from jose.backends.base import Key

# python-jose (with cryptography) and urllib's HTTP stack load on the first token check, not at cold start:
# requests to public routes never need them.

# Scopes of this API. People signed in through Cognito act with all of them (their groups decide what
# they may do); machine clients and API keys carry only the scopes they were granted.
APP_SCOPES: frozenset[str] = frozenset({"stratus/read", "stratus/write"})
_ALGORITHM = "RS256"
_CLOCK_LEEWAY_SECONDS = 30
_MAX_TOKEN_LENGTH = 8192
# With no key cached yet, a failed fetch is retried at most this often (no fetch storm when JWKS is down).
_EMPTY_CACHE_RETRY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    subject: str
    auth_method: Literal["jwt", "api_key"]
    username: str | None = None
    email: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_id: str | None = None
    # A partner's client (PARTNER_CLIENT_IDS): accepted only through the partner entry point.
    partner: bool = False
    key_id: str | None = None
    # When the person signed in for this token (its auth_time, else its iat): whole seconds, as tokens
    # carry them. None for API keys.
    authenticated_at: datetime | None = None

    @property
    def is_machine(self) -> bool:
        """A client_credentials token: no user behind it."""
        return self.auth_method == "jwt" and self.username is None


def _claim_time(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    # python-jose's own check lets strings such as "1700000000" through: only a JSON number is a time.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _fetch_json(url: str, timeout_seconds: float) -> Any:
    import urllib.request

    if not url.startswith(("https://", "http://")):
        raise ValueError("the JWKS URL must be http(s)")
    # urlopen takes any scheme (bandit B310): only http(s) gets here, checked above.
    with urllib.request.urlopen(url, timeout=timeout_seconds) as response:  # noqa: S310  # nosec B310
        return json.loads(response.read(1_000_000))


class SigningKeys:
    """The user pool's public keys, cached per container as constructed key objects.

    The keys shipped with the deployment (`shipped`, the pool's JWKS document) serve without any network
    call; the JWKS URL is fetched only for a key id they lack (the pool rotated its keys after the
    deployment), or when nothing was shipped. An unknown key id triggers at most one refetch per cooldown
    window, so random kids cannot cause a fetch storm; with nothing cached and the JWKS unreachable, callers
    get 503, never acceptance.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 2.0,
        refetch_cooldown_seconds: float = 60.0,
        fetch: Callable[[str, float], Any] = _fetch_json,
        shipped: str = "",
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.refetch_cooldown_seconds = refetch_cooldown_seconds
        self.fetch_count = 0
        self._fetch = fetch
        self._shipped = shipped
        self._keys: dict[str, Key] = {}
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> Key:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            self._load_shipped()
            key = self._keys.get(kid)
            if key is None and self._may_refetch():
                self._refresh()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            raise ServiceUnavailable(
                "Token signing keys are unavailable; try again shortly.", retry_after_seconds=5
            )
        raise Unauthorized("The token was signed by an unknown key.")

    def preload(self) -> None:
        """Construct the shipped keys now (python-jose and cryptography load with them): before a SnapStart
        snapshot, so that no restored container pays for it."""
        with self._lock:
            self._load_shipped()

    def restart_timers(self) -> None:
        """Forget when the JWKS was last fetched. A restored SnapStart snapshot carries the monotonic time
        of the container it was taken in, which means nothing in the new one."""
        with self._lock:
            self._last_attempt = float("-inf")

    def _load_shipped(self) -> None:
        # Under the lock, once: the shipped document is parsed on the first token check, not at cold start.
        shipped, self._shipped = self._shipped, ""
        if not shipped:
            return
        try:
            document = json.loads(shipped)
        except ValueError:
            logger.warning("the shipped signing keys are not JSON: fetching them instead")
            return
        self._install(document.get("keys") if isinstance(document, dict) else None)
        if not self._keys:
            logger.warning("the shipped signing keys hold no usable key: fetching them instead")

    def _may_refetch(self) -> bool:
        wait = self.refetch_cooldown_seconds if self._keys else _EMPTY_CACHE_RETRY_SECONDS
        return time.monotonic() - self._last_attempt >= wait

    def _refresh(self) -> None:
        import http.client

        self._last_attempt = time.monotonic()
        self.fetch_count += 1
        try:
            document = self._fetch(self.url, self.timeout_seconds)
            entries = document.get("keys", [])
        except (OSError, ValueError, TypeError, AttributeError, http.client.HTTPException):
            logger.warning("could not fetch the token signing keys", jwks_url=self.url)
            return
        self._install(entries)

    def _install(self, entries: Any) -> None:
        """Replaces the cached keys with the usable RS256 signing keys among `entries` (a JWKS's `keys`);
        keeps the old ones when there are none."""
        from jose import jwk
        from jose.exceptions import JOSEError

        keys: dict[str, Key] = {}
        for entry in entries if isinstance(entries, list) else []:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("kid"), str)
                and entry.get("kty") == "RSA"
                and entry.get("alg", _ALGORITHM) == _ALGORITHM
                and entry.get("use", "sig") == "sig"
            ):
                continue
            try:
                keys[entry["kid"]] = jwk.construct(entry, _ALGORITHM)
            except (JOSEError, ValueError, TypeError):
                # One broken key must not discard the good ones beside it.
                logger.warning("skipped an unusable signing key", kid=entry["kid"])
        if keys:
            self._keys = keys


class TokenSettings(Protocol):
    """What token verification reads from the configuration: `settings.Settings` provides it, and so does the
    partner authorizer's pydantic-free reader (partner_authorizer.AuthorizerSettings)."""

    @property
    def cognito_issuer(self) -> str: ...
    @property
    def jwks_url(self) -> str: ...
    @property
    def cognito_jwks(self) -> str: ...
    @property
    def cognito_client_ids(self) -> Sequence[str]: ...
    @property
    def partner_client_ids(self) -> Sequence[str]: ...
    @property
    def jwks_timeout_seconds(self) -> float: ...
    @property
    def jwks_refetch_cooldown_seconds(self) -> float: ...


class TokenVerifier:
    """Verifies Cognito access tokens for one user pool and a set of allowed app clients: the app's own
    and its partners' (marked `partner` on the principal), or only `client_ids` when given."""

    def __init__(
        self,
        settings: TokenSettings,
        signing_keys: SigningKeys | None = None,
        *,
        client_ids: Sequence[str] | None = None,
    ) -> None:
        self.issuer = settings.cognito_issuer
        self.partner_client_ids = frozenset(settings.partner_client_ids)
        self.allowed_client_ids = (
            frozenset(client_ids)
            if client_ids is not None
            else frozenset(settings.cognito_client_ids) | self.partner_client_ids
        )
        self.signing_keys = signing_keys or SigningKeys(
            settings.jwks_url,
            timeout_seconds=settings.jwks_timeout_seconds,
            refetch_cooldown_seconds=settings.jwks_refetch_cooldown_seconds,
            shipped=settings.cognito_jwks,
        )

    def verify(self, token: str) -> Principal:
        from jose import jwt
        from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

        if not token or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise Unauthorized("The bearer token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise Unauthorized("The bearer token is malformed.") from None
        # Decide on the header before touching any key: only RS256 and only a kid from the pool's JWKS.
        if header.get("alg") != _ALGORITHM:
            raise Unauthorized("The token's signing algorithm is not accepted.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token names no signing key.")
        key = self.signing_keys.key_for(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                issuer=self.issuer,
                options={
                    "verify_aud": False,  # access tokens carry client_id, not aud: checked below
                    "require_exp": True,
                    "require_iat": True,
                    "require_sub": True,
                    "leeway": _CLOCK_LEEWAY_SECONDS,
                },
            )
        except ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except JWTClaimsError:
            raise Unauthorized("The token's claims are not valid here.") from None
        except JOSEError:
            raise Unauthorized("The token's signature or claims are not valid.") from None
        except (OverflowError, ValueError, TypeError):
            # e.g. exp: 1e400 parses as infinity and python-jose's int() conversion overflows.
            raise Unauthorized("The token's claims are not valid here.") from None
        return self._principal_from(claims)

    def _principal_from(self, claims: dict[str, Any]) -> Principal:
        if claims.get("token_use") != "access":
            raise Unauthorized("Only access tokens are accepted.")
        # python-jose's audience check passes tokens without `aud`; Cognito access tokens name their client.
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or client_id not in self.allowed_client_ids:
            raise Unauthorized("The token was issued to another client.")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The token names no subject.")
        raw_scopes = claims.get("scope", "")
        scopes = frozenset(raw_scopes.split()) if isinstance(raw_scopes, str) else frozenset()
        raw_groups = claims.get("cognito:groups") or []
        groups = (
            frozenset(g for g in raw_groups if isinstance(g, str))
            if isinstance(raw_groups, list)
            else frozenset()
        )
        username = claims.get("username")
        if isinstance(username, str) and username:
            scopes = scopes | APP_SCOPES
        else:
            username = None
        return Principal(
            subject=subject,
            auth_method="jwt",
            username=username,
            groups=groups,
            scopes=scopes,
            client_id=client_id,
            partner=client_id in self.partner_client_ids,
            # A refreshed token keeps the auth_time of the sign-in it descends from; iat is when it was made.
            authenticated_at=_claim_time(claims, "auth_time") or _claim_time(claims, "iat"),
        )


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use `Authorization: Bearer <access token>`.", error="invalid_request")
    return token.strip()
