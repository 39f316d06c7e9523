"""tRPC v11 over HTTP at /trpc: a second thin adapter over the same services, rules and models as the REST
routers, for `@trpc/client` and the generated `AppRouter` type (clients/typescript/trpc.ts).

mount.py is all that loads at cold start; the rest loads with the first /trpc request."""
