"""The scenarios: what is sent, to whom, how often, and where each measure is filed."""

import asyncio
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx2
from sqlalchemy.engine import URL

from bench import report, seed, servers
from bench.servers import Target
from bench.wrk import FORM_TYPE, Call, Measure
from bench.wrk import start as start_wrk
from tests.benchmarks.server import BenchmarkError

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
class BenchRun:
    """What a run shares: its tokens, ids files, work directory and results."""

    workdir: Path
    plan: Plan
    results: report.Results
    tokens: dict[str, str]
    ids: dict[str, Path]
    writes: bool
    settle: "Settler"

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
            token=self.tokens.get(target.realm + user, ""),
            ids_file=self.ids.get(target.realm + user),
        ).result()
        # wrk stops sending, but the server goes on with what it has in hand (a slow page at
        # c32 is seconds of work): the next run must not start behind that backlog.
        self.settle()
        return found


# Busy: running a statement, or between two statements of a request. A transaction left open
# for over a second is no request in progress (the template's pool keeps some so): not waited for.
BUSY = """SELECT count(*) FROM pg_stat_activity
WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid() AND (state = 'active'
  OR (state LIKE 'idle in transaction%' AND state_change > now() - interval '1 second'))"""


class Settler:
    """Waits after a run until the servers' databases are idle; on SQLite (which has no view
    of its connections), until our health check, which reads the database, answers at once.

    Over one connection of its own, opened at the start and kept: a full PostgreSQL (its
    `max_connections` is shared with the servers under test) must not stop the run between two
    measures. If the connection fails anyway, it waits a fixed second instead.
    """

    def __init__(self, url: URL, databases: list[str], within: float = 60.0) -> None:
        self._sqlite = url.get_backend_name() == "sqlite"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._databases, self._within = databases, within
        self._loop = asyncio.new_event_loop()
        self._connection: Any = None
        self.probe: str | None = None
        """Our server's health check URL (SQLite)."""

    async def _wait(self) -> None:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self._dsn, timeout=5)
        deadline, quiet = time.monotonic() + self._within, 0
        while quiet < 2 and time.monotonic() < deadline:
            busy = await self._connection.fetchval(BUSY, self._databases)
            quiet = quiet + 1 if not busy else 0
            await asyncio.sleep(0.1)

    def _wait_for_health(self, probe: str) -> None:
        deadline, quiet = time.monotonic() + self._within, 0
        while quiet < 2 and time.monotonic() < deadline:
            try:
                quick = httpx2.get(probe, timeout=0.5).status_code == 200
            except httpx2.TransportError:
                quick = False
            quiet = quiet + 1 if quick else 0
            time.sleep(0.1)

    def __call__(self) -> None:
        if self._sqlite:
            if self.probe is None:
                time.sleep(0.5)
            else:
                self._wait_for_health(self.probe)
            return
        try:
            self._loop.run_until_complete(self._wait())
        except (OSError, asyncpg.PostgresError) as error:
            print(f"  (could not watch the database: {error}; waiting 1 s)", flush=True)
            self._connection = None
            time.sleep(1)

    def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            self._loop.run_until_complete(self._connection.close())
        self._loop.close()


def login(base_url: str, email: str) -> str:
    form = {"username": email, "password": seed.PASSWORD}
    response = httpx2.post(f"{base_url}{API}/login/access-token", data=form, timeout=30)
    if response.status_code != 200:
        raise BenchmarkError(f"login of {email} failed: {response.status_code} {response.text}")
    token: str = response.json()["access_token"]
    return token


TEMPLATE_CONNECTIONS = (32,)
"""The template is measured at c32 only: at c64 one worker of it stops answering (seen here: 47
answers in 4 s, then none for the next run, until its pool times out 30 s later). Its sync
dependencies with `yield` hold the 15 pooled connections while all 40 threadpool threads wait
for one, and the teardown that would free them needs a thread too."""


def supports(target: Target, endpoint: str, connections: int = 32) -> bool:
    if target.name == "template":
        return connections in TEMPLATE_CONNECTIONS
    return target.name != "ceiling" or endpoint in CEILING_ENDPOINTS


def calls_for(target: Target, endpoint: str) -> list[Call]:
    call = ENDPOINTS[endpoint]
    if target.name == "template" and call.method == "PATCH":
        # The template has no PATCH: its PUT takes a partial body, the same change.
        return [Call("PUT", call.path, call.body)]
    return [call]


def user_of(endpoint: str) -> str:
    """Reads go to the 1k user; writes to the writer, whose items are reset between parts."""
    return seed.WRITER if endpoint in WRITES else seed.sized_email("1k")


def endpoints_matrix(run: BenchRun, targets: list[Target], floor: Target, w: int) -> None:
    """Each endpoint, each concurrency, ours then the references, R times; the floor once per
    concurrency and repetition (it answers the same constant whatever the path)."""
    plan = run.plan
    endpoints = [e for e in ENDPOINTS if run.writes or e not in WRITES]
    for target in targets:  # a first, uncounted second for every path: caches, pools
        for endpoint in endpoints:
            if supports(target, endpoint):
                calls = calls_for(target, endpoint)
                user = user_of(endpoint)
                run.measure(target, calls, user=user, connections=32, seconds=plan.warmup)
    for repetition in range(plan.repetitions):
        for c in plan.connections:
            print(f"  w{w} c{c} repetition {repetition + 1}/{plan.repetitions}", flush=True)
            for endpoint in endpoints:
                for target in targets:
                    if not supports(target, endpoint, c):
                        continue
                    calls = calls_for(target, endpoint)
                    found = run.measure(target, calls, user=user_of(endpoint), connections=c)
                    run.results.add(("endpoint", endpoint, f"w{w}c{c}", target.name), found)
            reader = seed.sized_email("1k")  # its ids; the floor reads no token
            found = run.measure(floor, [ENDPOINTS["GET /items/{id}"]], user=reader, connections=c)
            run.results.add(("floor", f"w{w}c{c}"), found)


def list_pages(run: BenchRun, ours: Target, cursor: str | None) -> None:
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


def login_storm(run: BenchRun, ours: Target) -> None:
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


def mixed(run: BenchRun, ours: Target) -> None:
    for _ in range(run.plan.repetitions):
        run.results.add(("mix",), run.measure(ours, MIX, user=seed.WRITER, connections=32))


def memory(run: BenchRun, ours: Target) -> None:
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
