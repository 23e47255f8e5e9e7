"""The API reference pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), working with no network at all.

FastAPI's own pages load their scripts from a CDN, so offline they stay blank. These load Swagger UI
and ReDoc from `/docs/assets/`, served from the bundles the `fastapi-offline` package ships (a
dependency kept for its files alone: nothing of it is imported), and start them with a script of
ours rather than an inline one, so the pages keep the console's discipline: 'self' only, no CDN,
no inline script, no frames, no form posts.

Two allowances, both for the bundles' own way of working, neither able to run code: inline styles
(ReDoc's styled-components writes `<style>` elements; Swagger UI sets `style` attributes) and
`blob:` workers (ReDoc's search index is built in a worker made from a blob). And one edit: ReDoc
draws its vendor's logo from their CDN in the menu's footer, which the policy would refuse (an
error in every visitor's console); that URL is replaced with an empty image as the bundle is read.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request, Response

from agentkeep import __version__
from agentkeep.errors import NotFound
from agentkeep.server.static import CONTENT_TYPES, StaticFile, serve_file, static_file

__all__ = ["router"]

router = APIRouter()

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# The bundles' files, as `fastapi-offline` names them.
_BUNDLED = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
# What is fetched from outside at run time, and what serves instead: (file, URL, replacement).
_OFFLINE = (("redoc.standalone.js", b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"data:image/svg+xml,%3Csvg/%3E"),)

_SWAGGER_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>agentkeep {__version__} - API docs</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body>
</html>
"""
# FastAPI's Swagger UI settings, without the validator badge (it would call validator.swagger.io).
_SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""
_REDOC_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>agentkeep {__version__} - API reference</title>
<link rel="icon" href="/docs/assets/favicon.png">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""


@functools.cache
def _assets() -> dict[str, StaticFile]:
    """The bundles, read once (on the first visit, not at start: 2.8 MB nobody may ask for)."""
    spec = importlib.util.find_spec("fastapi_offline")  # finds the package without importing it
    folders = spec.submodule_search_locations if spec is not None else None
    if not folders:
        raise RuntimeError("the fastapi-offline package (Swagger UI and ReDoc) is not installed")
    static = Path(next(iter(folders))) / "static"
    bodies = {name: (static / name).read_bytes() for name in _BUNDLED}
    for name, outside, instead in _OFFLINE:
        bodies[name] = bodies[name].replace(outside, instead)
    files = {name: static_file(body, _type(name)) for name, body in bodies.items()}
    files["swagger-init.js"] = static_file(_SWAGGER_INIT.encode(), CONTENT_TYPES[".js"])
    return files


@functools.cache
def _page(html: str) -> StaticFile:
    return static_file(html.encode(), CONTENT_TYPES[".html"])


def _type(name: str) -> str:
    return CONTENT_TYPES["." + name.rpartition(".")[2]]


@router.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
async def swagger_ui(request: Request) -> Response:
    return serve_file(request, _page(_SWAGGER_PAGE), csp=CONTENT_SECURITY_POLICY)


@router.api_route("/redoc", methods=["GET", "HEAD"], include_in_schema=False)
async def redoc(request: Request) -> Response:
    return serve_file(request, _page(_REDOC_PAGE), csp=CONTENT_SECURITY_POLICY)


@router.api_route("/docs/assets/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def docs_asset(request: Request, name: str) -> Response:
    file = _assets().get(name)
    if file is None:
        raise NotFound(f"no docs file {name!r}")
    return serve_file(request, file, csp=CONTENT_SECURITY_POLICY)
