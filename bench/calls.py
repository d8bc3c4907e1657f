"""CPU and Python calls per request, in process: ours against the same-work ceiling.

Both apps are called as uvicorn calls them (one ASGI call per request, no HTTP client in the
way) on one PostgreSQL database, interleaved round by round, so a machine that slows down for a
while slows both alike. The CPU per request is the process's (`time.process_time`), PostgreSQL's
own work excluded; the call count is cProfile's, which does not depend on how busy the machine
is, so a change shows even when req/s is noise.

    .venv/bin/python -m bench.calls                  # every endpoint, ours and the ceiling
    .venv/bin/python -m bench.calls --profile item   # + where ours spends its calls
    .venv/bin/python -m bench.calls --json           # one JSON line (for A/B runs)

`BENCH_DATABASE_URL` as for `make bench` (default .../bench_calls: created, migrated, seeded
with one user and 1,000 items when empty). Production logging at INFO into /dev/null.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import secrets
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import insert, make_url, select, text
from sqlalchemy.ext.asyncio import create_async_engine

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/bench_calls"
EMAIL = "calls@example.com"
ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Call:
    def __init__(self, method: str, path: str, body: bytes = b"", query: bytes = b"") -> None:
        self.method, self.path, self.body, self.query = method, path, body, query


async def request(app: ASGI, call: Call, token: str) -> int:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    if call.body:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(call.body)).encode()),
        ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": call.method,
        "scheme": "http",
        "path": call.path,
        "raw_path": call.path.encode(),
        "query_string": call.query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": call.body, "more_body": False}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def prepare(url: str) -> tuple[str, uuid.UUID, uuid.UUID, uuid.UUID, str]:
    """The database migrated and seeded: (async url, user id, session id, item id, hash)."""
    from app.core.config import Settings
    from app.core.security import get_passwords
    from app.items.models import Item
    from app.users.models import User, UserSession

    parsed = make_url(url)
    admin = create_async_engine(
        parsed.set(drivername="postgresql+asyncpg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    async with admin.connect() as connection:
        exists = await connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
        )
        if not exists:
            await connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    await admin.dispose()
    async_url = parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "migrate", env={**os.environ, "DATABASE_URL": async_url}
    )
    assert await process.wait() == 0, "migration failed"
    engine = create_async_engine(async_url)
    hashed = await get_passwords(Settings(_env_file=None)).hash("calls-password")
    async with engine.begin() as connection:
        user_id = await connection.scalar(select(User.id).where(User.email == EMAIL))
        if user_id is None:
            user_id = uuid.uuid4()
            await connection.execute(
                insert(User).values(id=user_id, email=EMAIL, hashed_password=hashed, is_active=True)
            )
            await connection.execute(
                text(
                    "INSERT INTO items (id, owner_id, title, description, created_at, version) "
                    "SELECT gen_random_uuid(), :owner, 'item ' || g, 'seeded', "
                    "now() - make_interval(secs => g), 1 FROM generate_series(1, 1000) AS g"
                ),
                {"owner": user_id},
            )
        else:
            stored = select(User.hashed_password).where(User.id == user_id)
            hashed = (await connection.execute(stored)).scalar_one()
        session_id = uuid.uuid4()
        await connection.execute(insert(UserSession).values(id=session_id, user_id=user_id))
        first = select(Item.id).where(Item.owner_id == user_id).limit(1)
        item_id = (await connection.execute(first)).scalar_one()
    await engine.dispose()
    return async_url, user_id, session_id, item_id, hashed


def calls_of(item_id: uuid.UUID) -> dict[str, Call]:
    return {
        "me": Call("GET", "/api/v1/users/me"),
        "item": Call("GET", f"/api/v1/items/{item_id}"),
        "list": Call("GET", "/api/v1/items/", query=b"limit=20"),
        "post": Call("POST", "/api/v1/items/", body=b'{"title":"calls","description":"x"}'),
        "patch": Call("PATCH", f"/api/v1/items/{item_id}", body=b'{"title":"patched"}'),
    }


async def cpu_per_request(app: ASGI, call: Call, token: str, n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        status = await request(app, call, token)
        assert status < 300, (call.path, status)
    return (time.process_time() - started) / n * 1000


def by_package(profile: cProfile.Profile, n: int) -> list[tuple[str, float, int]]:
    stats = pstats.Stats(profile, stream=io.StringIO())
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for (filename, _, _), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = "builtins"
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif "/app/" in filename:
            key = "app/" + filename.split("/app/")[1].split("/")[0]
        elif filename.startswith("/usr/lib/python3") or "/lib/python3." in filename:
            key = "stdlib/" + filename.rsplit("/", 1)[1]
        totals[key][0] += tottime
        totals[key][1] += calls
    rows = [(key, t / n * 1000, int(c / n)) for key, (t, c) in totals.items()]
    return sorted(rows, key=lambda row: -row[1])


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300, help="per round and endpoint")
    parser.add_argument("--profile", choices=["me", "item", "list", "post", "patch"])
    parser.add_argument("--top", type=int, default=25, help="functions listed with --profile")
    parser.add_argument("--json", action="store_true", help="one JSON line of the medians")
    args = parser.parse_args(argv)

    from app.core.config import Settings
    from app.core.security import create_access_token, credential_fingerprint
    from app.main import create_app
    from bench.ceiling import create_app as create_ceiling

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    async_url, user_id, session_id, item_id, hashed = await prepare(url)
    settings = Settings(
        _env_file=None,
        ENVIRONMENT="production",
        DATABASE_URL=async_url,
        SECRET_KEY=secrets.token_urlsafe(32),
        FIRST_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
        LOG_LEVEL="INFO",
        LOG_JSON=True,
        REDIS_URL=None,
        EMAIL_SENDER=False,
    )
    token = create_access_token(
        str(user_id),
        settings,
        credential=credential_fingerprint(hashed, settings),
        session_id=str(session_id),
    ).token
    calls = calls_of(item_id)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the JSON log lines, not the results
    out = os.fdopen(os.dup(2), "w")
    ours, ceiling = create_app(settings), create_ceiling(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(ours.router.lifespan_context(ours))
        await stack.enter_async_context(ceiling.router.lifespan_context(ceiling))
        apps = {"ours": ours, "ceiling": ceiling}
        supported = {"ours": list(calls), "ceiling": ["me", "item", "list", "post"]}
        for name, app in apps.items():  # warm up: caches, pools, statement preparation
            for endpoint in supported[name]:
                await cpu_per_request(app, calls[endpoint], token, 200)
        cpu: dict[tuple[str, str], list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for endpoint in calls:
                for name, app in apps.items():
                    if endpoint in supported[name]:
                        ms = await cpu_per_request(app, calls[endpoint], token, args.requests)
                        cpu[name, endpoint].append(ms)
        counts: dict[tuple[str, str], int] = {}
        for name, app in apps.items():
            for endpoint in supported[name]:
                profile = cProfile.Profile()
                profile.enable()
                await cpu_per_request(app, calls[endpoint], token, 100)
                profile.disable()
                stats = pstats.Stats(profile, stream=io.StringIO())
                counts[name, endpoint] = int(stats.total_calls / 100)  # type: ignore[attr-defined]
                if args.profile == endpoint and name == "ours":
                    print(f"\nours, {endpoint}: tottime per request by package", file=out)
                    for key, ms, n in by_package(profile, 100)[:20]:
                        print(f"  {key:<40} {ms:7.3f} ms {n:6d} calls", file=out)
                    text_out = io.StringIO()
                    pstats.Stats(profile, stream=text_out).sort_stats("tottime").print_stats(
                        args.top
                    )
                    print(text_out.getvalue(), file=out)
    if args.json:
        medians = {
            f"{name} {endpoint}": statistics.median(values)
            for (name, endpoint), values in cpu.items()
        }
        named = {f"{name} {endpoint}": count for (name, endpoint), count in counts.items()}
        print(json.dumps({"cpu_ms": medians, "calls": named}), file=out)
        return 0
    print(
        "\n| endpoint | ours CPU ms | ceiling CPU ms | ceiling/ours | ours calls | ceiling calls |",
        file=out,
    )
    print("|---|---|---|---|---|---|", file=out)
    for endpoint in calls:
        mine = statistics.median(cpu["ours", endpoint])
        theirs = statistics.median(cpu["ceiling", endpoint]) if cpu["ceiling", endpoint] else None
        share = f"{theirs / mine:.2f}" if theirs else "-"
        print(
            f"| {endpoint} | {mine:.3f} | {f'{theirs:.3f}' if theirs else '-'} | {share} "
            f"| {counts['ours', endpoint]:,} | {counts.get(('ceiling', endpoint), '-')} |",
            file=out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
