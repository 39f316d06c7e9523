/**
 * Every Stratus procedure, called through `@trpc/client` with the generated `AppRouter` type: each input
 * and output below is checked by the compiler, and the Node tests run this tour against `make dev`.
 *
 *   const client = stratusClient("http://127.0.0.1:8000/trpc", token);   // `make -s token`
 *   await tour(client, colleagueSubject);
 */
import { createTRPCClient, httpBatchLink, type TRPCClient } from "@trpc/client";
import type { AppRouter, RouterOutputs } from "./trpc.js";

export type StratusClient = TRPCClient<AppRouter>;

/** A client for `<API URL>/trpc` acting for the bearer of `token` (a Cognito access token). */
export function stratusClient(url: string, token: string): StratusClient {
  return createTRPCClient<AppRouter>({
    links: [httpBatchLink({ url, headers: () => ({ Authorization: `Bearer ${token}` }) })],
  });
}

export interface TourResult {
  status: string;
  me: RouterOutputs["me"]["get"];
  project: RouterOutputs["projects"]["byId"];
  retriedCreate: RouterOutputs["projects"]["create"];
  myProjects: RouterOutputs["projects"]["list"];
  members: RouterOutputs["projects"]["members"]["list"];
  task: RouterOutputs["tasks"]["byId"];
  projectTasks: RouterOutputs["tasks"]["list"];
  assignedToMe: RouterOutputs["tasks"]["mine"];
  apiKey: RouterOutputs["apiKeys"]["create"];
  apiKeys: RouterOutputs["apiKeys"]["list"];
  activity: RouterOutputs["projects"]["activity"];
}

/**
 * Creates a project with `colleague` (a user's subject) as a member and a task, reads them back every
 * way there is, then deletes it all again.
 */
export async function tour(client: StratusClient, colleague: string): Promise<TourResult> {
  const { status } = await client.health.query();
  const me = await client.me.update.mutate({ display_name: "Tour guide", preferences: { theme: "dark" } });
  await client.me.get.query();

  // A retry with the same idempotency key returns the project the first call created.
  const idempotencyKey = `tour-${crypto.randomUUID()}`;
  const created = await client.projects.create.mutate({ name: "Tour", idempotencyKey });
  const retriedCreate = await client.projects.create.mutate({ name: "Tour", idempotencyKey });
  // expectedVersion: refused with PRECONDITION_FAILED if someone changed the project since.
  await client.projects.update.mutate({
    id: created.id,
    expectedVersion: created.version,
    description: "Every procedure once",
  });

  await client.projects.members.add.mutate({ projectId: created.id, subject: colleague, role: "viewer" });
  await client.projects.members.update.mutate({ projectId: created.id, memberId: colleague, role: "editor" });
  const members = await client.projects.members.list.query({ projectId: created.id, limit: 10 });

  const draft = await client.tasks.create.mutate({
    projectId: created.id,
    title: "Write the release notes",
    assignee: me.subject,
    priority: "high",
    tags: ["docs"],
  });
  await client.tasks.update.mutate({ id: draft.id, expectedVersion: draft.version, status: "doing" });
  const task = await client.tasks.byId.query({ id: draft.id });
  const projectTasks = await client.tasks.list.query({ projectId: created.id, status: "doing", sort: "due" });
  const assignedToMe = await client.tasks.mine.query({ status: "doing" });
  // The feed is written from the table's stream: entries appear within seconds of each change.
  const activity = await client.projects.activity.query({ projectId: created.id, limit: 20 });

  // Queries fired together travel in one request with httpBatchLink.
  const [project, myProjects] = await Promise.all([
    client.projects.byId.query({ id: created.id }),
    client.projects.list.query(),
  ]);

  const apiKey = await client.apiKeys.create.mutate({ name: "tour script", scopes: ["stratus/read"] });
  const apiKeys = await client.apiKeys.list.query({ limit: 5 });
  await client.apiKeys.revoke.mutate({ id: apiKey.id });

  await client.tasks.delete.mutate({ id: task.id, expectedVersion: task.version });
  await client.projects.members.remove.mutate({ projectId: created.id, memberId: colleague });
  await client.projects.delete.mutate({ id: created.id });

  return {
    status,
    me,
    project,
    retriedCreate,
    myProjects,
    members,
    task,
    projectTasks,
    assignedToMe,
    apiKey,
    apiKeys,
    activity,
  };
}

export interface InvitationTourResult {
  invitation: RouterOutputs["projects"]["invitations"]["create"];
  pending: RouterOutputs["projects"]["invitations"]["list"];
  mine: RouterOutputs["invitations"]["mine"];
  joined: RouterOutputs["invitations"]["accept"];
}

/**
 * The owner behind `client` invites `inviteeEmail`; the invitee (signed in with that address, verified)
 * finds the invitation and joins. A second invitation is revoked by the owner, a third declined by the
 * invitee. The project is deleted at the end.
 */
export async function invitationTour(
  client: StratusClient,
  inviteeClient: StratusClient,
  inviteeEmail: string,
): Promise<InvitationTourResult> {
  const project = await client.projects.create.mutate({ name: "Invitations" });
  const invitation = await client.projects.invitations.create.mutate({
    projectId: project.id,
    email: inviteeEmail,
    role: "editor",
  });
  const pending = await client.projects.invitations.list.query({ projectId: project.id });
  const mine = await inviteeClient.invitations.mine.query({ limit: 10 });
  const joined = await inviteeClient.invitations.accept.mutate({ id: invitation.id });

  const unanswered = await client.projects.invitations.create.mutate({
    projectId: project.id,
    email: `nobody-${crypto.randomUUID()}@example.com`,
  });
  await client.projects.invitations.revoke.mutate({ projectId: project.id, invitationId: unanswered.id });
  const again = await client.projects.invitations.create.mutate({ projectId: project.id, email: inviteeEmail });
  await inviteeClient.invitations.decline.mutate({ id: again.id });

  await client.projects.delete.mutate({ id: project.id });
  return { invitation, pending, mine, joined };
}
