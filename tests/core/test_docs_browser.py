"""The interactive docs in a real browser, against a real server, with nothing fetched from off
this machine: Swagger UI logs a user in with the OAuth2 password flow and runs an operation,
its OAuth2 redirect page hands a token back, and ReDoc lists every operation.

Chromium (Debian's, `/usr/bin/chromium`) is driven by Playwright. Every request that would leave
the machine is recorded and aborted, so the tests mean "works offline" on a machine with internet
too; a console error (a CSP violation is one) fails them as well. Outside CI the tests skip when
Chromium is not installed; in CI (`CI=true`), where .ci/run installs it, they fail instead.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Route,
    async_playwright,
)
from sqlalchemy.engine import URL, make_url

from app.core.config import normalize_database_url
from tests.benchmarks.server import (
    free_port,
    print_log_tail,
    server_env,
    start_server,
    stop_server,
    wait_until_healthy,
)
from tests.core.outage import migrate_afresh, prepare_database
from tests.helpers import require_program

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own download is not reachable here

# Each step waits for what it needs, at most this long; the first render parses 2.7 MB of script.
STEP_MS = 5_000
RENDER_MS = 15_000
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
PASSWORD = "a-long-docs-password"


def leaves_the_machine(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "blob":  # blob:http://127.0.0.1:port/uuid, ReDoc's search worker
        return leaves_the_machine(parts.path)
    if parts.scheme in {"data", "about"}:
        return False
    return parts.hostname not in LOCAL_HOSTS


@dataclass
class Server:
    base: str
    email: str


@dataclass
class Recorded:
    """What the browser did that the tests refuse: requests off the machine, console errors."""

    offsite: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.offsite == [], f"requests left the machine: {self.offsite}"
        assert self.errors == [], f"the browser reported errors: {self.errors}"


async def _server_database(suite_url: str, workdir: Path) -> URL:
    """A database of the server's own, on the suite's kind of database: the server commits for
    real, and the suite's tests count users."""
    if not suite_url.startswith("sqlite"):
        return await prepare_database("docs")
    url = make_url(normalize_database_url(f"sqlite:///{workdir / 'docs.db'}"))
    await migrate_afresh(url)
    return url


@pytest.fixture(scope="module")
async def server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """The app as `make dev` and the Dockerfile serve it, in its own process, and a user who
    signed up through it."""
    workdir = tmp_path_factory.mktemp("docs")
    url = await _server_database(database_url, workdir)
    port = free_port()
    log_path = workdir / "server.log"
    process = start_server(port, server_env(url), log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(base_url=f"{base}/api/v1") as client:
            await wait_until_healthy(client, process)
            email = f"docs-{uuid.uuid4().hex[:8]}@example.com"
            signup = await client.post("/users/signup", json={"email": email, "password": PASSWORD})
            assert signup.status_code == 201, signup.text
        yield Server(base, email)
        assert process.poll() is None, f"the server exited ({process.returncode})"
    except BaseException:
        print_log_tail(log_path)
        raise
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    chromium = require_program(CHROMIUM, install="apt-get install -y chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium)
        yield browser
        await browser.close()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
async def page(browser: Browser, recorded: Recorded) -> AsyncIterator[Page]:
    context = await browser.new_context()
    context.set_default_timeout(STEP_MS)

    def request(request: Request) -> None:
        if leaves_the_machine(request.url):
            recorded.offsite.append(request.url)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            recorded.errors.append(message.text)

    async def refuse(route: Route) -> None:
        await route.abort("internetdisconnected")

    context.on("request", request)
    await context.route(leaves_the_machine, refuse)
    context.on("console", console)
    context.on("weberror", lambda error: recorded.errors.append(str(error.error)))
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def open_docs(page: Page, server: Server, recorded: Recorded) -> None:
    await page.goto(f"{server.base}/docs", timeout=RENDER_MS)
    # Whatever the page asked for while loading was asked for by now.
    assert recorded.offsite == [], f"requests left the machine: {recorded.offsite}"
    await page.locator("#swagger-ui button.authorize").wait_for(timeout=RENDER_MS)


async def test_swagger_ui_logs_in_and_runs_an_operation(
    page: Page, server: Server, recorded: Recorded
) -> None:
    await open_docs(page, server, recorded)

    # Authorize: the OAuth2 password flow, as a person fills in the dialog.
    await page.locator("#swagger-ui button.authorize").click()
    dialog = page.locator(".modal-ux")
    await dialog.locator("#oauth_username").fill(server.email)
    await dialog.locator("#oauth_password").fill(PASSWORD)
    async with page.expect_response("**/api/v1/login/access-token") as login:
        await dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert (await login.value).status == 200
    await dialog.get_by_role("button", name="Remove authorization").wait_for()
    await dialog.locator("button.btn-done").click()

    # Try it out -> Execute on GET /api/v1/users/me, with the token Swagger UI just got.
    operation = page.locator("#operations-users-users-read_user_me")
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    async with page.expect_response("**/api/v1/users/me") as me:
        await operation.locator("button.execute").click()
    assert (await me.value).status == 200
    # What Swagger UI shows: the status and the body it got.
    shown = operation.locator(".live-responses-table tr.response")
    body = shown.locator(".response-col_description .highlight-code pre")
    await body.filter(has_text=server.email).wait_for()
    assert await shown.locator(".response-col_status").inner_text() == "200"
    assert f'"email": "{server.email}"' in await body.inner_text()

    recorded.assert_clean()


async def test_the_oauth2_redirect_page_hands_the_token_to_swagger_ui(
    page: Page, server: Server, recorded: Recorded
) -> None:
    # Swagger UI's own popup protocol, as for a provider's implicit or code flow: the /docs
    # window opens a popup; the provider sends it back to /docs/oauth2-redirect with the token
    # in the fragment; that page's script gives it to the opener's callback and closes itself.
    await open_docs(page, server, recorded)
    async with page.expect_popup() as opened:
        name = await page.evaluate(
            """() => {
                const ui = window.ui;
                const definition = ui.authSelectors.definitionsToAuthorize().get(0);
                const name = definition.keySeq().first();
                ui.authActions.authPopup(
                    "/docs/oauth2-redirect#access_token=from-the-provider&token_type=bearer"
                        + "&state=state-1",
                    {
                        auth: {name, schema: definition.get(name)},
                        state: "state-1",
                        redirectUrl: window.location.origin + "/docs/oauth2-redirect",
                        callback: ui.authActions.preAuthorizeImplicit,
                        errCb: ui.errActions.newAuthErr,
                    },
                );
                return name;
            }"""
        )
    popup = await opened.value
    if not popup.is_closed():
        await popup.wait_for_event("close")
    token = await page.evaluate(
        "name => window.ui.authSelectors.authorized().getIn([name, 'token', 'access_token'])",
        name,
    )
    assert token == "from-the-provider"
    recorded.assert_clean()


async def test_redoc_lists_every_operation(page: Page, server: Server, recorded: Recorded) -> None:
    async with httpx2.AsyncClient() as client:
        document = (await client.get(f"{server.base}/api/v1/openapi.json")).json()
    operation_ids = {
        operation["operationId"]
        for methods in document["paths"].values()
        for operation in methods.values()
    }
    assert "users-read_user_me" in operation_ids

    await page.goto(f"{server.base}/redoc", timeout=RENDER_MS)
    assert recorded.offsite == [], f"requests left the machine: {recorded.offsite}"
    heading = page.locator("[id='tag/users/operation/users-read_user_me'] h2")
    await heading.wait_for(timeout=RENDER_MS)
    assert await heading.inner_text() == "Read User Me"
    # The side menu names every operation of the document (those of folded tags hidden).
    menu = page.locator("li[data-item-id*='/operation/']")
    listed = await menu.evaluate_all("items => items.map(item => item.dataset.itemId)")
    assert {item.rsplit("/operation/", 1)[1] for item in listed} == operation_ids
    recorded.assert_clean()


def test_a_request_off_the_machine_is_recognised() -> None:
    assert leaves_the_machine("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css")
    assert leaves_the_machine("blob:https://example.com/0f6f")
    assert not leaves_the_machine("http://127.0.0.1:8000/docs")
    assert not leaves_the_machine("blob:http://127.0.0.1:8000/0f6f")
    assert not leaves_the_machine("data:image/svg+xml;base64,AAAA")
