"""`/metrics`, in one process: the series real requests leave, by route template and status; the
pool, login failures and the outbox; the bearer token and the switch that turns it all off.
(Several worker processes: tests/core/test_metrics_server.py.)"""

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.metrics import RequestMetricsMiddleware
from app.emails.models import PENDING, OutboxEmail
from app.emails.service import TEST_EMAIL, enqueue
from app.main import create_app
from app.users.models import User
from tests.core.metrics import Samples, parse, total, value
from tests.helpers import assert_problem

pytestmark = pytest.mark.anyio

METRICS = "http://test/metrics"
ME = "/api/v1/users/me"


async def scrape(client: httpx2.AsyncClient, **headers: str) -> Samples:
    response = await client.get(METRICS, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def requests(samples: Samples, route: str, status: str, method: str = "GET") -> float:
    return value(samples, "http_requests_total", method=method, route=route, status=status)


async def test_requests_are_counted_and_timed_by_route_template_and_status(
    client: httpx2.AsyncClient, user_headers: dict[str, str]
) -> None:
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/users/me", headers=user_headers)).status_code == 200
    missing = uuid.uuid4()
    assert (await client.get(f"/items/{missing}", headers=user_headers)).status_code == 404
    assert (
        await client.get("/users/me")
    ).status_code == 401  # no token: the same route, another status
    for path in ("/no/such/thing", f"/no/such/{uuid.uuid4()}"):
        assert (await client.get(path)).status_code == 404
    after = await scrape(client)

    def added(route: str, status: str) -> float:
        return requests(after, route, status) - requests(before, route, status)

    assert added(ME, "200") == 3
    assert added(ME, "401") == 1
    assert added("/api/v1/items/{id}", "404") == 1
    assert added("<unmatched>", "404") == 2
    # The latency histogram counts the same requests; their time is in it.
    labels = {"method": "GET", "route": ME, "status": "200"}
    count = "http_request_duration_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 3
    histogram_sum = "http_request_duration_seconds_sum"
    assert value(after, histogram_sum, **labels) > value(before, histogram_sum, **labels)
    assert value(after, "http_request_duration_seconds_bucket", **labels, le="+Inf") == value(
        after, count, **labels
    )
    # No raw path ever becomes a label: unbounded label values are unbounded memory.
    routes = {dict(labels)["route"] for (name, labels) in after if name == "http_requests_total"}
    assert not any(str(missing) in route or "/no/such" in route for route in routes)
    # The scrape being answered is the one request in flight.
    assert value(after, "http_requests_in_flight") == 1


async def test_every_route_has_its_series_before_its_first_request(
    client: httpx2.AsyncClient,
) -> None:
    samples = await scrape(client)
    assert (
        "http_requests_total",
        frozenset(
            {"method": "DELETE", "route": "/api/v1/users/{user_id}", "status": "200"}.items()
        ),
    ) in samples
    assert (
        "http_requests_total",
        frozenset({"method": "POST", "route": "/api/v1/items/", "status": "201"}.items()),
    ) in samples


async def test_failed_logins_are_counted_by_reason(
    client: httpx2.AsyncClient, session: AsyncSession, user: User
) -> None:
    before = await scrape(client)
    wrong = {"username": user.email, "password": "not-the-password"}
    for _ in range(2):
        assert (await client.post("/login/access-token", data=wrong)).status_code == 400
    user.is_active = False
    await session.flush()
    right = {"username": user.email, "password": "correct-horse-battery"}
    assert (await client.post("/login/access-token", data=right)).status_code == 400
    after = await scrape(client)

    def added(reason: str) -> float:
        name = "auth_login_failures_total"
        return value(after, name, reason=reason) - value(before, name, reason=reason)

    assert added("credentials") == 2
    assert added("inactive") == 1
    assert added("throttled") == 0
    assert ("auth_login_failures_total", frozenset({("reason", "throttled")})) in after


async def test_emails_pending_is_read_from_the_outbox_at_most_once_per_max_age(
    client: httpx2.AsyncClient, session: AsyncSession, override_settings: Callable[..., Settings]
) -> None:
    override_settings(METRICS_DB_MAX_AGE_SECONDS=0)
    for n in range(3):
        await enqueue(session, kind=TEST_EMAIL, recipient=f"pending{n}@example.com")
    in_database = await session.scalar(
        select(func.count()).select_from(OutboxEmail).where(OutboxEmail.status == PENDING)
    )
    assert in_database is not None
    assert in_database >= 3
    assert value(await scrape(client), "emails_pending") == in_database

    # Within the max age a scrape reuses the figure: no query, so the new email is not seen yet.
    override_settings(METRICS_DB_MAX_AGE_SECONDS=3600)
    await scrape(client)
    await enqueue(session, kind=TEST_EMAIL, recipient="one-more@example.com")
    assert value(await scrape(client), "emails_pending") == in_database
    override_settings(METRICS_DB_MAX_AGE_SECONDS=0)
    assert value(await scrape(client), "emails_pending") == in_database + 1


@pytest.fixture
async def own_app(settings: Settings) -> AsyncIterator[Any]:
    """An app on its own engine (no test transaction) with one pooled connection."""
    app = create_app(
        settings.model_copy(
            update={"DB_POOL_SIZE": 1, "DB_MAX_OVERFLOW": 0, "METRICS_DB_MAX_AGE_SECONDS": 3600}
        )
    )
    yield app
    await app.state.engine.dispose()


async def test_pool_connections_in_use_and_checkouts_waiting(own_app: Any) -> None:
    engine = own_app.state.engine
    transport = httpx2.ASGITransport(app=own_app)
    async with httpx2.AsyncClient(transport=transport) as client:
        idle = await scrape(client)  # also reads the outbox once; then cached for an hour
        assert value(idle, "db_pool_connections_in_use") == 0
        assert value(idle, "db_pool_checkouts_waiting") == 0

        held = await engine.connect()
        got_one = anyio.Event()
        release = anyio.Event()

        async def wait_for_a_connection() -> None:
            async with engine.connect():
                got_one.set()
                await release.wait()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_a_connection)
            await anyio.sleep(0.05)  # it is waiting in the pool now
            busy = await scrape(client)
            assert value(busy, "db_pool_connections_in_use") == 1
            assert value(busy, "db_pool_checkouts_waiting") == 1

            await held.close()
            with anyio.fail_after(5):
                await got_one.wait()
            handed_over = await scrape(client)
            assert value(handed_over, "db_pool_connections_in_use") == 1
            assert value(handed_over, "db_pool_checkouts_waiting") == 0
            release.set()

        done = await scrape(client)
        assert value(done, "db_pool_connections_in_use") == 0


async def test_a_bearer_token_guards_the_metrics(
    client: httpx2.AsyncClient, override_settings: Callable[..., Settings]
) -> None:
    token = "metrics-scrape-token-0123456789"
    override_settings(METRICS_BEARER_TOKEN=SecretStr(token))
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Basic {token}"},
    ):
        body = assert_problem(await client.get(METRICS, headers=headers), 401)
        assert body["type"] == "urn:problem:metrics-unauthorized"
        assert "request_id" in body
    refused = await client.get(METRICS)
    assert refused.headers["www-authenticate"].startswith("Bearer")
    samples = await scrape(client, Authorization=f"Bearer {token}")
    assert total(samples, "http_requests_total", route="/metrics", status="401") >= 4


async def test_metrics_can_be_turned_off(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"METRICS_ENABLED": False}))
    try:
        # No middleware at all: a request pays nothing for metrics that nobody reads.
        middleware = {getattr(m.cls, "__name__", None) for m in app.user_middleware}
        assert RequestMetricsMiddleware.__name__ not in middleware
        assert "RequestContextMiddleware" in middleware
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport) as client:
            assert_problem(await client.get(METRICS), 404)
    finally:
        await app.state.engine.dispose()


async def test_metrics_are_not_in_the_openapi_document(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/metrics" not in paths


async def test_a_scrape_answers_without_the_database_figures_when_it_cannot_read_them(
    settings: Settings, tmp_path: Path
) -> None:
    # A database the migrations never reached: no outbox to count.
    unmigrated = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    app = create_app(settings.model_copy(update={"DATABASE_URL": unmigrated}))
    try:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            samples = await scrape(client)
    finally:
        await app.state.engine.dispose()
    # No stale or made-up figure: the series is absent (alert on `absent(emails_pending)`).
    assert not any(name == "emails_pending" for name, _ in samples)
    assert value(samples, "http_requests_in_flight") == 1
