"""The API's own documentation pages: Swagger UI at /docs and ReDoc at /redoc, with every asset served by
the app (from the fastapi-offline package and docs_assets/), so they work offline and under a strict
Content-Security-Policy. URLs are built from the request's root path (stage or base-path mapping)."""

from __future__ import annotations

import hashlib
from functools import cache
from html import escape
from importlib.util import find_spec
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
VENDOR_ASSETS_URL = "/docs/vendor"


def _package_directory(name: str) -> Path:
    # Located without importing the package: its import would only cost cold-start time.
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


_VENDOR_ASSETS = _package_directory("fastapi_offline") / "static"
_OWN_ASSETS = Path(__file__).parent / "docs_assets"

# No inline script, no third-party origin. Swagger UI and ReDoc set inline styles, hence 'unsafe-inline'
# for styles only; ReDoc runs its search index in a blob: worker.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_FAVICON = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%23326ce5'/%3E%3C/svg%3E"

_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{favicon}">
<link rel="stylesheet" href="{root}{vendor}/swagger-ui.css?v={version}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{root}{openapi}"></div>
<script src="{root}{vendor}/swagger-ui-bundle.js?v={version}"></script>
<script src="{root}{assets}/swagger-init.js?v={version}"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{favicon}">
</head>
<body style="margin:0">
<div id="redoc" data-openapi-url="{root}{openapi}"></div>
<script src="{root}{vendor}/redoc.standalone.js?v={version}"></script>
<script src="{root}{assets}/redoc-init.js?v={version}"></script>
</body>
</html>
"""


_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def _redoc_bundle() -> bytes:
    # ReDoc 2.x always draws its logo from cdn.redoc.ly (a third-party request and a CSP violation): the
    # bundle is served with the page's own data: icon in its place.
    return (_VENDOR_ASSETS / "redoc.standalone.js").read_bytes().replace(_REDOC_CDN_LOGO, _FAVICON.encode())


@cache
def assets_version() -> str:
    """A digest of every asset the pages load: a new asset is a new URL (`?v=`), so a cache (CloudFront's,
    a browser's) may keep each URL for as long as it likes. Computed on the first docs page of a container."""
    digest = hashlib.sha256(_redoc_bundle())
    for path in (
        _VENDOR_ASSETS / "swagger-ui.css",
        _VENDOR_ASSETS / "swagger-ui-bundle.js",
        _OWN_ASSETS / "swagger-init.js",
        _OWN_ASSETS / "redoc-init.js",
    ):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _page(template: str, request: Request, title: str, openapi_url: str) -> HTMLResponse:
    html = template.format(
        title=escape(title),
        favicon=_FAVICON,
        root=escape(request.scope.get("root_path", "")),
        vendor=VENDOR_ASSETS_URL,
        assets=ASSETS_URL,
        openapi=escape(openapi_url),
        version=assets_version(),
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY})


def install_docs(app: FastAPI) -> None:
    """Add /docs, /redoc and their assets; the app must be created with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"

    # Declared before the vendor mount, so this route wins for the one patched file.
    @app.get(f"{VENDOR_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            _redoc_bundle(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(VENDOR_ASSETS_URL, StaticFiles(directory=_VENDOR_ASSETS), name="docs-vendor")
    app.mount(ASSETS_URL, StaticFiles(directory=_OWN_ASSETS), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _page(_SWAGGER_PAGE, request, f"{app.title} - API docs", openapi_url)

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _page(_REDOC_PAGE, request, f"{app.title} - API reference", openapi_url)
