"""User administration for the admin group; every action is on the audit trail before it is taken."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import directory
import models
from auth import Principal
from errors import Conflict, DomainError, ServiceUnavailable, is_transient_aws_failure, problem_type_of
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
    (username, sub or email alias) the admin happened to use. Every call after the lookup names the
    username found: an email alias that passes to someone else meanwhile cannot make the user acted on
    differ from the user audited.
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
        perform: Callable[[dict[str, Any]], None],
        **details: Any,
    ) -> None:
        """Records the action, performs it, then records how it ended with what `perform` noted as done.

        Nothing is done unless the record was written. "failed" means the request ended in an error, of
        whatever kind, and every step of every action is safe to repeat; when the directory's own call
        timed out, it may have acted nonetheless. A record left at "requested" means its end could not
        be recorded (the table stopped answering after the action).
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
        done: dict[str, Any] = {}
        try:
            perform(done)
        except Exception as error:
            self._settle(record, "failed", {**done, "error": problem_type_of(error)})
            raise
        self._settle(record, "succeeded", done)

    @staticmethod
    def _settle(
        record: models.audit.AuditRecord, outcome: models.audit.Outcome, details: dict[str, Any]
    ) -> None:
        try:
            models.audit.settle_audit_record(record, outcome, details)
        except models.audit.AuditTrailUnavailable:
            # The record stays "requested": the action is on the trail, only its end is not.
            logger.exception("could not record how an admin action ended", action=record.action)

    @staticmethod
    def _end_sessions(target: directory.DirectoryUser, done: dict[str, Any]) -> None:
        """Tokens from sign-ins before now can no longer mint API keys, and the personal API keys minted
        so far stop working. Safe to repeat."""
        if target.subject is None:
            return
        # Recorded before the keys are looked up: a mint that checks after this is refused, and a key put
        # before the lookup is revoked by it (services.api_keys checks again after its put).
        revoked_at = datetime.now(UTC)
        models.profile.record_sessions_revoked(target.subject, revoked_at)
        done["sessions_revoked_at"] = revoked_at.isoformat()
        revoked = models.api_key.revoke_all_api_keys(target.subject)
        done["revoked_api_keys"] = [*done.get("revoked_api_keys", []), *revoked]

    def _ending_sessions(
        self, target: directory.DirectoryUser, act: Callable[[], None]
    ) -> Callable[[dict[str, Any]], None]:
        """`act` (the directory's part) between two rounds of `_end_sessions`."""

        def perform(done: dict[str, Any]) -> None:
            # Before the directory acts: should anything fail, the user is not left disabled or signed out
            # with the keys they had still working, and the admin's retry repeats every step.
            self._end_sessions(target, done)
            try:
                act()
            except Exception as error:
                # The admin must not read the refusal as "nothing changed": say what already happened.
                already = (
                    " The user's API keys were already revoked and earlier sign-ins can no longer mint"
                    " keys; retry to finish."
                )
                if isinstance(error, DomainError):
                    error.detail += already
                    raise
                if is_transient_aws_failure(error):
                    raise ServiceUnavailable("The user directory did not answer." + already) from error
                raise
            # Again once the directory has answered: a key minted meanwhile, with a token from a sign-in
            # during the action, goes too, and tokens issued before the directory acted can mint no more.
            self._end_sessions(target, done)

        return perform

    def set_enabled(self, user_id: str, enabled: bool) -> directory.DirectoryUser:
        target = self._target(user_id)
        if enabled:
            self._audited(
                "user.enable",
                target,
                lambda _done: directory.set_user_enabled(self.pool_id, target.user_id, True),
            )
        else:
            self._refuse_self_lockout(target, "disable")
            self._refuse_last_admin(target, "disable")
            # A disabled person's personal API keys stop working with them, and tokens they hold must
            # not mint new ones once they are enabled again.
            disable = self._ending_sessions(
                target, lambda: directory.set_user_enabled(self.pool_id, target.user_id, False)
            )
            self._audited("user.disable", target, disable)
        return directory.get_user(self.pool_id, target.user_id)

    def add_to_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        self._audited(
            "user.group.add",
            target,
            lambda _done: directory.add_user_to_group(self.pool_id, target.user_id, group),
            group=group,
        )
        return directory.get_user(self.pool_id, target.user_id)

    def remove_from_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        if group == ADMIN_GROUP:
            self._refuse_self_lockout(target, "remove admin rights from")
            self._refuse_last_admin(target, "remove admin rights from")
        self._audited(
            "user.group.remove",
            target,
            lambda _done: directory.remove_user_from_group(self.pool_id, target.user_id, group),
            group=group,
        )
        return directory.get_user(self.pool_id, target.user_id)

    def sign_out_everywhere(self, user_id: str) -> None:
        target = self._target(user_id)
        self._refuse_self_lockout(target, "sign out")
        # Signing someone out everywhere includes the scripts that act for them.
        sign_out = self._ending_sessions(
            target, lambda: directory.sign_out_everywhere(self.pool_id, target.user_id)
        )
        self._audited("user.sign_out", target, sign_out)


def audit_trail(
    limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.audit.AuditRecord], str | None]:
    start_key = codec.decode(cursor, binding)
    records, last_key = models.audit.list_audit_records(limit, start_key)
    return records, codec.encode(last_key, binding)
