"""The docs' pages and files over HTTP (tests/core/test_docs_browser.py runs them in a browser):
every file a page names is served by the app, revalidated rather than fetched again, with its
licence beside it; under a proxy's path prefix the pages name their files under it too."""

import re

import httpx2
import pytest
from fastapi import FastAPI

from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio

PAGES = ("/docs", "/redoc", "/docs/oauth2-redirect")


def named_files(page: str) -> list[str]:
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', page)


async def test_every_file_a_page_names_is_served_here(app: FastAPI) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert "<script>" not in page.text, path  # scripts come from files only
            files = named_files(page.text)
            assert files, path
            for url in files:
                assert url.startswith("/"), (path, url)  # this server, no CDN
                answer = await client.get(url)
                assert answer.status_code == 200, url
                assert answer.content, url


async def test_the_bundles_are_revalidated_not_fetched_again(app: FastAPI) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        for url in ("/docs/swagger-ui-bundle.js", "/redoc/redoc.standalone.js"):
            first = await client.get(url)
            assert first.headers["content-type"] == "text/javascript; charset=utf-8"
            assert first.headers["x-content-type-options"] == "nosniff"
            assert first.headers["cache-control"] == "no-cache"
            assert len(first.content) > 500_000
            again = await client.get(url, headers={"if-none-match": first.headers["etag"]})
            assert again.status_code == 304, url
            assert again.content == b""


async def test_the_licences_of_swagger_ui_and_redoc_are_served(app: FastAPI) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        swagger = await client.get("/docs/LICENSE")
        assert "Apache License" in swagger.text
        redoc = await client.get("/redoc/redoc.standalone.js.LICENSE.txt")
        assert "MIT" in redoc.text
        # The one file of Swagger UI's we ship ourselves says where it comes from.
        redirect = await client.get("/docs/oauth2-redirect.js")
        assert "Apache-2.0: /docs/LICENSE" in redirect.text


async def test_a_file_that_is_not_there_is_a_problem_404(app: FastAPI) -> None:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        for url in ("/docs/nope.js", "/redoc/nope.js", "/docs/"):
            assert_problem(await client.get(url), 404)
        assert_problem(await client.post("/docs/swagger-ui-bundle.js"), 405)


async def test_under_a_path_prefix_the_pages_name_their_files_under_it(app: FastAPI) -> None:
    # A proxy serving the app under /service passes root_path, as uvicorn's --root-path does.
    transport = httpx2.ASGITransport(app=app, root_path="/service")
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        swagger = (await client.get("/service/docs")).text
        redoc = (await client.get("/service/redoc")).text
    assert all(url.startswith("/service/") for url in named_files(swagger + redoc))
    assert "/service/api/v1/openapi.json" in swagger
    assert 'spec-url="/service/api/v1/openapi.json"' in redoc
