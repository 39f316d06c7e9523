"""Server-side keys (the API-key pepper, the cursor signing key), derived from the app secret's keyring in
Secrets Manager (app_keyring.py). Each container reads the secret through Powertools parameters and
trusts its copy for APP_SECRET_CACHE_SECONDS; boto3 is imported only when a key is first needed.

Every key of the ring yields one key per purpose, an HMAC of the purpose under the key, so that knowing
the cursor key reveals nothing of the pepper. The current kid signs and hashes; every kid of the ring
verifies, so what was made before a rotation keeps working until its key retires. What names a kid this
container has not read yet (a cursor or key made by a container that already has the rotated secret)
makes it read the secret again: once, and at most once per APP_SECRET_REFRESH_COOLDOWN_SECONDS whatever
the requests ask for. See docs/operations.md, "Rotate the app secret".
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from app_keyring import LEGACY_KID, Keyring, MalformedKeyring, parse_keyring
from errors import ServiceUnavailable
from observability import logger
from settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

KeyPurpose = Literal["api-key-pepper", "cursor-signing"]
_UNAVAILABLE = "A server-side secret is unavailable; try again shortly."
# A keyed digest as stored: `<kid>$<hex>`; a bare hex digest was made before keyrings, by LEGACY_KID.
_DIGEST_KID_SEPARATOR = "$"


class RetiredKey(Exception):
    """No key of the ring has this kid, even after reading the secret again: it was retired, or never
    existed. What it made is no longer valid (a 400 for a cursor, a 401 for an API key)."""


class ContainerKeyring:
    """One container's copy of the app secret's keyring."""

    def __init__(
        self,
        secret_arn: str,
        cache_seconds: float,
        refresh_cooldown_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secret_arn = secret_arn
        self._cache_seconds = cache_seconds
        self._refresh_cooldown_seconds = refresh_cooldown_seconds
        self._clock = clock
        self._provider: SecretsProvider | None = None
        self._lock = threading.Lock()
        self._last_refresh: float | None = None
        # The kid the last forced read looked for, when it did not find it.
        self._missed: set[str] = set()
        self._parsed: tuple[Any, Keyring] | None = None
        self._derived: dict[tuple[str, str], bytes] = {}

    def keyring(self, *, refresh: bool = False) -> Keyring:
        if not self._secret_arn:
            raise ServiceUnavailable("The server is missing its signing secret.")
        from aws_lambda_powertools.utilities.parameters import GetParameterError

        try:
            document = self._secrets().get(
                self._secret_arn,
                max_age=int(self._cache_seconds),
                transform="json",
                force_fetch=refresh,
                # Explicit: during a rotation the secret's newest version is AWSPENDING, not yet in use.
                VersionStage="AWSCURRENT",
            )
        except GetParameterError:
            # The error text names the secret and the AWS failure: log it, never return it.
            logger.exception("could not read the app secret")
            raise ServiceUnavailable(_UNAVAILABLE) from None
        parsed = self._parsed
        if parsed is not None and parsed[0] is document:
            return parsed[1]
        try:
            keyring = parse_keyring(document)
        except MalformedKeyring as error:
            logger.error("the app secret is not a usable keyring", reason=str(error))
            raise ServiceUnavailable(_UNAVAILABLE) from None
        self._parsed = (document, keyring)
        return keyring

    def current_key(self, purpose: KeyPurpose) -> tuple[str, bytes]:
        """The current kid and its key for `purpose`: what signs and hashes now."""
        keyring = self.keyring()
        return keyring.current_kid, self._derive(keyring, keyring.current_kid, purpose)

    def key(self, purpose: KeyPurpose, kid: str) -> bytes:
        """The key of `kid` for `purpose`; RetiredKey when the ring has no such kid.

        An unknown kid newer than every kid of this copy makes the container read the secret again, unless
        it did so less than the cooldown ago; then the answer is a 503 to retry after the cooldown (never a
        refusal of what may be a valid cursor or key).
        """
        keyring = self.keyring()
        if keyring.material(kid) is None and keyring.may_know_later(kid):
            keyring = self._refreshed_for(kid)
        if keyring.material(kid) is None:
            raise RetiredKey(kid)
        return self._derive(keyring, kid, purpose)

    def _refreshed_for(self, kid: str) -> Keyring:
        with self._lock:
            # Another request may have refreshed while this one waited for the lock.
            keyring = self.keyring()
            if keyring.material(kid) is not None:
                return keyring
            now = self._clock()
            if self._last_refresh is not None:
                wait = self._last_refresh + self._refresh_cooldown_seconds - now
                if wait > 0:
                    if kid in self._missed:
                        # The last read looked for this very kid and did not find it: nobody made it.
                        return keyring
                    logger.warning(
                        "a key id newer than the app secret's copy waits for the cooldown", kid=kid
                    )
                    raise ServiceUnavailable(
                        "A server-side key is being refreshed; try again shortly.",
                        retry_after_seconds=max(1, int(wait + 0.999)),
                    )
            self._last_refresh = now
            logger.info("reading the app secret again for a key id it does not hold", kid=kid)
            keyring = self.keyring(refresh=True)
            self._missed = set() if keyring.material(kid) is not None else {kid}
            return keyring

    def _derive(self, keyring: Keyring, kid: str, purpose: KeyPurpose) -> bytes:
        material = keyring.material(kid)
        assert material is not None
        cached = self._derived.get((kid, purpose))
        if cached is None:
            cached = hmac.new(material.encode(), purpose.encode(), hashlib.sha256).digest()
            self._derived[(kid, purpose)] = cached
        return cached

    def _secrets(self) -> SecretsProvider:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SecretsProvider
            from botocore.config import Config

            # Well inside API Gateway's 29 s: a stuck call fails the request (503), not the gateway.
            config = Config(
                connect_timeout=1, read_timeout=2, retries={"max_attempts": 2, "mode": "standard"}
            )
            self._provider = SecretsProvider(boto_config=config)
        return self._provider


# One copy per Settings object: a process serves one app (one Lambda container), and a test that builds
# two apps gets two containers. Settings are unhashable (they hold lists), hence identity; the entry keeps
# its Settings alive, so the identity is never reused.
_keyrings: dict[int, tuple[Settings, ContainerKeyring]] = {}
_keyrings_lock = threading.Lock()


def container_keyring(settings: Settings) -> ContainerKeyring:
    with _keyrings_lock:
        entry = _keyrings.get(id(settings))
        if entry is None:
            keyring = ContainerKeyring(
                settings.app_secret_arn,
                settings.app_secret_cache_seconds,
                settings.app_secret_refresh_cooldown_seconds,
            )
            entry = _keyrings[id(settings)] = (settings, keyring)
        return entry[1]


class PurposeKeys:
    """The keys of one purpose, as pagination.CursorCodec wants them: the current one, and one by kid
    (None when retired)."""

    def __init__(self, settings: Settings, purpose: KeyPurpose) -> None:
        self._settings = settings
        self._purpose = purpose

    def signing_key(self) -> tuple[str, bytes]:
        return container_keyring(self._settings).current_key(self._purpose)

    def verification_key(self, kid: str) -> bytes | None:
        try:
            return container_keyring(self._settings).key(self._purpose, kid)
        except RetiredKey:
            return None


def derived_key(settings: Settings, purpose: KeyPurpose) -> bytes:
    """The current key for one purpose."""
    return container_keyring(settings).current_key(purpose)[1]


def keyed_digest(settings: Settings, purpose: KeyPurpose, message: str, made_like: str | None = None) -> str:
    """HMAC-SHA256 of `message` as stored: `<kid>$<hex>`, bare hex under LEGACY_KID (as stored before
    keyrings). Under the current key, or under the key of the kid that made the stored digest
    `made_like` (RetiredKey when that key is gone), so that the two compare equal for the same message."""
    keyring = container_keyring(settings)
    if made_like is None:
        kid, key = keyring.current_key(purpose)
    else:
        kid = digest_kid(made_like)
        key = keyring.key(purpose, kid)
    digest = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
    return digest if kid == LEGACY_KID else f"{kid}{_DIGEST_KID_SEPARATOR}{digest}"


def digest_kid(stored: str) -> str:
    """The kid of the key that made a stored keyed digest."""
    kid, separator, _ = stored.rpartition(_DIGEST_KID_SEPARATOR)
    return kid if separator else LEGACY_KID
