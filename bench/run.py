"""`make bench`: throughput and latency of the hot paths on a real server, against references.

Starts our app as production does (bench.servers), the same-work ceiling (bench/ceiling.py) and
the framework's floor (bench/floor.py) with the same worker count, seeds PostgreSQL once
(bench.seed), and drives each with wrk from its own process (bench.wrk, bench/lua/bench.lua).
Targets are interleaved, repetition by repetition (ours, ceiling, ours, ceiling ... then the
floor), so a machine that slows down for a while slows every target alike; medians are printed,
with ratios. See bench/README.md.

    make bench                                   # ~15 minutes
    make bench BENCH_ARGS=--quick                # ~3 minutes
    .venv/bin/python -m bench.run --duration 10 --repetitions 5 --workers 1
"""

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench import report, seed, servers
from bench.servers import Target
from bench.wrk import FORM_TYPE, Call, Measure, WrkError, wrk_path
from bench.wrk import start as start_wrk
from tests.benchmarks.server import BenchmarkError, migrate, throwaway_url
from tests.soak.server import ensure_database

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench"
RESULTS = Path(__file__).resolve().parent / "results"
API = "/api/v1"
ITEM = f"{API}/items/{{id}}"
LIST = f"{API}/items/?limit=20"

ENDPOINTS = {
    "GET /users/me": Call("GET", f"{API}/users/me"),
    "GET /items/{id}": Call("GET", ITEM),
    "GET /items/?limit=20": Call("GET", LIST),
    "POST /items/": Call("POST", f"{API}/items/", '{"title":"bench","description":"by wrk"}'),
    "PATCH /items/{id}": Call("PATCH", ITEM, '{"title":"patched by wrk"}'),
}
WRITES = ("POST /items/", "PATCH /items/{id}")
CEILING_ENDPOINTS = ("GET /users/me", "GET /items/{id}", "GET /items/?limit=20", "POST /items/")
MIX = [
    Call("GET", ITEM, weight=40),
    Call("GET", f"{API}/users/me", weight=20),
    Call("GET", LIST, weight=20),
    Call("POST", f"{API}/items/", '{"title":"mixed","description":"by wrk"}', weight=10),
    Call("PATCH", ITEM, '{"title":"mixed patch"}', weight=10),
]


@dataclass(frozen=True)
class Plan:
    duration: float
    repetitions: int
    workers: list[int]
    connections: list[int]
    memory_minutes: float
    warmup: float = 1.0


@dataclass
class Session:
    """What a run shares: its tokens, ids files, work directory and results."""

    workdir: Path
    plan: Plan
    results: report.Results
    tokens: dict[str, str]
    ids: dict[str, Path]
    writes: bool
    settle: Callable[[], None]

    def measure(
        self,
        target: Target,
        calls: list[Call],
        *,
        user: str,
        connections: int,
        seconds: float | None = None,
    ) -> Measure:
        found = start_wrk(
            target.base_url,
            calls,
            workdir=self.workdir,
            seconds=seconds or self.plan.duration,
            connections=connections,
            token=self.tokens.get(user, ""),
            ids_file=self.ids.get(user),
        ).result()
        # wrk stops sending, but the server goes on with what it has in hand (a slow page at
        # c32 is seconds of work): the next run must not start behind that backlog.
        self.settle()
        return found


IDLE = """SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()"""


async def _wait_idle(url: URL, within: float = 60.0) -> None:
    """Until no other connection to the database is busy, twice in a row 0.1 s apart."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            deadline, quiet = time.monotonic() + within, 0
            while quiet < 2 and time.monotonic() < deadline:
                busy = await connection.scalar(text(IDLE))
                await connection.rollback()
                quiet = quiet + 1 if not busy else 0
                await asyncio.sleep(0.1)
    finally:
        await engine.dispose()


def settler(url: URL) -> Callable[[], None]:
    if url.get_backend_name() == "sqlite":
        return lambda: time.sleep(0.5)
    return lambda: asyncio.run(_wait_idle(url))


def login(base_url: str, email: str) -> str:
    form = {"username": email, "password": seed.PASSWORD}
    response = httpx2.post(f"{base_url}{API}/login/access-token", data=form, timeout=30)
    if response.status_code != 200:
        raise BenchmarkError(f"login of {email} failed: {response.status_code} {response.text}")
    token: str = response.json()["access_token"]
    return token


def user_of(endpoint: str) -> str:
    """Reads go to the 1k user; writes to the writer, whose items are reset between parts."""
    return seed.WRITER if endpoint in WRITES else seed.sized_email("1k")


def endpoints_matrix(run: Session, targets: list[Target], floor: Target | None, w: int) -> None:
    """Each endpoint, each concurrency, ours then the references, R times; the floor once per
    concurrency and repetition (it answers the same constant whatever the path)."""
    plan = run.plan
    endpoints = [e for e in ENDPOINTS if run.writes or e not in WRITES]
    for target in targets:  # a first, uncounted second for every path: caches, pools, JIT
        for endpoint in endpoints:
            if target.name == "ours" or endpoint in CEILING_ENDPOINTS:
                user = user_of(endpoint)
                call = [ENDPOINTS[endpoint]]
                run.measure(target, call, user=user, connections=32, seconds=plan.warmup)
    for repetition in range(plan.repetitions):
        for c in plan.connections:
            print(f"  w{w} c{c} repetition {repetition + 1}/{plan.repetitions}", flush=True)
            for endpoint in endpoints:
                for target in targets:
                    if target.name != "ours" and endpoint not in CEILING_ENDPOINTS:
                        continue
                    calls = [ENDPOINTS[endpoint]]
                    found = run.measure(target, calls, user=user_of(endpoint), connections=c)
                    run.results.add(("endpoint", endpoint, f"w{w}c{c}", target.name), found)
            if floor is not None:
                reader = seed.sized_email("1k")  # its ids; the floor reads no token
                found = run.measure(
                    floor, [ENDPOINTS["GET /items/{id}"]], user=reader, connections=c
                )
                run.results.add(("floor", f"w{w}c{c}"), found)


def list_pages(run: Session, ours: Target, cursor: str | None) -> None:
    """The first page at each size; the page 100,000 deep for the 1M user, by skip and cursor."""
    pages: list[tuple[str, str, str]] = [(size, "first", LIST) for size in ("1k", "100k", "1M")]
    pages.append(("1M", f"skip={seed.DEEP}", f"{LIST}&skip={seed.DEEP}"))
    if cursor is not None:
        pages.append(("1M", "cursor (same page)", f"{LIST}&cursor={urllib.parse.quote(cursor)}"))
    for size, _, path in pages:
        run.measure(
            ours,
            [Call("GET", path)],
            user=seed.sized_email(size),
            connections=32,
            seconds=run.plan.warmup,
        )
    for repetition in range(run.plan.repetitions):
        print(f"  lists, repetition {repetition + 1}/{run.plan.repetitions}", flush=True)
        for size, page, path in pages:
            found = run.measure(
                ours, [Call("GET", path)], user=seed.sized_email(size), connections=32
            )
            run.results.add(("list", size, page), found)


def login_storm(run: Session, ours: Target) -> None:
    """GET /items/{id} at c32 alone, then with 8 connections logging in meanwhile."""
    logins = [
        Call(
            "POST",
            f"{API}/login/access-token",
            urllib.parse.urlencode({"username": seed.login_email(n), "password": seed.PASSWORD}),
            FORM_TYPE,
        )
        for n in range(seed.LOGIN_USERS)
    ]
    reader = seed.sized_email("1k")
    for repetition in range(run.plan.repetitions):
        print(f"  login storm, repetition {repetition + 1}/{run.plan.repetitions}", flush=True)
        calm = run.measure(ours, [ENDPOINTS["GET /items/{id}"]], user=reader, connections=32)
        run.results.add(("storm", "calm"), calm)
        storm = start_wrk(
            ours.base_url,
            logins,
            workdir=run.workdir,
            seconds=run.plan.duration + 1,
            connections=8,
            threads=1,
            name="logins",
        )
        time.sleep(0.5)  # the logins are under way before the reads start
        stormy = run.measure(ours, [ENDPOINTS["GET /items/{id}"]], user=reader, connections=32)
        run.results.add(("storm", "stormy"), stormy)
        run.results.add(("storm", "logins"), storm.result())
        time.sleep(2)  # the hashes still queued finish (a few x 0.25 s of CPU)
        run.settle()


def mixed(run: Session, ours: Target) -> None:
    for _ in range(run.plan.repetitions):
        run.results.add(("mix",), run.measure(ours, MIX, user=seed.WRITER, connections=32))


def memory(run: Session, ours: Target) -> None:
    """A mixed run of `memory_minutes`: each worker's VmRSS after its first seconds, and at
    the end."""
    seconds = run.plan.memory_minutes * 60
    print(f"  memory: a {seconds:.0f} s mixed run", flush=True)
    load = start_wrk(
        ours.base_url,
        MIX,
        workdir=run.workdir,
        seconds=seconds,
        connections=32,
        token=run.tokens[seed.WRITER],
        ids_file=run.ids[seed.WRITER],
        name="memory",
    )
    time.sleep(min(10.0, seconds / 10))
    pids = servers.worker_pids(ours.process.pid)
    start = {pid: servers.rss_kib(pid) for pid in pids}
    time.sleep(max(0.0, seconds - min(10.0, seconds / 10) - 1))
    end = {pid: servers.rss_kib(pid) for pid in pids}
    run.results.add(("memory-load",), load.result())
    run.settle()
    for number, pid in enumerate(pids, 1):
        run.results.memory.append((f"worker {number} (pid {pid})", start[pid], end[pid]))


async def prepare(url: URL, env: dict[str, str], workdir: Path) -> tuple[dict[str, Any], str]:
    """Create, migrate and seed the database; the users' ids, the deep row and the server's
    version."""
    await ensure_database(url)
    await asyncio.to_thread(migrate, env)
    hashed = await asyncio.to_thread(
        seed.hashed_password,
        int(env["ARGON2_TIME_COST"]),
        int(env["ARGON2_MEMORY_COST"]),
        int(env["ARGON2_PARALLELISM"]),
    )
    engine = create_async_engine(url)
    try:
        seeded = await seed.seed(engine, hashed)
        await seed.reset_writer(engine, seeded.users[seed.WRITER])
        for email in (seed.sized_email("1k"), seed.WRITER):
            ids = await seed.item_ids(engine, seeded.users[email])
            (workdir / f"{email}.ids").write_text("".join(f"{i}\n" for i in ids))
        deep = await seed.deep_row(engine, seeded.users[seed.sized_email("1M")])
        async with engine.connect() as connection:
            if url.get_backend_name() == "sqlite":
                version = "SQLite " + str(await connection.scalar(text("SELECT sqlite_version()")))
            else:
                version = "PostgreSQL " + str(await connection.scalar(text("SHOW server_version")))
    finally:
        await engine.dispose()
    return {"users": seeded.users, "deep": deep}, version


async def refresh_writer(url: URL, writer_id: Any, ids_path: Path) -> None:
    engine = create_async_engine(url)
    try:
        await seed.reset_writer(engine, writer_id)
        ids = await seed.item_ids(engine, writer_id)
    finally:
        await engine.dispose()
    await asyncio.to_thread(ids_path.write_text, "".join(f"{i}\n" for i in ids))


def keyset_cursor(deep: tuple[object, Any] | None, results: report.Results) -> str | None:
    """The cursor of the page 100,000 deep, if this tree has keyset pagination (branch `pages`)."""
    try:
        from app.core import pagination

        encode: Callable[..., str] = pagination.encode_cursor  # type: ignore[attr-defined]
    except AttributeError:
        results.notes.append(
            "keyset page skipped: `app.core.pagination.encode_cursor` does not exist in this tree"
        )
        return None
    if deep is None:
        return None
    return encode(deep[0], deep[1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="PostgreSQL (default %(default)s; created and migrated, seeded once, never emptied) "
        "or sqlite:///bench/results/bench.db (GETs only, no ceiling)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few minutes: 1 worker, 1 repetition"
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 4; quick 2)")
    parser.add_argument(
        "--repetitions", type=int, help="interleaved repetitions (default 3; quick 1)"
    )
    parser.add_argument("--workers", help="worker counts, comma-separated (default 1,2; quick 1)")
    parser.add_argument("--connections", default="32,64", help="default %(default)s")
    parser.add_argument(
        "--memory-minutes",
        type=float,
        help="length of the memory run (default 5; quick 0.5; 0: none)",
    )
    parser.add_argument(
        "--template-dir",
        type=Path,
        help="the official template's backend with its venv (see /tmp/template/LAUNCH.md)",
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        duration=args.duration or (2.0 if quick else 4.0),
        repetitions=args.repetitions or (1 if quick else 3),
        workers=[int(w) for w in (args.workers or ("1" if quick else "1,2")).split(",")],
        connections=[int(c) for c in args.connections.split(",")],
        memory_minutes=args.memory_minutes
        if args.memory_minutes is not None
        else (0.5 if quick else 5.0),
    )


def bench(args: argparse.Namespace, argv: list[str], workdir: Path) -> str:
    wrk_path()  # fail at once, with the apt-get line, when wrk is missing
    plan = make_plan(args)
    url = throwaway_url(args.database_url)
    env = servers.production_env(url)
    sqlite = url.get_backend_name() == "sqlite"
    print(f"preparing {url.render_as_string(hide_password=True)}", flush=True)
    seeded, version = asyncio.run(prepare(url, env, workdir))
    users: dict[str, Any] = seeded["users"]
    results = report.Results()
    if sqlite:
        results.notes.append("SQLite: GETs only; no ceiling (it is asyncpg-only)")
    cursor = keyset_cursor(seeded["deep"], results)
    ids = {email: workdir / f"{email}.ids" for email in (seed.sized_email("1k"), seed.WRITER)}
    run = Session(workdir, plan, results, {}, ids, writes=not sqlite, settle=settler(url))
    for w in plan.workers:
        print(f"workers: {w}", flush=True)
        asyncio.run(refresh_writer(url, users[seed.WRITER], ids[seed.WRITER]))
        targets = [servers.start_ours(env, workdir, w)]
        floor: Target | None = None
        try:
            if not sqlite:
                ceiling = "bench.ceiling:create_app"
                targets.append(servers.start_uvicorn("ceiling", ceiling, env, workdir, w, ITEM))
            floor = servers.start_uvicorn("floor", "bench.floor:create_app", env, workdir, w, ITEM)
            for target in [*targets, floor]:
                servers.wait_ready(target)
            if not run.tokens:
                emails = [*(seed.sized_email(size) for size in seed.SIZES), seed.WRITER]
                run.tokens = {email: login(targets[0].base_url, email) for email in emails}
            endpoints_matrix(run, targets, floor, w)
            ours = targets[0]
            if w == plan.workers[0]:
                list_pages(run, ours, cursor)
                login_storm(run, ours)
                if run.writes:
                    asyncio.run(refresh_writer(url, users[seed.WRITER], ids[seed.WRITER]))
                    mixed(run, ours)
            if w == plan.workers[-1] and run.writes and plan.memory_minutes > 0:
                asyncio.run(refresh_writer(url, users[seed.WRITER], ids[seed.WRITER]))
                memory(run, ours)
        finally:
            for target in [*targets, *([floor] if floor else [])]:
                servers.stop(target)
    command = shlex.join(["python", "-m", "bench.run", *argv])
    return render(run, plan, version, command)


def render(run: Session, plan: Plan, version: str, command: str) -> str:
    results = run.results
    endpoints = list(ENDPOINTS)
    parts = [
        f"# Benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        report.machine(version, command),
        f"wrk -t2, {plan.duration:g} s per run, {plan.repetitions} interleaved repetition(s), "
        "medians; latencies in ms; ratios > 1 mean ours is faster (req/s) or slower (p99).",
        "## Endpoints: ours against the same-work ceiling and the floor",
        report.matrix(results, endpoints, plan.workers, plan.connections),
        f"## The list at 1k / 100k / 1M items (c32, {plan.workers[0]} worker)",
        report.lists(results),
        "## Login storm",
        report.storm(results),
        "## Realistic mix (40 % item, 20 % me, 20 % list, 10 % POST, 10 % PATCH; c32)",
        report.mix(results),
        "## Memory",
        report.memory(results, plan.memory_minutes, plan.workers[-1]),
    ]
    if results.notes:
        parts += ["## Notes", "\n".join(f"- {note}" for note in results.notes)]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            text_out = bench(args, argv, Path(workdir))
    except (BenchmarkError, WrkError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the servers were stopped", file=sys.stderr)
        return 130
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    path.write_text(text_out)
    print(text_out)
    print(f"written to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
