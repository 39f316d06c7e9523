/** The running API the tests talk to, and the demo users' tokens (tests/test_trpc_node.py provides them). */
import { env } from "node:process";

function required(name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/test_trpc_node.py`);
  return value;
}

export const baseUrl = required("STRATUS_URL");
export const trpcUrl = `${baseUrl}/trpc`;
export const tokens = { alice: required("STRATUS_TOKEN_ALICE"), bob: required("STRATUS_TOKEN_BOB") };
/** The stack's limit for the expensive class (minting API keys), per minute. */
export const expensiveLimit = Number(required("STRATUS_EXPENSIVE_LIMIT"));

export function bearer(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}
