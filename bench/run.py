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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.pagination import encode_cursor
from bench import report, seed, servers, template
from bench.scenarios import (
    ENDPOINTS,
    ITEM,
    BenchRun,
    Plan,
    Settler,
    endpoints_matrix,
    list_pages,
    login,
    login_storm,
    memory,
    mixed,
)
from bench.servers import Target
from bench.wrk import WrkError, wrk_path
from tests.benchmarks.server import BenchmarkError, migrate, throwaway_url
from tests.soak.server import ensure_database

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench"
RESULTS = Path(__file__).resolve().parent / "results"


async def prepare(url: URL, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Create, migrate and seed the database; the users' ids, the deep row, the server's
    version and the users' password hash."""
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
    return {"users": seeded.users, "deep": deep, "version": version, "hashed": hashed}


async def refresh_writer(url: URL, writer_id: Any, ids_path: Path) -> None:
    engine = create_async_engine(url)
    try:
        await seed.reset_writer(engine, writer_id)
        ids = await seed.item_ids(engine, writer_id)
    finally:
        await engine.dispose()
    await asyncio.to_thread(ids_path.write_text, "".join(f"{i}\n" for i in ids))


def keyset_cursor(deep: tuple[object, Any] | None) -> str | None:
    """The cursor of the page 100,000 deep (`deep`: the sort key of the row before it)."""
    return None if deep is None else encode_cursor(deep[0], deep[1])


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
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 3; quick 2)")
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
        duration=args.duration or (2.0 if quick else 3.0),
        repetitions=args.repetitions or (1 if quick else 3),
        workers=[int(w) for w in (args.workers or ("1" if quick else "1,2")).split(",")],
        connections=[int(c) for c in args.connections.split(",")],
        memory_minutes=args.memory_minutes
        if args.memory_minutes is not None
        else (0.5 if quick else 5.0),
    )


@dataclass(frozen=True)
class TemplateSetup:
    directory: Path
    url: URL
    env: dict[str, str]


def start_all(
    env: dict[str, str], workdir: Path, w: int, sqlite: bool, tpl: TemplateSetup | None
) -> list[Target]:
    """Ours, the ceiling (PostgreSQL only), the floor and the template (if given), ready."""
    started = [servers.start_ours(env, workdir, w)]
    try:
        if not sqlite:
            ceiling = "bench.ceiling:create_app"
            started.append(servers.start_uvicorn("ceiling", ceiling, env, workdir, w, ITEM))
        floor = "bench.floor:create_app"
        started.append(servers.start_uvicorn("floor", floor, env, workdir, w, ITEM))
        if tpl is not None:
            started.append(
                servers.start_uvicorn(
                    "template",
                    "app.main:app",
                    tpl.env,
                    workdir,
                    w,
                    servers.HEALTH_PATH,
                    cwd=tpl.directory,
                    python=template.python(tpl.directory),
                    realm="template:",
                )
            )
        for target in started:
            servers.wait_ready(target)
    except BaseException:
        for target in started:
            servers.stop(target)
        raise
    return started


def bench_workers(
    run: BenchRun, started: list[Target], w: int, cursor: str | None, url: URL, writer_id: Any
) -> None:
    """Every scenario for one worker count, on servers just started; stopped at the end."""
    plan, writer_ids = run.plan, run.ids[seed.WRITER]
    try:
        ours, floor = started[0], next(t for t in started if t.name == "floor")
        run.settle.probe = ours.base_url + servers.HEALTH_PATH
        if not run.tokens:
            emails = [*(seed.sized_email(size) for size in seed.SIZES), seed.WRITER]
            run.tokens = {email: login(ours.base_url, email) for email in emails}
            for target in started:
                if target.name == "template":
                    run.tokens.update(
                        {f"template:{e}": login(target.base_url, e) for e in template.USERS}
                    )
        endpoints_matrix(run, [t for t in started if t is not floor], floor, w)
        if w == plan.workers[0]:
            list_pages(run, ours, cursor)
            login_storm(run, ours)
            if run.writes:
                asyncio.run(refresh_writer(url, writer_id, writer_ids))
                mixed(run, ours)
        if w == plan.workers[-1] and run.writes and plan.memory_minutes > 0:
            asyncio.run(refresh_writer(url, writer_id, writer_ids))
            memory(run, ours)
    finally:
        for target in started:
            servers.stop(target)
        if found := servers.refusals(started[0].log_path):
            listed = ", ".join(f"{count} x {what}" for what, count in found.most_common(5))
            run.results.notes.append(f"ours, {w} worker(s), answers >= 400 in its log: {listed}")


def bench(args: argparse.Namespace, argv: list[str], workdir: Path) -> str:
    wrk_path()  # fail at once, with the apt-get line, when wrk is missing
    plan = make_plan(args)
    RESULTS.mkdir(exist_ok=True)  # also where a SQLite database goes
    url = throwaway_url(args.database_url)
    env = servers.production_env(url)
    sqlite = url.get_backend_name() == "sqlite"
    print(f"preparing {url.render_as_string(hide_password=True)}", flush=True)
    prepared = asyncio.run(prepare(url, env, workdir))
    writer_id = prepared["users"][seed.WRITER]
    results = report.Results()
    if sqlite:
        results.notes.append("SQLite: GETs only; no ceiling (it is asyncpg-only)")
    cursor = keyset_cursor(prepared["deep"])
    ids = {email: workdir / f"{email}.ids" for email in (seed.sized_email("1k"), seed.WRITER)}
    tpl = None
    databases = [url.database or ""]
    if args.template_dir is not None:
        if sqlite:
            raise BenchmarkError("--template-dir needs PostgreSQL")
        tpl_url = template.database_url(url)
        tpl = TemplateSetup(
            args.template_dir.resolve(), tpl_url, template.environment(env, tpl_url)
        )
        print(f"preparing the template's {tpl_url.render_as_string(hide_password=True)}")
        asyncio.run(template.prepare(tpl.directory, tpl.env, tpl.url, prepared["hashed"]))
        ids.update({f"template:{e}": workdir / f"template:{e}.ids" for e in template.USERS})
        results.notes.append(
            "template measured at c32 only: at c64 one worker of it stops answering until its "
            "pool times out (sync dependencies with `yield` hold its 15 connections while its "
            "40 threads wait for one; see bench/scenarios.py TEMPLATE_CONNECTIONS)"
        )
    if any(w > 1 for w in plan.workers):
        results.notes.append(
            "with N workers, each worker's pool (ours, ceiling) is 1/N of the default: the same "
            "connections per server as with one worker, as PostgreSQL's max_connections is "
            "shared by the servers of the run (see bench/servers.py `pooled`)"
        )
    settle = Settler(url, databases)
    run = BenchRun(workdir, plan, results, {}, ids, writes=not sqlite, settle=settle)
    try:
        for w in plan.workers:
            print(f"workers: {w}", flush=True)
            asyncio.run(refresh_writer(url, writer_id, ids[seed.WRITER]))
            if tpl is not None:
                asyncio.run(template.reset(tpl.url, workdir))
            bench_workers(run, start_all(env, workdir, w, sqlite, tpl), w, cursor, url, writer_id)
    except (BenchmarkError, WrkError, DBAPIError, OSError) as error:
        # What was measured is still worth reading: the table says where the run stopped.
        print(f"bench stopped: {error}", file=sys.stderr)
        results.notes.append(f"the run stopped early: {str(error).splitlines()[0]}")
    finally:
        settle.close()
    command = shlex.join(["python", "-m", "bench.run", *argv])
    return render(run, plan, prepared["version"], command)


def render(run: BenchRun, plan: Plan, version: str, command: str) -> str:
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
