"""Tasks of a project, one task, and the caller's assigned tasks."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from auth import CurrentUser
from dependencies import AppSettings, Cursors
from idempotency import IdempotencyKey, run_once
from pagination import Page, PageCursor, PageLimit, query_binding
from preconditions import IfMatch, etag, expected_version
from routers.common import BOUNDED_PAGES, READS, WRITES, created
from routers.fields import ProjectId, SubjectId, Tag, TaskId
from routers.schemas import Status, TaskCreate, TaskPatch, TaskView
from services import tasks

router = APIRouter(tags=["tasks"])


@router.post(
    "/projects/{project_id}/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskView,
    dependencies=WRITES,
    summary="Create a task",
)
async def create_task(
    project_id: ProjectId,
    body: TaskCreate,
    user: CurrentUser,
    request: Request,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def produce() -> dict[str, object]:
        return TaskView.of(tasks.create_task(user, project_id, body.model_dump())).model_dump(mode="json")

    view = run_once(request, settings, user.subject, idempotency_key, body.model_dump(mode="json"), produce)
    return created(request, view, f"/tasks/{view['id']}")


@router.get(
    "/projects/{project_id}/tasks",
    response_model=Page[TaskView],
    dependencies=READS,
    summary="Tasks of a project",
    description=BOUNDED_PAGES,
)
async def list_project_tasks(
    project_id: ProjectId,
    user: CurrentUser,
    cursors: Cursors,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
    sort: Annotated[
        Literal["created", "due"], Query(description="created (oldest first) or due (soonest first)")
    ] = "created",
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    assignee: Annotated[SubjectId | None, Query()] = None,
    tag: Annotated[Tag | None, Query()] = None,
) -> Page[TaskView]:
    binding = query_binding(
        request.url.path, user.subject, sort=sort, status=status_filter, assignee=assignee, tag=tag
    )
    items, last_key = tasks.project_tasks(
        user,
        project_id,
        sort=sort,
        status=status_filter,
        assignee=assignee,
        tag=tag,
        limit=limit,
        start_key=cursors.decode(cursor, binding),
    )
    return Page[TaskView](
        items=[TaskView.of(t) for t in items], next_cursor=cursors.encode(last_key, binding)
    )


@router.get("/tasks/{task_id}", response_model=TaskView, dependencies=READS, summary="One task")
async def get_task(task_id: TaskId, user: CurrentUser, response: Response) -> TaskView:
    task = tasks.get_task(user, task_id)
    response.headers["ETag"] = etag(task.version)
    return TaskView.of(task)


@router.patch("/tasks/{task_id}", response_model=TaskView, dependencies=WRITES, summary="Change a task")
async def change_task(
    task_id: TaskId, body: TaskPatch, user: CurrentUser, response: Response, if_match: IfMatch = None
) -> TaskView:
    task = tasks.change_task(user, task_id, body.model_dump(exclude_unset=True), expected_version(if_match))
    response.headers["ETag"] = etag(task.version)
    return TaskView.of(task)


@router.delete(
    "/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=WRITES, summary="Delete a task"
)
async def delete_task(task_id: TaskId, user: CurrentUser, if_match: IfMatch = None) -> Response:
    tasks.delete_task(user, task_id, expected_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/me/tasks",
    response_model=Page[TaskView],
    dependencies=READS,
    summary="Tasks assigned to me, soonest due first",
    description=BOUNDED_PAGES
    + " Tasks of projects you are no longer a member of are left out, which may also shorten a page.",
)
async def my_tasks(
    user: CurrentUser,
    cursors: Cursors,
    request: Request,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
) -> Page[TaskView]:
    binding = query_binding(request.url.path, user.subject, status=status_filter)
    items, last_key = tasks.my_tasks(user, status_filter, limit, cursors.decode(cursor, binding))
    return Page[TaskView](
        items=[TaskView.of(t) for t in items], next_cursor=cursors.encode(last_key, binding)
    )
