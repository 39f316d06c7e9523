"""The user directory (Cognito user pool admin operations): the one place that calls Cognito.

The client is created once per container, on first use, with timeouts far below API Gateway's 29 s;
Cognito's errors become domain errors here, so no AWS error text travels further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from errors import NotFound, ServiceUnavailable
from observability import logger


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    email: str | None
    name: str | None
    enabled: bool
    status: str
    created_at: datetime | None
    groups: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def _cognito() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 2})
    return boto3.client("cognito-idp", config=config)


_NOT_FOUND = {"UserNotFoundException", "ResourceNotFoundException"}
_UNAVAILABLE = {"TooManyRequestsException", "LimitExceededException", "InternalErrorException"}


@contextmanager
def _translated_errors(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _NOT_FOUND:
            raise NotFound(f"No such {what}.") from None
        logger.exception("the user directory refused a call", code=code)
        if code in _UNAVAILABLE:
            raise ServiceUnavailable(
                "The user directory is busy; try again shortly.", retry_after_seconds=2
            ) from None
        raise
    except BotoCoreError:
        logger.exception("the user directory could not be reached")
        raise ServiceUnavailable(
            "The user directory is unreachable; try again shortly.", retry_after_seconds=2
        ) from None


def _attributes(raw: list[dict[str, str]]) -> dict[str, str]:
    return {attribute["Name"]: attribute["Value"] for attribute in raw}


def _user_from(raw: dict[str, Any], attributes_key: str, groups: tuple[str, ...] = ()) -> DirectoryUser:
    attributes = _attributes(raw.get(attributes_key, []))
    return DirectoryUser(
        user_id=raw["Username"],
        email=attributes.get("email"),
        name=attributes.get("name"),
        enabled=bool(raw.get("Enabled", True)),
        status=str(raw.get("UserStatus", "UNKNOWN")),
        created_at=raw.get("UserCreateDate"),
        groups=groups,
    )


def list_users(
    pool_id: str, limit: int, pagination_token: str | None
) -> tuple[list[DirectoryUser], str | None]:
    arguments: dict[str, Any] = {"UserPoolId": pool_id, "Limit": min(limit, 60)}
    if pagination_token:
        arguments["PaginationToken"] = pagination_token
    with _translated_errors("user pool"):
        response = _cognito().list_users(**arguments)
    users = [_user_from(raw, "Attributes") for raw in response.get("Users", [])]
    return users, response.get("PaginationToken")


def get_user(pool_id: str, user_id: str) -> DirectoryUser:
    with _translated_errors("user"):
        raw = _cognito().admin_get_user(UserPoolId=pool_id, Username=user_id)
        groups = _cognito().admin_list_groups_for_user(UserPoolId=pool_id, Username=user_id, Limit=60)
    names = tuple(sorted(group["GroupName"] for group in groups.get("Groups", [])))
    return _user_from(raw, "UserAttributes", names)


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


def find_user_by_email(pool_id: str, email: str) -> str | None:
    """The username (sub) of the user who signs in with `email`, if any."""
    escaped = email.replace("\\", "\\\\").replace('"', '\\"')
    with _translated_errors("user pool"):
        response = _cognito().list_users(UserPoolId=pool_id, Filter=f'email = "{escaped}"', Limit=2)
    users = response.get("Users", [])
    return str(users[0]["Username"]) if len(users) == 1 else None
