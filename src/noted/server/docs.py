"""The API docs at ``/docs``: Swagger UI from the files its package ships, never a CDN, so
that the docs work offline and under the server's Content-Security-Policy (no inline
script: the page's settings travel in data attributes, read by ``static/docs.js``)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from noted.errors import NotFoundError

__all__ = ["docs_routes"]

ASSETS: Final = frozenset(("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"))
_SWAGGER: Final = Path(str(swagger_ui_path))

_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{root}/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="{root}/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui" data-spec="{spec}"></div>
  <script src="{root}/docs/assets/swagger-ui-bundle.js"></script>
  <script src="{root}/static/docs.js"></script>
</body>
</html>
"""


def docs_routes(app: FastAPI) -> None:
    """``/docs`` and its assets (the app is made with ``docs_url=None``)."""
    title = escape(f"{app.title} - API docs")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        root = escape(str(request.scope.get("root_path", "")).rstrip("/"))
        spec = root + escape(app.openapi_url or "/openapi.json")
        page = _PAGE.format(title=title, root=root, spec=spec)
        return Response(page, media_type="text/html; charset=utf-8")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise NotFoundError("no such file")
        return FileResponse(_SWAGGER / name)
