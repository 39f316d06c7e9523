/**
 * The real @trpc/client v11 against the running API, with each of its HTTP links: every procedure, batches
 * whose calls fail and succeed independently, refusals of anonymous callers and of bad input, rate limits.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  createTRPCClient,
  httpBatchLink,
  httpBatchStreamLink,
  httpLink,
  TRPCClientError,
  type TRPCClient,
} from "@trpc/client";
import { invitationTour, tour } from "../example.js";
import type { AppRouter } from "../trpc.js";
import { bearer, expensiveLimit, tokens, trpcUrl } from "./stack.js";

type LinkKind = "httpLink" | "httpBatchLink" | "httpBatchStreamLink";
const LINKS: LinkKind[] = ["httpLink", "httpBatchLink", "httpBatchStreamLink"];

interface Sent {
  method: string;
  url: string;
}

function clientWith(
  kind: LinkKind,
  headers: Record<string, string> = {},
  sent: Sent[] = [],
  methodOverride?: "POST",
): TRPCClient<AppRouter> {
  const options = {
    url: trpcUrl,
    headers: () => headers,
    methodOverride,
    // Records what goes over the wire: how many requests a batch took, with which method.
    fetch: (input: RequestInfo | URL, init?: RequestInit) => {
      sent.push({ method: init?.method ?? "GET", url: String(input) });
      return fetch(input, init);
    },
  };
  const link =
    kind === "httpLink"
      ? httpLink(options)
      : kind === "httpBatchLink"
        ? httpBatchLink(options)
        : httpBatchStreamLink(options);
  return createTRPCClient<AppRouter>({ links: [link] });
}

async function refusal(call: Promise<unknown>): Promise<TRPCClientError<AppRouter>> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof TRPCClientError, `not a TRPCClientError: ${String(error)}`);
    return error as TRPCClientError<AppRouter>;
  }
  assert.fail("the call succeeded");
}

function responseOf(error: TRPCClientError<AppRouter>): Response {
  const response = (error.meta as { response?: Response } | undefined)?.response;
  assert.ok(response, "the error carries no HTTP response");
  return response;
}

const UNKNOWN_PROJECT = "01J00000000000000000000000";

for (const kind of LINKS) {
  describe(kind, () => {
    test("every procedure answers with its typed output", async () => {
      const alice = clientWith(kind, bearer(tokens.alice));
      const bob = clientWith(kind, bearer(tokens.bob));
      const colleague = (await bob.me.get.query()).subject;

      const result = await tour(alice, colleague);

      assert.equal(result.status, "ok");
      assert.equal(result.me.display_name, "Tour guide");
      assert.equal(result.me.preferences["theme"], "dark");
      assert.equal(result.retriedCreate.id, result.project.id, "the retry returned the first project");
      assert.equal(result.project.description, "Every procedure once");
      assert.equal(result.project.version, 4, "created, described, a member added, promoted");
      assert.ok(result.myProjects.items.some((project) => project.id === result.project.id));
      assert.deepEqual(
        result.members.items.map((member) => [member.subject, member.role]).sort(),
        [
          [colleague, "editor"],
          [result.me.subject, "owner"],
        ].sort(),
      );
      assert.equal(result.task.status, "doing");
      assert.deepEqual(result.task.tags, ["docs"]);
      assert.deepEqual(
        result.projectTasks.items.map((task) => task.id),
        [result.task.id],
      );
      assert.ok(result.assignedToMe.items.some((task) => task.id === result.task.id));
      // Written asynchronously by the stream consumer: whatever has arrived is this project's, newest first.
      const moments = result.activity.items.map((entry) => Date.parse(entry.at));
      assert.deepEqual(moments, [...moments].sort((a, b) => b - a));
      assert.match(result.apiKey.secret, /^stratus_[0-9a-f]{16}_/);
      assert.ok(result.apiKeys.items.some((key) => key.id === result.apiKey.id));
      assert.ok(!JSON.stringify(result.apiKeys).includes(result.apiKey.secret), "lists show no secret");

      const gone = await refusal(alice.projects.byId.query({ id: result.project.id }));
      assert.equal(gone.data?.code, "NOT_FOUND");
    });

    test("an invitation brings in the invited, verified address", async () => {
      const alice = clientWith(kind, bearer(tokens.alice));
      const bob = clientWith(kind, bearer(tokens.bob));
      const bobsAddress = (await bob.me.get.query()).email;
      assert.ok(bobsAddress, "the demo user has an address");

      const result = await invitationTour(alice, bob, bobsAddress);

      assert.equal(result.invitation.email, bobsAddress);
      assert.ok(result.pending.items.some((pending) => pending.id === result.invitation.id));
      assert.ok(result.mine.items.some((mine) => mine.id === result.invitation.id));
      assert.equal(result.joined.id, result.invitation.project_id);
      assert.equal(result.joined.my_role, "editor");
    });

    test("a batch settles each call on its own", async () => {
      const sent: Sent[] = [];
      const alice = clientWith(kind, bearer(tokens.alice), sent);

      const [health, missing, malformed, projects] = await Promise.allSettled([
        alice.health.query(),
        alice.projects.byId.query({ id: UNKNOWN_PROJECT }),
        alice.tasks.byId.query({ id: "not-a-task-id" }),
        alice.projects.list.query({ limit: 5 }),
      ]);

      assert.equal(sent.length, kind === "httpLink" ? 4 : 1);
      assert.deepEqual(health.status === "fulfilled" && health.value, { status: "ok" });
      assert.ok(projects.status === "fulfilled" && Array.isArray(projects.value.items));
      assert.ok(missing.status === "rejected" && malformed.status === "rejected");
      const notFound = missing.reason as TRPCClientError<AppRouter>;
      assert.equal(notFound.data?.code, "NOT_FOUND");
      assert.equal(notFound.data?.httpStatus, 404);
      assert.equal(notFound.data?.path, "projects.byId");
      assert.equal(notFound.shape?.code, -32004);
      const badRequest = malformed.reason as TRPCClientError<AppRouter>;
      assert.equal(badRequest.data?.code, "BAD_REQUEST");
      assert.equal(badRequest.data?.errors?.[0]?.field, "id");
      if (kind === "httpBatchLink") assert.equal(responseOf(notFound).status, 207);
      if (kind === "httpBatchStreamLink") assert.equal(responseOf(notFound).status, 200);
    });

    test("anonymous callers get UNAUTHORIZED, and liveness still answers", async () => {
      const anonymous = clientWith(kind);
      const [me, health] = await Promise.allSettled([anonymous.me.get.query(), anonymous.health.query()]);
      assert.ok(me.status === "rejected");
      const error = me.reason as TRPCClientError<AppRouter>;
      assert.equal(error.data?.code, "UNAUTHORIZED");
      assert.equal(error.data?.httpStatus, 401);
      assert.equal(error.shape?.code, -32001);
      assert.deepEqual(health.status === "fulfilled" && health.value, { status: "ok" });
    });

    test("bad input is BAD_REQUEST naming every invalid field", async () => {
      const alice = clientWith(kind, bearer(tokens.alice));
      const error = await refusal(
        // Well typed, but outside the constraints the server checks (an id's pattern, at most 100).
        alice.tasks.list.query({ projectId: "lowercase-is-no-id", limit: 1000 }),
      );
      assert.equal(error.data?.code, "BAD_REQUEST");
      assert.equal(error.data?.httpStatus, 400);
      assert.deepEqual(error.data?.errors?.map((field) => field.field).sort(), ["limit", "projectId"]);
    });
  });
}

test("a stale expectedVersion is PRECONDITION_FAILED", async () => {
  const alice = clientWith("httpBatchLink", bearer(tokens.alice));
  const project = await alice.projects.create.mutate({ name: "Versions" });
  await alice.projects.update.mutate({ id: project.id, expectedVersion: project.version, name: "Versions 2" });
  const stale = await refusal(
    alice.projects.update.mutate({ id: project.id, expectedVersion: project.version, name: "Versions 3" }),
  );
  assert.equal(stale.data?.code, "PRECONDITION_FAILED");
  assert.equal(stale.data?.httpStatus, 412);
  await alice.projects.delete.mutate({ id: project.id });
});

test("queries can travel as POST (methodOverride), mutations never as GET", async () => {
  const sent: Sent[] = [];
  const alice = clientWith("httpLink", bearer(tokens.alice), sent, "POST");
  const projects = await alice.projects.list.query();
  assert.ok(Array.isArray(projects.items));
  assert.deepEqual(
    sent.map((request) => request.method),
    ["POST"],
  );
  const response = await fetch(`${trpcUrl}/projects.delete?input=${encodeURIComponent("{}")}`, {
    headers: bearer(tokens.alice),
  });
  assert.equal(response.status, 405);
  assert.equal(((await response.json()) as { error: { data: { code: string } } }).error.data.code, "METHOD_NOT_SUPPORTED");
});

test("every call of a batch counts against the rate limit: TOO_MANY_REQUESTS with Retry-After", async () => {
  const sent: Sent[] = [];
  const bob = clientWith("httpBatchLink", bearer(tokens.bob), sent);
  // 2 × limit + 1 calls in one request: however a window boundary splits them, one window holds more
  // than the limit.
  const calls = Array.from({ length: 2 * expensiveLimit + 1 }, (_, index) =>
    bob.apiKeys.create.mutate({ name: `burst ${index}`, scopes: ["stratus/read"] }),
  );
  const settled = await Promise.allSettled(calls);
  assert.equal(sent.length, 1, "one request carried the whole batch");
  const refused = settled.flatMap((result) =>
    result.status === "rejected" ? [result.reason as TRPCClientError<AppRouter>] : [],
  );
  assert.ok(refused.length >= 1, "the limit refused nothing");
  assert.ok(settled.length - refused.length <= 2 * expensiveLimit);
  for (const error of refused) {
    assert.equal(error.data?.code, "TOO_MANY_REQUESTS");
    assert.equal(error.data?.httpStatus, 429);
  }
  const retryAfter = Number(responseOf(refused[0]!).headers.get("retry-after"));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After: ${retryAfter}`);
});

test("a personal API key calls with X-API-Key and only its scopes", async () => {
  const alice = clientWith("httpBatchLink", bearer(tokens.alice));
  const key = await alice.apiKeys.create.mutate({ name: "read-only script", scopes: ["stratus/read"] });
  try {
    const script = clientWith("httpBatchLink", { "X-API-Key": key.secret });
    const [me, created] = await Promise.allSettled([
      script.me.get.query(),
      script.projects.create.mutate({ name: "not allowed" }),
    ]);
    assert.equal(me.status === "fulfilled" && me.value.subject, (await alice.me.get.query()).subject);
    assert.ok(created.status === "rejected");
    assert.equal((created.reason as TRPCClientError<AppRouter>).data?.code, "FORBIDDEN");
  } finally {
    await alice.apiKeys.revoke.mutate({ id: key.id });
  }
});
