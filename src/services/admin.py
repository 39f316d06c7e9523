"""User administration for the admin group; every action is on the audit trail before it is taken."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import directory
import models
from auth import Principal
from errors import Conflict, DomainError, ServiceUnavailable
from observability import logger
from pagination import CursorCodec

ManagedGroup = Literal["admin", "user"]
ADMIN_GROUP: ManagedGroup = "admin"


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
    """The actions one admin takes in one request, each audited with that request's id.

    The target is looked up first (404 for nobody), so the lockout rules compare people, not the name
    (username, sub or email alias) the admin happened to use.
    """

    def __init__(self, actor: Principal, pool_id: str, request_id: str) -> None:
        self.actor = actor
        self.pool_id = pool_id
        self.request_id = request_id

    def _target(self, user_id: str) -> directory.DirectoryUser:
        return directory.lookup_user(self.pool_id, user_id)

    def _refuse_self_lockout(self, target: directory.DirectoryUser, what: str) -> None:
        itself = (target.subject is not None and target.subject == self.actor.subject) or (
            target.user_id == self.actor.username
        )
        if itself:
            raise Conflict(f"Admins cannot {what} themselves; ask another admin.")

    def _refuse_last_admin(self, target: directory.DirectoryUser, what: str) -> None:
        members, more = directory.group_members(self.pool_id, ADMIN_GROUP)
        if more or target.user_id not in {member.user_id for member in members}:
            return
        # The caller's token may still name a group the directory no longer gives them: count the directory.
        if not any(member.enabled and member.user_id != target.user_id for member in members):
            raise Conflict(f"Cannot {what} the last enabled admin; make someone else an admin first.")

    def _audited(
        self,
        action: str,
        target: directory.DirectoryUser,
        perform: Callable[[], dict[str, Any] | None],
        **details: Any,
    ) -> None:
        """Records the action, performs it, then records how it ended (with what `perform` returns).

        Nothing is done unless the record was written. A record left at "requested" means the end is not
        known (the directory or the table stopped answering midway); "failed" means it was refused.
        """
        try:
            record = models.audit.append_audit_record(
                self.actor.subject, action, target.subject or target.user_id, self.request_id, details
            )
        except models.audit.AuditTrailUnavailable:
            logger.exception("the audit trail could not be written; the action was not taken", action=action)
            raise ServiceUnavailable(
                "The audit trail cannot be written, so nothing was changed; try again shortly.",
                retry_after_seconds=2,
            ) from None
        try:
            found = perform()
        except DomainError as error:
            if not isinstance(error, ServiceUnavailable):
                self._settle(record, "failed", {"error": error.problem})
            raise
        self._settle(record, "succeeded", found or {})

    @staticmethod
    def _settle(
        record: models.audit.AuditRecord, outcome: models.audit.Outcome, details: dict[str, Any]
    ) -> None:
        try:
            models.audit.settle_audit_record(record, outcome, details)
        except models.audit.AuditTrailUnavailable:
            # The record stays "requested": the action is on the trail, only its end is not.
            logger.exception("could not record how an admin action ended", action=record.action)

    def _end_sessions(self, target: directory.DirectoryUser) -> dict[str, Any]:
        """After the directory acted: tokens from earlier sign-ins can no longer mint API keys, and the
        personal API keys already minted stop working."""
        if target.subject is None:
            return {"revoked_api_keys": []}
        # Taken once the directory has answered, so every token issued before it acted is older. Recorded
        # before the keys are revoked: a mint that reads it afterwards is refused, a key put before it is
        # revoked below; only a mint already past its check while both happen can slip through.
        revoked_at = datetime.now(UTC)
        models.profile.record_sessions_revoked(target.subject, revoked_at)
        revoked = models.api_key.revoke_all_api_keys(target.subject)
        return {"revoked_api_keys": revoked, "sessions_revoked_at": revoked_at.isoformat()}

    def set_enabled(self, user_id: str, enabled: bool) -> directory.DirectoryUser:
        target = self._target(user_id)
        if enabled:
            self._audited(
                "user.enable", target, lambda: directory.set_user_enabled(self.pool_id, user_id, True)
            )
        else:
            self._refuse_self_lockout(target, "disable")
            self._refuse_last_admin(target, "disable")

            def disable() -> dict[str, Any]:
                directory.set_user_enabled(self.pool_id, user_id, False)
                # A disabled person's personal API keys must stop working with them, and tokens they
                # hold must not mint new ones once they are enabled again.
                return self._end_sessions(target)

            self._audited("user.disable", target, disable)
        return directory.get_user(self.pool_id, user_id)

    def add_to_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        self._audited(
            "user.group.add",
            target,
            lambda: directory.add_user_to_group(self.pool_id, user_id, group),
            group=group,
        )
        return directory.get_user(self.pool_id, user_id)

    def remove_from_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        if group == ADMIN_GROUP:
            self._refuse_self_lockout(target, "remove admin rights from")
            self._refuse_last_admin(target, "remove admin rights from")
        self._audited(
            "user.group.remove",
            target,
            lambda: directory.remove_user_from_group(self.pool_id, user_id, group),
            group=group,
        )
        return directory.get_user(self.pool_id, user_id)

    def sign_out_everywhere(self, user_id: str) -> None:
        target = self._target(user_id)
        self._refuse_self_lockout(target, "sign out")

        def sign_out() -> dict[str, Any]:
            directory.sign_out_everywhere(self.pool_id, user_id)
            # Signing someone out everywhere includes the scripts that act for them.
            return self._end_sessions(target)

        self._audited("user.sign_out", target, sign_out)


def audit_trail(
    limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.audit.AuditRecord], str | None]:
    start_key = codec.decode(cursor, binding)
    records, last_key = models.audit.list_audit_records(limit, start_key)
    return records, codec.encode(last_key, binding)
