"""GET /openapi.json (the API's OpenAPI 3.1 document) and Swagger UI at GET /docs, served
from the `swagger_ui_bundle` package's files (nothing is fetched from elsewhere: it works
offline). Swagger UI 4 reads OpenAPI 3.0 only, so the page loads /docs/openapi-3.0.json,
the same document in 3.0 terms."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from dialkit.openapi import API_CONFIG, INSTALLED
from dialkit.openapi_doc import as_openapi_30, build_document

#: the bundle's files the page uses; nothing else of the package is served
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
          "favicon-32x32.png", "favicon-16x16.png")
_TYPES = {".css": "text/css", ".js": "application/javascript", ".png": "image/png"}

# relative links: the page works under a path prefix behind a proxy as well
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/swagger-ui-standalone-preset.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""

INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "docs/openapi-3.0.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    validatorUrl: null
  });
};
"""


def document(app: web.Application) -> dict[str, Any]:
    """The document of every route installed in `app`, built once."""
    installed = app[INSTALLED]
    if installed.document is None:
        config = app[API_CONFIG]
        installed.document = build_document(installed.routes, config.title, config.version)
    return installed.document


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


async def openapi_30_json(request: web.Request) -> web.Response:
    return web.json_response(as_openapi_30(document(request.app)))


async def docs_page(request: web.Request) -> web.Response:
    title = html.escape(request.app[API_CONFIG].title)
    return web.Response(text=PAGE.format(title=title), content_type="text/html")


async def init_js(request: web.Request) -> web.Response:
    return web.Response(text=INIT, content_type="application/javascript")


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    path = Path(str(swagger_ui_path)) / name
    return web.FileResponse(path, headers={
        "Content-Type": _TYPES[path.suffix], "Cache-Control": "public, max-age=86400",
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/init.js", init_js)
    app.router.add_get("/docs/openapi-3.0.json", openapi_30_json)
    app.router.add_get("/docs/static/{name}", asset)
