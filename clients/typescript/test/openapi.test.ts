/** openapi-fetch with the generated `paths` type against the running API (openapi-example.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ProblemError, projectWithTasks, stratusRestClient } from "../openapi-example.js";
import { baseUrl, tokens } from "./stack.js";

test("openapi-fetch reads a project with its ETag and tasks, and errors as problems", async () => {
  const rest = stratusRestClient(baseUrl, tokens.alice);
  const created = await rest.POST("/projects", { body: { name: "Through openapi-fetch" } });
  assert.ok(created.data, JSON.stringify(created.error));
  const projectId = created.data.id;
  const task = await rest.POST("/projects/{project_id}/tasks", {
    params: { path: { project_id: projectId } },
    body: { title: "In progress", status: "doing" },
  });
  assert.equal(task.response.status, 201);

  const { project, etag, tasks } = await projectWithTasks(rest, projectId);
  assert.equal(project.name, "Through openapi-fetch");
  assert.equal(etag, `"${project.version}"`);
  assert.deepEqual(
    tasks.map((item) => item.title),
    ["In progress"],
  );

  await rest.DELETE("/projects/{project_id}", { params: { path: { project_id: projectId } } });
  await assert.rejects(projectWithTasks(rest, projectId), (error: unknown) => {
    assert.ok(error instanceof ProblemError);
    assert.equal(error.problem.status, 404);
    return true;
  });
});
