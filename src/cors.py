"""CORS through Starlette's middleware, with one change: a refused preflight is a problem+json like every
other error of the API (Starlette answers it with a plain-text 400)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from errors import problem_response

_KEPT_HEADERS = ("access-control-", "vary")


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware; refused preflights (origin, method or headers not allowed) become a
    400 problem that keeps the CORS headers Starlette computed."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            # The same test Starlette applies to recognise a preflight.
            if "origin" in headers and "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                if response.status_code == 400:
                    kept = {
                        name: value
                        for name, value in response.headers.items()
                        if name.lower().startswith(_KEPT_HEADERS)
                    }
                    refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
                    response = problem_response(
                        scope,
                        status=400,
                        problem="cors-preflight-refused",
                        title="CORS preflight refused",
                        detail=f"The API's CORS policy does not allow this request's {refused}.",
                        headers=kept,
                    )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
