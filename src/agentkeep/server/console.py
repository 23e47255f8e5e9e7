"""The built-in console: `GET /` and `GET /console/{name}`, served from the package's `console/` files.

The console is a static page that talks to the public `/v1` API with the visitor's own key, so it
needs no route of its own beyond these files. Only the files shipped in the package are served (a
fixed table read once, never a path joined from the URL), each with its content type, an ETag and a
Content-Security-Policy that lets the page load and call nothing but this server.

The page is told one fact by the HTML itself, `data-auth` on `<html>`: whether this server asks for
API keys. Without it the page would have to provoke a 401 to find out, which a browser reports as
an error in its console.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, Request, Response

from agentkeep.errors import NotFound
from agentkeep.server.static import CONTENT_TYPES, StaticFile, serve_file, static_file

__all__ = ["router"]

router = APIRouter()

# 'self' only: no CDN, no inline script or style, no frames, no form posts elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TYPES = {suffix: CONTENT_TYPES[suffix] for suffix in (".html", ".js", ".css", ".svg")}
_AUTH_MARK = 'data-auth="unknown"'


@functools.cache
def _files() -> dict[str, StaticFile]:
    """Every servable console file by name, read once from the package."""
    folder = resources.files("agentkeep").joinpath("console")
    files: dict[str, StaticFile] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = static_file(entry.read_bytes(), _TYPES[suffix])
    return files


@functools.cache
def _index(auth_required: bool) -> StaticFile:
    html = _files()["index.html"].body.decode()
    if _AUTH_MARK not in html:
        raise RuntimeError(f"console/index.html lost its {_AUTH_MARK} marker")
    mode = "required" if auth_required else "off"
    return static_file(html.replace(_AUTH_MARK, f'data-auth="{mode}"', 1).encode(), _TYPES[".html"])


def _serve(request: Request, file: StaticFile) -> Response:
    return serve_file(request, file, csp=CONTENT_SECURITY_POLICY)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def console_page(request: Request) -> Response:
    return _serve(request, _index(bool(request.app.state.auth.required)))


@router.api_route("/console/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def console_file(request: Request, name: str) -> Response:
    if name == "index.html":
        return await console_page(request)
    file = _files().get(name)
    if file is None:
        raise NotFound(f"no console file {name!r}")
    return _serve(request, file)
