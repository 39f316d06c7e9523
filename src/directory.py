"""The user directory (Cognito user pool admin operations): the one place that calls Cognito.

The client is created once per container, on first use, with timeouts far below API Gateway's 29 s;
Cognito's errors become domain errors here, so no AWS error text travels further.

Two names for one user: Cognito's `Username` (what the admin APIs take; for federated users it reads like
`Google_123...`) and the `sub` attribute (what tokens carry as the subject, and what owns data here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from errors import DomainError, NotFound, ServiceUnavailable
from observability import logger
from pagination import InvalidCursor


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    subject: str | None
    email: str | None
    name: str | None
    # Whether the person proved they receive mail at `email`. An unverified address is only a claim:
    # anyone may set theirs to someone else's.
    email_verified: bool
    enabled: bool
    status: str
    created_at: datetime | None
    groups: tuple[str, ...] = ()

    @property
    def verified_email(self) -> str | None:
        return self.email if self.email and self.email_verified else None


@lru_cache(maxsize=1)
def _cognito() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("cognito-idp", config=config)


_NOT_FOUND = {"UserNotFoundException", "ResourceNotFoundException"}
_UNAVAILABLE = {"TooManyRequestsException", "LimitExceededException", "InternalErrorException"}
# Cognito refuses a malformed argument (a username with spaces, an expired pagination token) with
# InvalidParameterException; the stand-in calls a bad pagination token InvalidToken.
_INVALID = {"InvalidParameterException", "ValidationException", "InvalidToken"}


class _NoMatch(NotFound):
    """A search whose argument Cognito cannot even parse: it matches nobody."""


@contextmanager
def _translated_errors(what: str, *, invalid: DomainError | None = None) -> Iterator[None]:
    """Cognito errors → domain errors; `invalid` is what a malformed argument means to the caller
    (by default: no such `what`)."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    refused_argument = invalid if invalid is not None else NotFound(f"No such {what}.")
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _NOT_FOUND:
            raise NotFound(f"No such {what}.") from None
        if code in _INVALID:
            logger.info("the user directory refused an argument", code=code)
            raise refused_argument from None
        logger.exception("the user directory refused a call", code=code)
        if code in _UNAVAILABLE:
            raise ServiceUnavailable(
                "The user directory is busy; try again shortly.", retry_after_seconds=2
            ) from None
        raise
    except ParamValidationError:
        # botocore checks lengths before sending: the same meaning as Cognito's own refusal.
        raise refused_argument from None
    except BotoCoreError:
        logger.exception("the user directory could not be reached")
        raise ServiceUnavailable(
            "The user directory is unreachable; try again shortly.", retry_after_seconds=2
        ) from None


def _attributes(raw: list[dict[str, str]]) -> dict[str, str]:
    return {attribute["Name"]: attribute["Value"] for attribute in raw}


def _user_from(raw: dict[str, Any], attributes_key: str) -> DirectoryUser:
    attributes = _attributes(raw.get(attributes_key, []))
    return DirectoryUser(
        user_id=raw["Username"],
        subject=attributes.get("sub") or None,
        email=attributes.get("email"),
        name=attributes.get("name"),
        email_verified=attributes.get("email_verified", "").lower() == "true",
        enabled=bool(raw.get("Enabled", True)),
        status=str(raw.get("UserStatus", "UNKNOWN")),
        created_at=raw.get("UserCreateDate"),
    )


def list_users(
    pool_id: str, limit: int, pagination_token: str | None
) -> tuple[list[DirectoryUser], str | None]:
    arguments: dict[str, Any] = {"UserPoolId": pool_id, "Limit": min(limit, 60)}
    if pagination_token:
        arguments["PaginationToken"] = pagination_token
    # Cognito's pagination tokens expire: an old cursor is then refused like any other invalid cursor.
    invalid = InvalidCursor("The cursor has expired; start again without it.") if pagination_token else None
    with _translated_errors("user pool", invalid=invalid):
        response = _cognito().list_users(**arguments)
    users = [_user_from(raw, "Attributes") for raw in response.get("Users", [])]
    return users, response.get("PaginationToken")


def lookup_user(pool_id: str, user_id: str) -> DirectoryUser:
    """One user by username or alias (email), without groups: one call."""
    with _translated_errors("user"):
        raw = _cognito().admin_get_user(UserPoolId=pool_id, Username=user_id)
    return _user_from(raw, "UserAttributes")


def get_user(pool_id: str, user_id: str) -> DirectoryUser:
    """One user with their groups: `lookup_user`, then the groups of the username it found (two calls)."""
    user = lookup_user(pool_id, user_id)
    with _translated_errors("user"):
        response = _cognito().admin_list_groups_for_user(UserPoolId=pool_id, Username=user.user_id, Limit=60)
    return replace(user, groups=tuple(sorted(group["GroupName"] for group in response.get("Groups", []))))


def _admin_call(call: Callable[[Any], Any], what: str = "user") -> None:
    with _translated_errors(what):
        call(_cognito())


def set_user_enabled(pool_id: str, user_id: str, enabled: bool) -> None:
    if enabled:
        _admin_call(lambda c: c.admin_enable_user(UserPoolId=pool_id, Username=user_id))
    else:
        _admin_call(lambda c: c.admin_disable_user(UserPoolId=pool_id, Username=user_id))


def add_user_to_group(pool_id: str, user_id: str, group: str) -> None:
    _admin_call(lambda c: c.admin_add_user_to_group(UserPoolId=pool_id, Username=user_id, GroupName=group))


def remove_user_from_group(pool_id: str, user_id: str, group: str) -> None:
    _admin_call(
        lambda c: c.admin_remove_user_from_group(UserPoolId=pool_id, Username=user_id, GroupName=group)
    )


def sign_out_everywhere(pool_id: str, user_id: str) -> None:
    _admin_call(lambda c: c.admin_user_global_sign_out(UserPoolId=pool_id, Username=user_id))


def _find_one(pool_id: str, attribute: str, value: str) -> DirectoryUser | None:
    """The one user whose `attribute` equals `value`; None for no match or an ambiguous one."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    try:
        with _translated_errors("user pool", invalid=_NoMatch("No such user.")):
            response = _cognito().list_users(UserPoolId=pool_id, Filter=f'{attribute} = "{escaped}"', Limit=2)
    except _NoMatch:
        return None
    users = response.get("Users", [])
    return _user_from(users[0], "Attributes") if len(users) == 1 else None


def find_user_by_subject(pool_id: str, subject: str) -> DirectoryUser | None:
    """The user whose tokens carry `subject`: a search, since the admin APIs take usernames, not subs."""
    found = _find_one(pool_id, "sub", subject)
    return found if found is not None and found.subject == subject else None
