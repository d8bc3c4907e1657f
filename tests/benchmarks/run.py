"""HTTP benchmark of the real server: throughput and latency of the main endpoints.

What it measures: the app as it is deployed, not as the tests drive it. It migrates a throwaway
database with Alembic, starts `uvicorn app.main:create_app --factory` (one worker process) on a
free port of 127.0.0.1, seeds one user with 100 items, then sends N requests per scenario from C
concurrent keep-alive connections (one `httpx2.AsyncClient`) and reports requests per second,
the 50th/95th/99th percentile of the latency (request sent to body read) and the number of
non-2xx answers. Each scenario gets a short warm-up first, which is not counted. Login runs
separately, with few requests and low concurrency: argon2id (about 0.2 s of CPU per attempt with
the default settings, one hash per core at a time) is all it measures.

Why these numbers are not pass/fail in the test suite: they depend on the machine, its CPU count
and its other load, the database server, and the client itself, which shares the CPUs with the
server (at high concurrency httpx2 can be the bottleneck). A threshold that holds on one laptop
fails on a busy CI runner, and one loose enough for both catches nothing. Compare two revisions
on the same machine instead. The one hard failure is an error: a non-2xx answer under
concurrency is a bug, and so is a scenario that cannot finish within its time limit (requests not
sent are counted as errors); either makes the exit status 1.

    .venv/bin/python -m tests.benchmarks.run                      # fresh SQLite file, 2000 x 32
    .venv/bin/python -m tests.benchmarks.run --requests 500 --concurrency 8
    .venv/bin/python -m tests.benchmarks.run \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench

The database is emptied first (every table dropped, then `alembic upgrade head`), so the script
only accepts a database on this machine whose name contains "bench" or "test". Create the
PostgreSQL one once with `psql -h 127.0.0.1 -U postgres -c 'CREATE DATABASE bench'`; prefer it to
`test`, which `make test-postgres` empties while it runs.
"""

import argparse
import asyncio
import os
import platform
import random
import shlex
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import httpx2

from app.core.config import API_V1_PREFIX, Settings
from tests.benchmarks.server import (
    HOST,
    BenchmarkError,
    Server,
    free_port,
    migrate,
    print_log_tail,
    run_in_workdir,
    server_env,
    start_server,
    stop_server,
    throwaway_database,
    wait_until_healthy,
)

REQUEST_TIMEOUT = 30.0
MAX_CONCURRENCY = 1024
WARMUP_REQUESTS = 50
SEED_ITEMS = 100
SEED = 20261127

LOGIN_REQUESTS = 50
LOGIN_CONCURRENCY = 4
LOGIN_WARMUP = 4

USER_EMAIL = "bench-user@example.com"
USER_PASSWORD = "bench-user-password"


@dataclass(frozen=True)
class Call:
    """One request of a scenario."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    authenticated: bool = True


@dataclass(frozen=True)
class Scenario:
    name: str
    make_call: Callable[[int], Call]
    requests: int
    concurrency: int
    warmup: int


@dataclass
class Result:
    """What one run of a scenario produced; `latencies` has one entry per answer received."""

    scenario: Scenario
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else float("nan")

    def percentile_ms(self, percent: int) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cuts[percent - 1] * 1000


# --- arguments --------------------------------------------------------------------------------


def _positive(limit: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not 1 <= number <= limit:
            raise argparse.ArgumentTypeError(f"must be between 1 and {limit}")
        return number

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description="Benchmark the real server over HTTP on 127.0.0.1 (see the module docstring).",
    )
    parser.add_argument(
        "--database-url",
        help="throwaway database to empty and use, e.g. "
        "postgresql://postgres@127.0.0.1:5432/bench (default: a fresh SQLite file)",
    )
    parser.add_argument(
        "--requests",
        type=_positive(10_000_000),
        default=2000,
        help="measured requests per scenario (default: 2000)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive(MAX_CONCURRENCY),
        default=32,
        help="requests in flight at once (default: 32)",
    )
    parser.add_argument(
        "--time-limit",
        type=_positive(3600),
        default=300,
        metavar="SECONDS",
        help="start no new request of a scenario after this long (default: 300)",
    )
    return parser.parse_args(argv)


# --- load -------------------------------------------------------------------------------------


def _expect(response: httpx2.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise BenchmarkError(f"{what}: HTTP {response.status_code} {response.text[:500]}")
    return response.json()


async def seed(client: httpx2.AsyncClient) -> tuple[dict[str, str], list[str]]:
    """One user with SEED_ITEMS items; return its auth headers and the item ids."""
    _expect(
        await client.post(
            "/users/signup",
            json={"email": USER_EMAIL, "password": USER_PASSWORD, "full_name": "Bench User"},
        ),
        201,
        "sign up",
    )
    token = _expect(
        await client.post(
            "/login/access-token", data={"username": USER_EMAIL, "password": USER_PASSWORD}
        ),
        200,
        "log in",
    )["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    item_ids = []
    for number in range(SEED_ITEMS):
        item = _expect(
            await client.post(
                "/items/",
                json={"title": f"Seed item {number}", "description": "Created before timing"},
                headers=headers,
            ),
            201,
            "create a seed item",
        )
        item_ids.append(item["id"])
    return headers, item_ids


def scenarios(item_ids: list[str], requests: int, concurrency: int) -> list[Scenario]:
    rng = random.Random(SEED)

    def some_item() -> str:
        return rng.choice(item_ids)

    def load(name: str, make_call: Callable[[int], Call]) -> Scenario:
        return Scenario(name, make_call, requests, concurrency, WARMUP_REQUESTS)

    return [
        load("GET /utils/health-check/", lambda _: Call("GET", "/utils/health-check/")),
        load("GET /users/me", lambda _: Call("GET", "/users/me")),
        load("GET /items/?limit=20", lambda _: Call("GET", "/items/?limit=20")),
        load("GET /items/{id}", lambda _: Call("GET", f"/items/{some_item()}")),
        load(
            "POST /items/",
            lambda n: Call("POST", "/items/", json={"title": f"Item {n}", "description": "Bench"}),
        ),
        load(
            "PATCH /items/{id}",
            lambda n: Call("PATCH", f"/items/{some_item()}", json={"title": f"Patched {n}"}),
        ),
        Scenario(
            "POST /login/access-token",
            lambda _: Call(
                "POST",
                "/login/access-token",
                form={"username": USER_EMAIL, "password": USER_PASSWORD},
                authenticated=False,
            ),
            LOGIN_REQUESTS,
            LOGIN_CONCURRENCY,
            LOGIN_WARMUP,
        ),
    ]


async def drive(
    client: httpx2.AsyncClient,
    scenario: Scenario,
    headers: dict[str, str],
    total: int,
    time_limit: float,
) -> Result:
    """Send `total` calls of `scenario` from its `concurrency` workers.

    Past `time_limit` seconds no new call starts: a server that stalls (errors that cost seconds
    each, an exhausted connection pool) ends the scenario with "not sent" errors, not a hang.
    """
    result = Result(scenario)
    # Shared by the workers: each takes the next number until all `total` are taken.
    numbers: Iterator[int] = iter(range(total))
    deadline = perf_counter() + time_limit

    async def worker() -> None:
        for number in numbers:
            if perf_counter() > deadline:
                result.errors["not sent (time limit)"] += 1
                continue
            call = scenario.make_call(number)
            started = perf_counter()
            try:
                response = await client.request(
                    call.method,
                    call.path,
                    json=call.json,
                    data=call.form,
                    headers=headers if call.authenticated else None,
                )
            except httpx2.HTTPError as error:
                result.errors[type(error).__name__] += 1
                continue
            result.latencies.append(perf_counter() - started)
            if not response.is_success:
                result.errors[f"HTTP {response.status_code}"] += 1

    started = perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(scenario.concurrency, total)):
            group.create_task(worker())
    result.elapsed = perf_counter() - started
    return result


async def benchmark(
    port: int, server: Server, args: argparse.Namespace
) -> tuple[list[Result], list[Result]]:
    """Seed, then warm up and measure every scenario; return the measured and warm-up results."""
    connections = max(args.concurrency, LOGIN_CONCURRENCY)
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx2.AsyncClient(
        base_url=f"http://{HOST}:{port}{API_V1_PREFIX}",
        limits=limits,
        timeout=REQUEST_TIMEOUT,
    ) as client:
        await wait_until_healthy(client, server)
        headers, item_ids = await seed(client)
        results, warmups = [], []
        for scenario in scenarios(item_ids, args.requests, args.concurrency):
            print(f"  {scenario.name} ...", file=sys.stderr, flush=True)
            warmups.append(await drive(client, scenario, headers, scenario.warmup, args.time_limit))
            results.append(
                await drive(client, scenario, headers, scenario.requests, args.time_limit)
            )
            if server.poll() is not None:
                raise BenchmarkError(f"the server exited with status {server.returncode}")
        return results, warmups


# --- report -----------------------------------------------------------------------------------


def invocation(argv: list[str]) -> str:
    """The command line that ran this benchmark, to paste again."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = str(python)
    return shlex.join([shown, "-m", "tests.benchmarks.run", *argv])


def report(results: list[Result], warmups: list[Result], header: list[str]) -> str:
    columns = ("scenario", "requests", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms")
    rows = [(*columns, "errors")]
    for result in results:
        scenario = result.scenario
        rows.append(
            (
                scenario.name,
                str(scenario.requests),
                str(scenario.concurrency),
                f"{result.throughput:.1f}",
                f"{result.percentile_ms(50):.1f}",
                f"{result.percentile_ms(95):.1f}",
                f"{result.percentile_ms(99):.1f}",
                str(result.error_count),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [*header, ""]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    for label, batch in (("errors in", results), ("errors in the warm-up of", warmups)):
        for result in batch:
            if result.errors:
                detail = ", ".join(f"{reason} x{n}" for reason, n in result.errors.most_common())
                lines.append(f"{label} {result.scenario.name}: {detail}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace, argv: list[str], workdir: Path) -> int:
    url, database = throwaway_database(args.database_url, workdir, "bench")
    env = server_env(url)
    migrate(env)

    port = free_port()
    log_path = workdir / "server.log"
    server = start_server(port, env, log_path)
    try:
        results, warmups = asyncio.run(benchmark(port, server, args))
    except BenchmarkError:
        print_log_tail(log_path)
        raise
    finally:
        stop_server(server)

    defaults = Settings.model_fields
    header = [
        f"database: {database} ({url.render_as_string(hide_password=True)}) | "
        f"Python {platform.python_version()} | CPUs: {os.cpu_count()} | "
        f"command: {invocation(argv)}",
        f"server: 1 uvicorn worker on {HOST}:{port}; argon2id "
        f"t={defaults['ARGON2_TIME_COST'].default} m={defaults['ARGON2_MEMORY_COST'].default} "
        f"p={defaults['ARGON2_PARALLELISM'].default}; warm-up {WARMUP_REQUESTS} requests "
        f"per scenario ({LOGIN_WARMUP} for login); time limit {args.time_limit} s per scenario",
    ]
    print(report(results, warmups, header))
    if any(result.errors for result in [*results, *warmups]):
        print_log_tail(log_path)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    return run_in_workdir("bench", lambda workdir: run(args, argv, workdir))


if __name__ == "__main__":
    sys.exit(main())
