"""User administration for the admin group; every action is on the audit trail before it is taken."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import directory
import models
from auth import Principal
from errors import (
    Conflict,
    DomainError,
    Forbidden,
    ServiceUnavailable,
    is_transient_aws_failure,
    problem_type_of,
)
from observability import logger
from pagination import CursorCodec
from services.accounts import end_sessions, live_directory_entry, refuse_ended_session
from settings import Settings

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

    def _refuse_self(self, target: directory.DirectoryUser, what: str) -> None:
        itself = (target.subject is not None and target.subject == self.actor.subject) or (
            target.user_id == self.actor.username
        )
        if itself:
            raise Conflict(f"Admins cannot {what} themselves; ask another admin.")

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
    def _end_sessions(target: directory.DirectoryUser, done: dict[str, Any], ended_at: datetime) -> None:
        """Tokens from sign-ins before `ended_at` can no longer mint API keys or act as admins, and every
        personal API key of the user is revoked: one transaction. Safe to repeat."""
        if target.subject is None:
            return
        revoked = end_sessions(target.subject, ended_at)
        done["sessions_ended"] = True
        # A count, not the ids: the record stays small however the action is repeated.
        done["revoked_api_keys"] = int(done.get("revoked_api_keys", 0)) + revoked

    def _then_ending_sessions(
        self, target: directory.DirectoryUser, act: Callable[[], None]
    ) -> Callable[[dict[str, Any]], None]:
        """`act` (the directory's part) first, then `_end_sessions`: revoking keys never delays locking
        the account. Should ending the sessions fail, the admin is told what already happened, and a
        retry repeats every step (each is idempotent)."""

        def perform(done: dict[str, Any]) -> None:
            # Sessions end when the directory acts: someone who signs in again right after keeps that new
            # session (their keys minted meanwhile go all the same: every listed key is revoked).
            ended_at = datetime.now(UTC)
            act()
            done["directory"] = "done"
            try:
                self._end_sessions(target, done, ended_at)
            except Exception as error:
                already = " The directory already acted; retry to finish ending the user's sessions."
                if isinstance(error, DomainError):
                    error.detail += already
                    raise
                if is_transient_aws_failure(error):
                    raise ServiceUnavailable("The data store did not answer." + already) from error
                raise

        return perform

    def set_enabled(self, user_id: str, enabled: bool) -> directory.DirectoryUser:
        target = self._target(user_id)
        if enabled:
            # A disabled admin's token is refused before it gets here (require_live_admin); an enabled one
            # has nothing to enable. Either way nobody enables themselves.
            self._refuse_self(target, "enable")
            self._audited(
                "user.enable",
                target,
                lambda _done: directory.set_user_enabled(self.pool_id, target.user_id, True),
            )
        else:
            self._refuse_self(target, "disable")
            # A disabled person's personal API keys stop working with them, and tokens they hold must
            # not mint new ones once they are enabled again.
            disable = self._then_ending_sessions(
                target, lambda: directory.set_user_enabled(self.pool_id, target.user_id, False)
            )
            self._audited("user.disable", target, disable)
        return directory.get_user(self.pool_id, target.user_id)

    def add_to_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        self._refuse_self(target, "change the groups of")
        self._audited(
            "user.group.add",
            target,
            lambda _done: directory.add_user_to_group(self.pool_id, target.user_id, group),
            group=group,
        )
        return directory.get_user(self.pool_id, target.user_id)

    def remove_from_group(self, user_id: str, group: ManagedGroup) -> directory.DirectoryUser:
        target = self._target(user_id)
        self._refuse_self(target, "change the groups of")
        if group != ADMIN_GROUP:
            self._audited(
                "user.group.remove",
                target,
                lambda _done: directory.remove_user_from_group(self.pool_id, target.user_id, group),
                group=group,
            )
            return directory.get_user(self.pool_id, target.user_id)

        # A demoted admin keeps no session that was opened as an admin: their tokens carry the group
        # until they expire, and their refresh tokens would mint more.
        def demote() -> None:
            directory.remove_user_from_group(self.pool_id, target.user_id, group)
            directory.sign_out_everywhere(self.pool_id, target.user_id)

        self._audited("user.group.remove", target, self._then_ending_sessions(target, demote), group=group)
        return directory.get_user(self.pool_id, target.user_id)

    def sign_out_everywhere(self, user_id: str) -> None:
        target = self._target(user_id)
        self._refuse_self(target, "sign out")
        # Signing someone out everywhere includes the scripts that act for them.
        sign_out = self._then_ending_sessions(
            target, lambda: directory.sign_out_everywhere(self.pool_id, target.user_id)
        )
        self._audited("user.sign_out", target, sign_out)


def confirm_live_admin(principal: Principal, settings: Settings) -> None:
    """Admin rights are read live, not from the token: the caller's account exists, is the token's
    subject, is enabled and is in the admin group now (two Cognito calls), and the caller's sessions were
    not ended after the token's sign-in (one consistent GetItem). A disabled, demoted or signed-out admin
    is refused at once, whatever their token still says."""
    if principal.auth_method != "jwt" or principal.username is None:
        raise Forbidden("Administration is for signed-in people.")
    account = live_directory_entry(principal, settings, with_groups=True)
    if ADMIN_GROUP not in account.groups:
        raise Forbidden(f"This requires membership in: {ADMIN_GROUP}.")
    refuse_ended_session(principal, models.api_key.get_key_holder(principal.subject).sessions_revoked_at)


def audit_trail(
    limit: int, cursor: str | None, codec: CursorCodec, binding: str
) -> tuple[list[models.audit.AuditRecord], str | None]:
    start_key = codec.decode(cursor, binding)
    records, last_key = models.audit.list_audit_records(limit, start_key)
    return records, codec.encode(last_key, binding)
