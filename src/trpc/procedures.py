"""Every tRPC procedure (the names a front end codes against), each beside the REST operation it mirrors.

A procedure translates its input into the call its twin's route makes and the result into the twin's
response model, and nothing more: authorization, invariants and data access stay in services/. Its
guards (authentication, scopes, groups, rate-limit class) are not declared here: each call runs its
twin's own (router.py). REST operations without a procedure are listed in REST_ONLY with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from idempotency import run_once
from pagination import Page, PageCursor, PageLimit, query_binding
from routers import health
from routers.activity import ActivityEntry
from routers.api_keys import ApiKeyInfo, ApiKeyRequest, IssuedApiKey
from routers.fields import ApiKeyId as KeyId
from routers.fields import InvitationId, ProjectId, SubjectId, Tag, TaskId
from routers.fields import SubjectId as MemberId
from routers.health import HealthStatus
from routers.invitations import InvitationCreate, InvitationView
from routers.me import Profile, ProfilePatch
from routers.schemas import (
    Member,
    MemberAdd,
    MemberRole,
    MyProject,
    ProjectCreate,
    ProjectPatch,
    ProjectView,
    Status,
    TaskCreate,
    TaskPatch,
    TaskView,
)
from services import activity, invitations, projects, tasks
from services.api_keys import issue_api_key, my_api_keys, revoke_my_api_key
from services.profiles import change_profile, get_or_create_profile
from trpc.procedure import Call, Kind, Params, Procedure

# REST operations with no procedure, on purpose: (method or "*", path template or "<prefix>/*") -> why.
REST_ONLY: dict[tuple[str, str], str] = {
    ("GET", "/"): "the API index links to the REST documentation; a tRPC client has its types instead",
    ("GET", "/health/ready"): "a probe for operators and load balancers, which speak plain HTTP",
    ("*", "/admin/*"): "user administration and the audit trail serve operators' tools, not front ends",
}


def rest_only_reason(method: str, path: str) -> str | None:
    """Why the REST operation has no procedure, when REST_ONLY lists it."""
    for (listed_method, listed_path), reason in REST_ONLY.items():
        if listed_method not in ("*", method):
            continue
        if path == listed_path or (listed_path.endswith("/*") and path.startswith(listed_path[:-1])):
            return reason
    return None


ExpectedVersion = Annotated[
    int | None,
    Field(
        ge=0,
        le=10**18 - 1,
        description="The `version` you read: the change is refused (PRECONDITION_FAILED) if the item "
        "changed since. Leave it out for an unconditional change. REST: `If-Match`.",
    ),
]
# The constraints of the twin's Idempotency-Key header (idempotency.IdempotencyKey), which carries a
# header alias and so cannot be a model field as it is.
IdempotencyKeyInput = Annotated[
    str | None,
    Field(
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Send the same key when retrying: the original answer comes back (24 h). The key is "
        "shared with the REST operation's Idempotency-Key.",
    ),
]


class Pagination(Params):
    limit: PageLimit = 20
    cursor: PageCursor = None


class ProjectRef(Params):
    id: ProjectId


class ProjectChange(Params):
    id: ProjectId
    expected_version: ExpectedVersion = None


class NewProject(Params):
    idempotency_key: IdempotencyKeyInput = None


class ProjectPage(Params):
    project_id: ProjectId
    limit: PageLimit = 20
    cursor: PageCursor = None


class NewMember(Params):
    project_id: ProjectId
    idempotency_key: IdempotencyKeyInput = None


class MemberRef(Params):
    project_id: ProjectId
    member_id: MemberId


class ProjectTasksPage(Params):
    project_id: ProjectId
    limit: PageLimit = 20
    cursor: PageCursor = None
    sort: Annotated[
        Literal["created", "due"], Field(description="created (oldest first) or due (soonest first)")
    ] = "created"
    status: Status | None = None
    assignee: SubjectId | None = None
    tag: Tag | None = None


class TaskRef(Params):
    id: TaskId


class TaskChange(Params):
    id: TaskId
    expected_version: ExpectedVersion = None


class NewTask(Params):
    project_id: ProjectId
    idempotency_key: IdempotencyKeyInput = None


class MyTasksPage(Params):
    limit: PageLimit = 20
    cursor: PageCursor = None
    status: Status | None = None


class ApiKeyRef(Params):
    id: KeyId


class ProjectInvitations(Params):
    project_id: ProjectId


class NewInvitation(Params):
    project_id: ProjectId
    idempotency_key: IdempotencyKeyInput = None


class ProjectInvitationRef(Params):
    project_id: ProjectId
    invitation_id: InvitationId


class InvitationRef(Params):
    id: InvitationId


_declared: list[Procedure] = []
R = TypeVar("R", bound=Callable[..., Any])


def _procedure(
    kind: Kind,
    name: str,
    rest: tuple[str, str],
    *,
    params: type[Params] | None = None,
    body: type[BaseModel] | None = None,
    output: Any = None,
) -> Callable[[R], R]:
    def declare(resolve: R) -> R:
        _declared.append(Procedure(name, kind, rest, resolve, params=params, body=body, output=output))
        return resolve

    return declare


def query(name: str, rest: str, **options: Any) -> Callable[[R], R]:
    return _procedure("query", name, ("GET", rest), **options)


def mutation(name: str, rest: tuple[str, str], **options: Any) -> Callable[[R], R]:
    return _procedure("mutation", name, rest, **options)


def _binding(call: Call, **query: Any) -> str:
    # A cursor is valid for the procedure, the caller and the query that produced it.
    return query_binding(f"trpc:{call.procedure.name}", call.user.subject, **query)


def _create_once(
    call: Call, key: str | None, body: BaseModel, produce: Callable[[], dict[str, Any]], **path: str
) -> dict[str, Any]:
    """`produce()` under the twin's idempotency record: one key is one request on either surface."""
    return run_once(
        call.request,
        call.settings,
        call.user.subject,
        key,
        body.model_dump(mode="json"),
        produce,
        operation=call.procedure.rest,
        path_parameters=path,
    )


# -- health and me ---------------------------------------------------------------------------------------
@query("health", "/health", output=HealthStatus)
async def _health(call: Call, params: None, body: None) -> HealthStatus:
    # The liveness route's own answer (it has no service: liveness does no I/O).
    return await health.liveness()


@query("me.get", "/me", output=Profile)
def _my_profile(call: Call, params: None, body: None) -> Profile:
    return Profile.of(get_or_create_profile(call.user, call.settings))


@mutation("me.update", ("PATCH", "/me"), body=ProfilePatch, output=Profile)
def _change_my_profile(call: Call, params: None, body: ProfilePatch) -> Profile:
    preferences = body.preferences.model_dump(exclude_unset=True) if body.preferences is not None else None
    return Profile.of(change_profile(call.user, call.settings, body.display_name, preferences))


# -- projects --------------------------------------------------------------------------------------------
@query("projects.list", "/projects", params=Pagination, output=Page[MyProject])
def _my_projects(call: Call, params: Pagination, body: None) -> Page[MyProject]:
    binding = _binding(call)
    items, last_key = projects.my_projects(
        call.user, params.limit, call.cursors.decode(params.cursor, binding)
    )
    return Page[MyProject](
        items=[MyProject.of(m) for m in items], next_cursor=call.cursors.encode(last_key, binding)
    )


@query("projects.byId", "/projects/{project_id}", params=ProjectRef, output=ProjectView)
def _project(call: Call, params: ProjectRef, body: None) -> ProjectView:
    return ProjectView.of(projects.visible_project(call.user, params.id), call.user.subject)


@mutation("projects.create", ("POST", "/projects"), params=NewProject, body=ProjectCreate, output=ProjectView)
def _create_project(call: Call, params: NewProject, body: ProjectCreate) -> dict[str, Any]:
    user = call.user

    def produce() -> dict[str, Any]:
        return ProjectView.of(
            projects.create_project(user, body.name, body.description), user.subject
        ).model_dump(mode="json")

    return _create_once(call, params.idempotency_key, body, produce)


@mutation(
    "projects.update",
    ("PATCH", "/projects/{project_id}"),
    params=ProjectChange,
    body=ProjectPatch,
    output=ProjectView,
)
def _change_project(call: Call, params: ProjectChange, body: ProjectPatch) -> ProjectView:
    changes = body.model_dump(exclude_unset=True)
    project = projects.change_project(call.user, params.id, changes, params.expected_version)
    return ProjectView.of(project, call.user.subject)


@mutation("projects.delete", ("DELETE", "/projects/{project_id}"), params=ProjectChange)
def _delete_project(call: Call, params: ProjectChange, body: None) -> None:
    projects.delete_project(call.user, params.id, params.expected_version)


@query("projects.members.list", "/projects/{project_id}/members", params=ProjectPage, output=Page[Member])
def _members(call: Call, params: ProjectPage, body: None) -> Page[Member]:
    binding = _binding(call, project_id=params.project_id)
    items, last_key = projects.project_members(
        call.user, params.project_id, params.limit, call.cursors.decode(params.cursor, binding)
    )
    return Page[Member](
        items=[Member.of(m) for m in items], next_cursor=call.cursors.encode(last_key, binding)
    )


@query(
    "projects.activity",
    "/projects/{project_id}/activity",
    params=ProjectPage,
    output=Page[ActivityEntry],
)
def _activity(call: Call, params: ProjectPage, body: None) -> Page[ActivityEntry]:
    binding = _binding(call, project_id=params.project_id)
    items, last_key = activity.project_activity(
        call.user,
        params.project_id,
        call.settings.activity_retention_days,
        params.limit,
        call.cursors.decode(params.cursor, binding),
    )
    return Page[ActivityEntry](
        items=[ActivityEntry.of(entry) for entry in items], next_cursor=call.cursors.encode(last_key, binding)
    )


@mutation(
    "projects.members.add",
    ("POST", "/projects/{project_id}/members"),
    params=NewMember,
    body=MemberAdd,
    output=Member,
)
def _add_member(call: Call, params: NewMember, body: MemberAdd) -> dict[str, Any]:
    user, settings = call.user, call.settings

    def produce() -> dict[str, Any]:
        membership = projects.add_member(user, settings, params.project_id, body.subject, body.role)
        return Member.of(membership).model_dump(mode="json")

    return _create_once(call, params.idempotency_key, body, produce, project_id=params.project_id)


@mutation(
    "projects.members.update",
    ("PATCH", "/projects/{project_id}/members/{member_id}"),
    params=MemberRef,
    body=MemberRole,
    output=Member,
)
def _change_member(call: Call, params: MemberRef, body: MemberRole) -> Member:
    return Member.of(projects.change_member_role(call.user, params.project_id, params.member_id, body.role))


@mutation(
    "projects.members.remove", ("DELETE", "/projects/{project_id}/members/{member_id}"), params=MemberRef
)
def _remove_member(call: Call, params: MemberRef, body: None) -> None:
    projects.remove_member(call.user, params.project_id, params.member_id)


# -- tasks -----------------------------------------------------------------------------------------------
@query("tasks.list", "/projects/{project_id}/tasks", params=ProjectTasksPage, output=Page[TaskView])
def _project_tasks(call: Call, params: ProjectTasksPage, body: None) -> Page[TaskView]:
    binding = _binding(
        call,
        project_id=params.project_id,
        sort=params.sort,
        status=params.status,
        assignee=params.assignee,
        tag=params.tag,
    )
    items, last_key = tasks.project_tasks(
        call.user,
        params.project_id,
        sort=params.sort,
        status=params.status,
        assignee=params.assignee,
        tag=params.tag,
        limit=params.limit,
        start_key=call.cursors.decode(params.cursor, binding),
    )
    return Page[TaskView](
        items=[TaskView.of(t) for t in items], next_cursor=call.cursors.encode(last_key, binding)
    )


@query("tasks.byId", "/tasks/{task_id}", params=TaskRef, output=TaskView)
def _task(call: Call, params: TaskRef, body: None) -> TaskView:
    return TaskView.of(tasks.get_task(call.user, params.id))


@mutation(
    "tasks.create", ("POST", "/projects/{project_id}/tasks"), params=NewTask, body=TaskCreate, output=TaskView
)
def _create_task(call: Call, params: NewTask, body: TaskCreate) -> dict[str, Any]:
    user = call.user

    def produce() -> dict[str, Any]:
        return TaskView.of(tasks.create_task(user, params.project_id, body.model_dump())).model_dump(
            mode="json"
        )

    return _create_once(call, params.idempotency_key, body, produce, project_id=params.project_id)


@mutation("tasks.update", ("PATCH", "/tasks/{task_id}"), params=TaskChange, body=TaskPatch, output=TaskView)
def _change_task(call: Call, params: TaskChange, body: TaskPatch) -> TaskView:
    changes = body.model_dump(exclude_unset=True)
    return TaskView.of(tasks.change_task(call.user, params.id, changes, params.expected_version))


@mutation("tasks.delete", ("DELETE", "/tasks/{task_id}"), params=TaskChange)
def _delete_task(call: Call, params: TaskChange, body: None) -> None:
    tasks.delete_task(call.user, params.id, params.expected_version)


@query("tasks.mine", "/me/tasks", params=MyTasksPage, output=Page[TaskView])
def _my_tasks(call: Call, params: MyTasksPage, body: None) -> Page[TaskView]:
    binding = _binding(call, status=params.status)
    items, last_key = tasks.my_tasks(
        call.user, params.status, params.limit, call.cursors.decode(params.cursor, binding)
    )
    return Page[TaskView](
        items=[TaskView.of(t) for t in items], next_cursor=call.cursors.encode(last_key, binding)
    )


# -- personal API keys -----------------------------------------------------------------------------------
@query("apiKeys.list", "/api-keys", params=Pagination, output=Page[ApiKeyInfo])
def _my_api_keys(call: Call, params: Pagination, body: None) -> Page[ApiKeyInfo]:
    items, next_cursor = my_api_keys(call.user, params.limit, params.cursor, call.cursors, _binding(call))
    return Page[ApiKeyInfo](items=[ApiKeyInfo.of(item) for item in items], next_cursor=next_cursor)


@mutation("apiKeys.create", ("POST", "/api-keys"), body=ApiKeyRequest, output=IssuedApiKey)
def _create_api_key(call: Call, params: None, body: ApiKeyRequest) -> IssuedApiKey:
    item, secret = issue_api_key(call.user, call.settings, body.name, set(body.scopes), body.expires_at)
    return IssuedApiKey(**ApiKeyInfo.of(item).model_dump(), secret=secret)


@mutation("apiKeys.revoke", ("DELETE", "/api-keys/{key_id}"), params=ApiKeyRef)
def _revoke_api_key(call: Call, params: ApiKeyRef, body: None) -> None:
    revoke_my_api_key(call.user, params.id)


# -- invitations -----------------------------------------------------------------------------------------
@query(
    "projects.invitations.list",
    "/projects/{project_id}/invitations",
    params=ProjectInvitations,
    output=Page[InvitationView],
)
def _project_invitations(call: Call, params: ProjectInvitations, body: None) -> Page[InvitationView]:
    items = invitations.project_invitations(call.user, params.project_id)
    return Page[InvitationView](items=[InvitationView.of(item) for item in items])


@mutation(
    "projects.invitations.create",
    ("POST", "/projects/{project_id}/invitations"),
    params=NewInvitation,
    body=InvitationCreate,
    output=InvitationView,
)
def _invite(call: Call, params: NewInvitation, body: InvitationCreate) -> dict[str, Any]:
    user = call.user

    def produce() -> dict[str, Any]:
        invitation = invitations.invite(user, params.project_id, body.email, body.role)
        return InvitationView.of(invitation).model_dump(mode="json")

    return _create_once(call, params.idempotency_key, body, produce, project_id=params.project_id)


@mutation(
    "projects.invitations.revoke",
    ("DELETE", "/projects/{project_id}/invitations/{invitation_id}"),
    params=ProjectInvitationRef,
)
def _revoke_invitation(call: Call, params: ProjectInvitationRef, body: None) -> None:
    invitations.revoke_invitation(call.user, params.project_id, params.invitation_id)


@query("invitations.mine", "/me/invitations", params=Pagination, output=Page[InvitationView])
def _my_invitations(call: Call, params: Pagination, body: None) -> Page[InvitationView]:
    binding = _binding(call)
    items, last_key = invitations.my_invitations(
        call.user, call.settings, params.limit, call.cursors.decode(params.cursor, binding)
    )
    return Page[InvitationView](
        items=[InvitationView.of(item) for item in items], next_cursor=call.cursors.encode(last_key, binding)
    )


@mutation(
    "invitations.accept",
    ("POST", "/invitations/{invitation_id}/accept"),
    params=InvitationRef,
    output=MyProject,
)
def _accept_invitation(call: Call, params: InvitationRef, body: None) -> MyProject:
    return MyProject.of(invitations.accept(call.user, call.settings, params.id))


@mutation("invitations.decline", ("DELETE", "/invitations/{invitation_id}"), params=InvitationRef)
def _decline_invitation(call: Call, params: InvitationRef, body: None) -> None:
    invitations.decline(call.user, call.settings, params.id)


PROCEDURES: tuple[Procedure, ...] = tuple(_declared)
