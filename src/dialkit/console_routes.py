"""The web console at /console/: static files of the `dialkit.console` package data (an
HTML page, ES modules and a style sheet; no build step, nothing fetched from elsewhere).
Loading them takes no API key; the page asks for one and sends it with each API call.

Every answer carries a Content-Security-Policy that allows this origin's scripts only (no
inline script, no eval), so a value shown in the page can never run as code."""

from __future__ import annotations

from importlib import resources
from pathlib import PurePosixPath

from aiohttp import web

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml", ".png": "image/png", ".json": "application/json"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # the files change with each release; the page itself is always fetched fresh
    "Cache-Control": "no-cache",
}


def _root() -> resources.abc.Traversable:
    return resources.files("dialkit") / "console"


def _file(name: str) -> tuple[bytes, str] | None:
    """The package file under console/ named by `name` (a relative path), or None."""
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") or part.startswith(".") for part in path.parts):
        return None
    kind = _TYPES.get(path.suffix)
    if kind is None:
        return None
    node = _root()
    for part in path.parts:
        node = node / part
    if not node.is_file():
        return None
    return node.read_bytes(), kind


async def _serve(request: web.Request) -> web.Response:
    name = request.match_info.get("path") or "index.html"
    found = _file(name)
    if found is None:
        return web.json_response({"error": f"no console file {name[:80]!r}"}, status=404,
                                 headers=SECURITY_HEADERS)
    body, kind = found
    return web.Response(body=body, content_type=kind, charset="utf-8" if kind.startswith("text")
                        or kind.endswith(("json", "svg+xml")) else None, headers=SECURITY_HEADERS)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/console/")


def install(app: web.Application) -> None:
    """GET /console (redirect), /console/ and /console/{path}."""
    app.router.add_get("/console", _redirect)
    app.router.add_get("/console/", _serve)
    app.router.add_get("/console/{path:.+}", _serve)
