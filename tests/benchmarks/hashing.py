"""Hashing under load: does a flood of wrong logins starve everything else?

For each variant of the server, on the same machine and database, one after the other:

1. `GET /users/me` (authenticated) from `--concurrency` keep-alive connections for `--seconds`:
   its latency alone;
2. the same again while a separate process (its own CPU use is part of the load on a small
   machine) runs `--logins` clients that send wrong logins, each a new one as soon as the last
   is answered; then, under the same load, `--signups` sign-ups, timed one by one. Twice:
   with `attacker` clients, which ignore `Retry-After` (a 503 answered at once turns such a
   client into a flood of requests), and with `polite` ones, which wait as it says.

Variants of the server: `after` is the app as it is (logins wait in a bounded queue on their
share of the hashing threads, past `HASH_QUEUE_MAX` they get a fast 503, and their hashing runs
at a low CPU priority); `queue-only` is the same with the hashing at normal priority;
`before` is the same app with `Passwords.login_turn` made a no-op, which is the service before
the queue: every hash, login or not, in one FIFO of one thread per core, at normal priority.

The servers run with the default argon2 costs (`server.py` pins them) and with the request
throttle off: with it, the wrong logins would soon be 429s that hash nothing, and this measures
the hashing pool, not the throttle. Like `run.py`, the numbers are for comparing two variants on
one machine, not for pass/fail.

    .venv/bin/python -m tests.benchmarks.hashing
    .venv/bin/python -m tests.benchmarks.hashing \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

import httpx2

from app.core.config import API_V1_PREFIX, Settings
from tests.benchmarks.server import (
    HOST,
    ROOT,
    BenchmarkError,
    free_port,
    migrate,
    print_log_tail,
    run_in_workdir,
    server_command,
    server_env,
    stop_server,
    throwaway_database,
    wait_until_healthy,
)

VARIANTS = ("before", "queue-only", "after")
# How the wrong logins' clients treat a 503: an attacker sends the next one at once, a client
# such as the template's frontend waits `Retry-After`. Before the queue there is no 503, so
# both are the same load there.
LOAD_MODES = ("attacker", "polite")
USER_EMAIL = "bench-hashing@example.com"
USER_PASSWORD = "bench-user-password"
REQUEST_TIMEOUT = 60.0
WARMUP_SECONDS = 2.0
SIGNUP_PAUSE_SECONDS = 0.5

T = TypeVar("T")


# --- the servers ------------------------------------------------------------------------------


def serve_variant(variant: str, port: int) -> None:
    """Run the server of a variant other than `after` (see the module docstring)."""
    import uvicorn

    from app.core import security

    def at_normal_priority(function: Callable[[], T]) -> T:
        return function()

    @contextlib.asynccontextmanager
    async def no_turn(self: security.Passwords) -> AsyncIterator[None]:
        yield

    # Without a turn no login is ever at low priority either.
    security._at_low_priority = at_normal_priority
    if variant == "before":
        security.Passwords.login_turn = no_turn  # type: ignore[method-assign]
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=HOST,
        port=port,
        access_log=False,
        log_level="warning",
    )


def start(variant: str, port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    command = server_command(port)
    if variant != "after":
        command = [sys.executable, "-m", "tests.benchmarks.hashing", "serve", variant, str(port)]
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- the wrong logins, in their own process ---------------------------------------------------


async def hammer(base_url: str, logins: int, *, honour_retry_after: bool) -> None:
    """Keep `logins` wrong logins in flight until stdin closes; print what came back as JSON.
    `honour_retry_after`: after a 503, wait as it says before the next attempt."""
    answers: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    stop = asyncio.Event()
    limits = httpx2.Limits(max_connections=logins, max_keepalive_connections=logins)

    async def worker(client: httpx2.AsyncClient, number: int) -> None:
        form = {"username": USER_EMAIL, "password": f"wrong-password-{number}"}
        while not stop.is_set():
            started = perf_counter()
            try:
                response = await client.post("/login/access-token", data=form)
            except httpx2.HTTPError as error:
                answers[type(error).__name__] += 1
                continue
            status = str(response.status_code)
            answers[status] += 1
            latencies.setdefault(status, []).append(perf_counter() - started)
            if honour_retry_after and response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx2.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        workers = [asyncio.create_task(worker(client, n)) for n in range(logins)]
        started = perf_counter()
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes it
        stop.set()
        elapsed = perf_counter() - started
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "answers": dict(answers),
                "p50_ms": {s: statistics.median(v) * 1000 for s, v in latencies.items()},
            }
        )
    )


@dataclass
class Hammer:
    process: asyncio.subprocess.Process

    @classmethod
    async def start(cls, base_url: str, logins: int, mode: str) -> "Hammer":
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.hashing",
            "hammer",
            base_url,
            str(logins),
            mode,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def stop(self) -> dict[str, Any]:
        out, _ = await self.process.communicate(b"")
        if self.process.returncode != 0:
            raise BenchmarkError(f"the login hammer exited with status {self.process.returncode}")
        result: dict[str, Any] = json.loads(out)
        return result


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Load:
    """What was measured while the wrong logins ran."""

    me: list[float] = field(default_factory=list)
    signups: list[float] = field(default_factory=list)
    logins: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measured:
    variant: str
    alone: list[float] = field(default_factory=list)
    loads: dict[str, Load] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)


def percentile_ms(latencies: list[float], percent: int) -> float:
    if len(latencies) < 2:
        return float("nan")
    return statistics.quantiles(latencies, n=100, method="inclusive")[percent - 1] * 1000


async def read_me(
    client: httpx2.AsyncClient,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    errors: Counter[str],
) -> list[float]:
    latencies: list[float] = []
    deadline = perf_counter() + seconds

    async def worker() -> None:
        while perf_counter() < deadline:
            started = perf_counter()
            response = await client.get("/users/me", headers=headers)
            latencies.append(perf_counter() - started)
            if response.status_code != 200:
                errors[f"GET /users/me: HTTP {response.status_code}"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def sign_up_one_by_one(
    client: httpx2.AsyncClient, count: int, pause: float, errors: Counter[str]
) -> list[float]:
    latencies: list[float] = []
    for _ in range(count):
        await asyncio.sleep(pause)
        body = {"email": f"bench-{uuid.uuid4().hex[:12]}@example.com", "password": USER_PASSWORD}
        started = perf_counter()
        response = await client.post("/users/signup", json=body)
        latencies.append(perf_counter() - started)
        if response.status_code != 201:
            errors[f"POST /users/signup: HTTP {response.status_code}"] += 1
    return latencies


async def measure(
    variant: str, port: int, server: subprocess.Popen[bytes], args: argparse.Namespace
) -> Measured:
    base_url = f"http://{HOST}:{port}{API_V1_PREFIX}"
    connections = args.concurrency + 2
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    measured = Measured(variant)
    async with httpx2.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        await wait_until_healthy(client, server)
        signup = await client.post(
            "/users/signup", json={"email": USER_EMAIL, "password": USER_PASSWORD}
        )
        token = await client.post(
            "/login/access-token", data={"username": USER_EMAIL, "password": USER_PASSWORD}
        )
        if signup.status_code != 201 or token.status_code != 200:
            raise BenchmarkError(f"seeding failed: {signup.text[:300]} {token.text[:300]}")
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        print(f"  {variant}: GET /users/me alone ...", file=sys.stderr, flush=True)
        await read_me(client, headers, args.concurrency, WARMUP_SECONDS, Counter())
        measured.alone = await read_me(
            client, headers, args.concurrency, args.seconds, measured.errors
        )

        for mode in LOAD_MODES:
            print(
                f"  {variant}: ... with {args.logins} wrong logins ({mode})",
                file=sys.stderr,
                flush=True,
            )
            load = measured.loads[mode] = Load()
            hammer = await Hammer.start(base_url, args.logins, mode)
            try:
                await asyncio.sleep(WARMUP_SECONDS)
                load.me = await read_me(
                    client, headers, args.concurrency, args.seconds, measured.errors
                )
                # After, not during: a sign-up's own hash would compete with GET /users/me, and
                # the p99 to compare with the one alone is that under the logins only.
                load.signups = await sign_up_one_by_one(
                    client, args.signups, SIGNUP_PAUSE_SECONDS, measured.errors
                )
            finally:
                load.logins = await hammer.stop()
            # Let the queue drain before the next phase.
            await asyncio.sleep(WARMUP_SECONDS)
    return measured


def run_variant(variant: str, args: argparse.Namespace, workdir: Path) -> tuple[Measured, str]:
    """Measure one variant on a freshly emptied and migrated database; return what it measured
    and a description of the database server."""
    url, database = throwaway_database(args.database_url, workdir, f"hashing-{variant}")
    env = server_env(url)
    # Pinned, like the settings server.py pins: the app's default, not the caller's environment.
    queue_default = Settings.model_fields["HASH_QUEUE_MAX"].get_default(call_default_factory=True)
    # No throttle (see the module docstring), and no email sender polling the database: nothing
    # here queues an email, and its polls would only add noise.
    env.update(THROTTLE_ENABLED="false", HASH_QUEUE_MAX=str(queue_default), EMAIL_SENDER="false")
    migrate(env)
    port = free_port()
    log_path = workdir / f"server-{variant}.log"
    server = start(variant, port, env, log_path)
    try:
        return asyncio.run(measure(variant, port, server, args)), database
    except BenchmarkError:
        print_log_tail(log_path)
        raise
    finally:
        stop_server(server)


# --- report -----------------------------------------------------------------------------------


def report(results: dict[str, Measured], header: str) -> str:
    def row(m: Measured, mode: str) -> list[str]:
        load = m.loads[mode]
        alone, loaded = percentile_ms(m.alone, 99), percentile_ms(load.me, 99)
        answers = load.logins.get("answers", {})
        seconds = load.logins.get("seconds") or 1.0
        return [
            m.variant,
            mode,
            f"{percentile_ms(m.alone, 50):.1f}",
            f"{alone:.1f}",
            f"{percentile_ms(load.me, 50):.1f}",
            f"{loaded:.1f}",
            f"{loaded / alone:.2f}x",
            f"{statistics.median(load.signups) * 1000:.0f}" if load.signups else "-",
            f"{max(load.signups) * 1000:.0f}" if load.signups else "-",
            ", ".join(f"{s}: {n / seconds:.1f}/s" for s, n in sorted(answers.items())) or "-",
        ]

    columns = [
        "variant",
        "logins",
        "/me p50 alone ms",
        "/me p99 alone ms",
        "/me p50 loaded ms",
        "/me p99 loaded ms",
        "p99 loaded/alone",
        "signup median ms",
        "signup max ms",
        "wrong logins answered",
    ]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for variant in VARIANTS:
        for mode in LOAD_MODES:
            if variant in results and mode in results[variant].loads:
                lines.append("| " + " | ".join(row(results[variant], mode)) + " |")
    if "before" in results:
        lines.append("")
        before = results["before"]
        for variant in (v for v in VARIANTS if v != "before" and v in results):
            for mode in LOAD_MODES:
                b, a = before.loads[mode], results[variant].loads[mode]
                p99 = percentile_ms(a.me, 99) / percentile_ms(b.me, 99)
                signup = max(a.signups) / max(b.signups) if a.signups and b.signups else math.nan
                lines.append(
                    f"{variant}/before, {mode} logins: /me p99 loaded {p99:.2f}x, "
                    f"signup max {signup:.2f}x"
                )
    for result in results.values():
        if result.errors:
            lines.append(f"errors ({result.variant}): {dict(result.errors)}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.hashing",
        description="GET /users/me and sign-up latency while wrong logins flood the hashing pool.",
    )
    parser.add_argument("--database-url", help="throwaway database (default: a SQLite file)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (default: 20)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="GET /users/me in flight (default: 2)"
    )
    parser.add_argument("--logins", type=int, default=16, help="wrong logins in flight (16)")
    parser.add_argument(
        "--signups", type=int, default=5, help="sign-ups timed under the load (default: 5)"
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve_variant(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["hammer"]:
        asyncio.run(hammer(argv[1], int(argv[2]), honour_retry_after=argv[3] == "polite"))
        return 0
    args = parse_args(argv)

    def run(workdir: Path) -> int:
        results: dict[str, Measured] = {}
        database = ""
        for variant in args.variants:
            results[variant], database = run_variant(variant, args, workdir)
        defaults = Settings.model_fields
        shown = " ".join(["python -m tests.benchmarks.hashing", *argv])
        header = (
            f"database: {database} | Python {platform.python_version()} | CPUs: {os.cpu_count()}"
            f" | argon2id t={defaults['ARGON2_TIME_COST'].default}"
            f" m={defaults['ARGON2_MEMORY_COST'].default}"
            f" p={defaults['ARGON2_PARALLELISM'].default} | {args.seconds:g} s per phase,"
            f" GET /users/me x{args.concurrency}, {args.logins} wrong logins | command: {shown}"
        )
        print(report(results, header))
        return 1 if any(result.errors for result in results.values()) else 0

    return run_in_workdir("hashing", run)


if __name__ == "__main__":
    sys.exit(main())
