/**
 * Compile-time only (never run): proof that the generated types bite. `tsc --noEmit` fails when a line
 * marked @ts-expect-error compiles, i.e. when AppRouter stops refusing what it must refuse. The suite
 * also compiles each mistake alone and checks the compiler's error (tests/test_trpc_clients.py).
 */
import { createTRPCClient, httpLink, type TRPCClientError } from "@trpc/client";
import type { AppRouter, RouterInputs, RouterOutputs } from "./trpc.js";

const client = createTRPCClient<AppRouter>({ links: [httpLink({ url: "http://127.0.0.1:8000/trpc" })] });

export async function mistakesTheCompilerRefuses(): Promise<void> {
  // @ts-expect-error a misspelt procedure
  await client.projects.byID.query({ id: "01J0000000000000000000000A" });
  // @ts-expect-error an id of the wrong type
  await client.projects.byId.query({ id: 42 });
  // @ts-expect-error a required input field left out
  await client.tasks.create.mutate({ title: "no project" });
  // @ts-expect-error a value outside the enum
  await client.tasks.update.mutate({ id: "x", status: "finished" });
  // @ts-expect-error a field the input does not have
  await client.projects.create.mutate({ name: "x", owner: "me" });
  // @ts-expect-error a mutation called as a query
  await client.projects.delete.query({ id: "x" });
  // @ts-expect-error a query called as a mutation
  await client.tasks.mine.mutate();
  const project = await client.projects.byId.query({ id: "x" });
  // @ts-expect-error the output's fields are typed too
  const name: number = project.name;
  void name;
}

// What correct code gets: exact input and output types, and typed errors.
export const listInput: RouterInputs["tasks"]["list"] = { projectId: "x", status: "todo", sort: "due" };
export type Task = RouterOutputs["tasks"]["byId"];
export function httpStatusOf(error: TRPCClientError<AppRouter>): number | undefined {
  return error.data?.httpStatus;
}
