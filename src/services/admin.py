"""User administration for the admin group; every action leaves an audit record."""

from __future__ import annotations

from typing import Any, Literal

import directory
import models
from auth import Principal
from errors import Conflict
from pagination import CursorCodec

ManagedGroup = Literal["admin", "user"]


def list_directory_users(
    pool_id: str, limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[directory.DirectoryUser], str | None]:
    # Cognito's own pagination token travels inside our signed cursor: clients cannot forge or swap it.
    token = codec.decode(cursor, binding)
    users, next_token = directory.list_users(pool_id, limit, token)
    return users, codec.encode(next_token, binding)


def get_directory_user(pool_id: str, user_id: str) -> directory.DirectoryUser:
    return directory.get_user(pool_id, user_id)


class AdminActions:
    """The actions one admin takes in one request, each audited with that request's id."""

    def __init__(self, actor: Principal, pool_id: str, request_id: str) -> None:
        self.actor = actor
        self.pool_id = pool_id
        self.request_id = request_id

    def _audit(self, action: str, target: str, **details: Any) -> None:
        models.audit.append_audit_record(self.actor.subject, action, target, self.request_id, details)

    def _refuse_self_lockout(self, user_id: str, what: str) -> None:
        if user_id in {self.actor.subject, self.actor.username}:
            raise Conflict(f"Admins cannot {what} themselves; ask another admin.")

    def set_enabled(self, user_id: str, enabled: bool) -> directory.DirectoryUser:
        if not enabled:
            self._refuse_self_lockout(user_id, "disable")
        directory.set_user_enabled(self.pool_id, user_id, enabled)
        self._audit("user.enable" if enabled else "user.disable", user_id)
        return directory.get_user(self.pool_id, user_id)

    def add_to_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        directory.add_user_to_group(self.pool_id, user_id, group)
        self._audit("user.group.add", user_id, group=group)
        return directory.get_user(self.pool_id, user_id)

    def remove_from_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        if group == "admin":
            self._refuse_self_lockout(user_id, "remove admin rights from")
        directory.remove_user_from_group(self.pool_id, user_id, group)
        self._audit("user.group.remove", user_id, group=group)
        return directory.get_user(self.pool_id, user_id)

    def sign_out_everywhere(self, user_id: str) -> None:
        directory.sign_out_everywhere(self.pool_id, user_id)
        self._audit("user.sign_out", user_id)


def audit_trail(
    limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.audit.AuditRecord], str | None]:
    start_key = codec.decode(cursor, binding)
    records, last_key = models.audit.list_audit_records(limit, start_key)
    return records, codec.encode(last_key, binding)
