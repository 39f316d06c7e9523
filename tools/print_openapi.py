"""`make openapi`: prints the app's OpenAPI document (pipe it to a file, jq or head)."""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    import main as app_module

    try:
        sys.stdout.write(json.dumps(app_module.app.openapi(), indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`make openapi | head`): nothing is wrong. Python's documented remedy:
        # point stdout at devnull so the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
