/**
 * The REST API through openapi-fetch with the generated `paths` type (openapi.d.ts): paths, parameters,
 * bodies, answers and problem+json errors are all checked by the compiler.
 *
 *   const rest = stratusRestClient("http://127.0.0.1:8000", token);   // `make -s token`
 *   const { project, etag, tasks } = await projectWithTasks(rest, projectId);
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./openapi.js";

export type StratusRestClient = Client<paths>;
export type Problem = components["schemas"]["Problem"];

export function stratusRestClient(baseUrl: string, token: string): StratusRestClient {
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
}

/** Thrown for any error answer: the API's problem+json body. */
export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`);
  }
}

/** A project (with its ETag, for If-Match) and its tasks in progress. */
export async function projectWithTasks(client: StratusRestClient, projectId: string) {
  const project = await client.GET("/projects/{project_id}", {
    params: { path: { project_id: projectId } },
  });
  if (project.error) throw new ProblemError(project.error);
  const tasks = await client.GET("/projects/{project_id}/tasks", {
    params: { path: { project_id: projectId }, query: { status: "doing", sort: "due", limit: 50 } },
  });
  if (tasks.error) throw new ProblemError(tasks.error);
  return { project: project.data, etag: project.response.headers.get("ETag"), tasks: tasks.data.items };
}
