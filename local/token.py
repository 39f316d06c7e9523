"""Prints an access token for a demo user of the running local stack (`make -s token as=bob`)."""

from __future__ import annotations

import sys

from local.dev import STACK_FILE
from local.resources import DEMO_PASSWORD, DEMO_USERS, LocalResources, sign_in


def main(argv: list[str]) -> int:
    who = argv[1] if len(argv) > 1 and argv[1] else "alice"
    user = DEMO_USERS.get(who)
    if user is None:
        print(f"unknown demo user {who!r}; choose one of: {', '.join(DEMO_USERS)}", file=sys.stderr)
        return 2
    if not STACK_FILE.exists():
        print("the local stack is not running: start it with `make dev`", file=sys.stderr)
        return 1
    resources = LocalResources.from_json(STACK_FILE.read_text())
    try:
        tokens = sign_in(resources.endpoint, resources.client_id, user.email, DEMO_PASSWORD)
    except Exception as error:
        print(
            f"could not sign in at {resources.endpoint} ({type(error).__name__}); is `make dev` running?",
            file=sys.stderr,
        )
        return 1
    print(tokens["access"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
