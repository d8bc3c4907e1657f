"""The interactive API docs, Swagger UI at `/docs` and ReDoc at `/redoc`, served by the app itself.

FastAPI's own pages load both from a CDN (blank without internet, and a third party sees every
visit) and start Swagger UI with an inline script. Here the bundles come from the
fastapi-standalone-docs package (Swagger UI and ReDoc, each with its licence, ReDoc's logo
patched to load from the page's own path), and the pages hold no script of their own: Swagger
UI's options travel in a data attribute that `docs_static/swagger-init.js` reads. So the pages'
Content-Security-Policy (`DOCS_CSP`) allows scripts from this server only.

We serve the package's files but not its `StandaloneDocs`, which replaces functions in
`fastapi.applications` for every app of the process and keeps FastAPI's inline script.
"""

import html
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import swagger_ui_default_parameters
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = f"{DOCS_URL}/oauth2-redirect"

# What each page may load: everything from this server, scripts from files only (a script
# injected into a page that holds tokens does not run), no framing. Swagger UI also shows
# data: icons. ReDoc adds its styles at run time and starts its search in a worker from a blob:
# URL. The files under /docs and /redoc get the API's CSP, which does not matter for them.
# tests/core/test_docs_browser.py fails on any violation.
_CSP_BASE = "default-src 'none'; script-src 'self'; img-src 'self' data:; connect-src 'self'; "
_CSP_END = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
SWAGGER_UI_CSP = f"{_CSP_BASE}style-src 'self'; {_CSP_END}"
REDOC_CSP = f"{_CSP_BASE}style-src 'self' 'unsafe-inline'; worker-src blob:; {_CSP_END}"
DOCS_CSP = {DOCS_URL: SWAGGER_UI_CSP, OAUTH2_REDIRECT_URL: SWAGGER_UI_CSP, REDOC_URL: REDOC_CSP}

_OWN_FILES = Path(__file__).with_name("docs_static")
_PACKAGE = "fastapi_standalone_docs"


class DocsAssets(StaticFiles):
    """The docs' scripts and styles, revalidated rather than fetched again: the bundles weigh
    2.7 MB and change only with the package (FileResponse sends an ETag, a match is a 304)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["cache-control"] = "no-cache"
        return response


def _root(request: Request) -> str:
    # Behind a proxy that mounts the app under a prefix, every URL the page names needs it.
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _href(request: Request, path: str) -> str:
    return html.escape(_root(request) + path, quote=True)


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def install_docs(app: FastAPI, *, openapi_url: str) -> None:
    """Add the docs' pages and files to `app`, created with `docs_url=None, redoc_url=None`.
    The pages need their CSP (`DOCS_CSP`) from `ResponseHeadersMiddleware`."""

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        config = {
            "openapiUrl": root + openapi_url,
            "oauth2RedirectUrl": root + OAUTH2_REDIRECT_URL,
            "parameters": {**swagger_ui_default_parameters, **(app.swagger_ui_parameters or {})},
            "initOAuth": app.swagger_ui_init_oauth,
        }
        attribute = html.escape(json.dumps(jsonable_encoder(config)), quote=True)
        return _page(
            f"{app.title} - Swagger UI",
            f'<link rel="stylesheet" href="{_href(request, DOCS_URL)}/swagger-ui.css">\n'
            f'<link rel="icon" href="{_href(request, DOCS_URL)}/favicon.png">\n',
            f'<div id="swagger-ui" data-config="{attribute}"></div>\n'
            f'<script src="{_href(request, DOCS_URL)}/swagger-ui-bundle.js"></script>\n'
            f'<script src="{_href(request, DOCS_URL)}/swagger-init.js"></script>\n',
        )

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        # Where an OAuth2 provider sends the browser back to, in Swagger UI's popup: the script
        # hands the code or token to the /docs window that opened it, then closes the popup.
        return _page(
            "Swagger UI: OAuth2 Redirect",
            "",
            f'<script src="{_href(request, DOCS_URL)}/oauth2-redirect.js"></script>\n',
        )

    async def redoc(request: Request) -> HTMLResponse:
        return _page(
            f"{app.title} - ReDoc",
            f'<link rel="icon" href="{_href(request, REDOC_URL)}/favicon.png">\n'
            "<style>body { margin: 0; padding: 0; }</style>\n",
            f'<redoc spec-url="{_href(request, openapi_url)}"></redoc>\n'
            f'<script src="{_href(request, REDOC_URL)}/redoc.standalone.js"></script>\n',
        )

    # The pages first: the mounts below answer every other path under /docs and /redoc.
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    # Our two scripts, then the package's files; the LICENSE of each is served beside them.
    swagger_files: list[str | tuple[str, str]] = [
        (_PACKAGE, "static/swagger"),
        (_PACKAGE, "static/fastapi"),
    ]
    redoc_files: list[str | tuple[str, str]] = [
        (_PACKAGE, "static/redoc"),
        (_PACKAGE, "static/fastapi"),
    ]
    app.mount(DOCS_URL, DocsAssets(directory=_OWN_FILES, packages=swagger_files), "docs-files")
    app.mount(REDOC_URL, DocsAssets(packages=redoc_files), "redoc-files")
