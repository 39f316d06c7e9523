"""Projects and their members."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from auth import CurrentUser
from dependencies import AppSettings, Cursors
from idempotency import IdempotencyKey, run_once
from pagination import Page, PageCursor, PageLimit, query_binding
from preconditions import IfMatch, etag, expected_version
from routers.common import READS, WRITES, created
from routers.fields import ProjectId
from routers.fields import SubjectId as MemberId
from routers.schemas import Member, MemberAdd, MemberRole, MyProject, ProjectCreate, ProjectPatch, ProjectView
from services import projects

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectView,
    dependencies=WRITES,
    summary="Create a project",
)
async def create_project(
    body: ProjectCreate,
    user: CurrentUser,
    request: Request,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def produce() -> dict[str, object]:
        project = projects.create_project(user, body.name, body.description)
        return ProjectView.of(project, user.subject).model_dump(mode="json")

    view = run_once(request, settings, user.subject, idempotency_key, body.model_dump(mode="json"), produce)
    return created(request, view, f"/projects/{view['id']}")


@router.get("", response_model=Page[MyProject], dependencies=READS, summary="My projects, newest first")
async def list_my_projects(
    user: CurrentUser, cursors: Cursors, request: Request, limit: PageLimit = 20, cursor: PageCursor = None
) -> Page[MyProject]:
    binding = query_binding(request.url.path, user.subject)
    items, last_key = projects.my_projects(user, limit, cursors.decode(cursor, binding))
    return Page[MyProject](
        items=[MyProject.of(m) for m in items], next_cursor=cursors.encode(last_key, binding)
    )


@router.get("/{project_id}", response_model=ProjectView, dependencies=READS, summary="One project")
async def get_project(project_id: ProjectId, user: CurrentUser, response: Response) -> ProjectView:
    project = projects.visible_project(user, project_id)
    response.headers["ETag"] = etag(project.version)
    return ProjectView.of(project, user.subject)


@router.patch("/{project_id}", response_model=ProjectView, dependencies=WRITES, summary="Change a project")
async def change_project(
    project_id: ProjectId, body: ProjectPatch, user: CurrentUser, response: Response, if_match: IfMatch = None
) -> ProjectView:
    changes = body.model_dump(exclude_unset=True)
    project = projects.change_project(user, project_id, changes, expected_version(if_match))
    response.headers["ETag"] = etag(project.version)
    return ProjectView.of(project, user.subject)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITES,
    summary="Delete a project and its tasks",
)
async def delete_project(project_id: ProjectId, user: CurrentUser, if_match: IfMatch = None) -> Response:
    projects.delete_project(user, project_id, expected_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{project_id}/members", response_model=Page[Member], dependencies=READS, summary="Members of a project"
)
async def list_members(
    project_id: ProjectId,
    user: CurrentUser,
    cursors: Cursors,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> Page[Member]:
    binding = query_binding(request.url.path, user.subject)
    items, last_key = projects.project_members(user, project_id, limit, cursors.decode(cursor, binding))
    return Page[Member](items=[Member.of(m) for m in items], next_cursor=cursors.encode(last_key, binding))


@router.post(
    "/{project_id}/members",
    status_code=status.HTTP_201_CREATED,
    response_model=Member,
    dependencies=WRITES,
    summary="Add a member (owners)",
)
async def add_member(
    project_id: ProjectId,
    body: MemberAdd,
    user: CurrentUser,
    settings: AppSettings,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def produce() -> dict[str, object]:
        membership = projects.add_member(user, settings, project_id, body.subject, body.role)
        return Member.of(membership).model_dump(mode="json")

    view = run_once(request, settings, user.subject, idempotency_key, body.model_dump(mode="json"), produce)
    return created(request, view, f"/projects/{project_id}/members/{view['subject']}")


@router.patch(
    "/{project_id}/members/{member_id}",
    response_model=Member,
    dependencies=WRITES,
    summary="Change a member's role (owners)",
)
async def change_member(
    project_id: ProjectId, member_id: MemberId, body: MemberRole, user: CurrentUser
) -> Member:
    return Member.of(projects.change_member_role(user, project_id, member_id, body.role))


@router.delete(
    "/{project_id}/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITES,
    summary="Remove a member (owners; anyone may leave)",
)
async def remove_member(project_id: ProjectId, member_id: MemberId, user: CurrentUser) -> Response:
    projects.remove_member(user, project_id, member_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
