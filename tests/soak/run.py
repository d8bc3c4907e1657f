"""`make soak`: a bounded mixed load on a real server, then a check that the database holds
exactly what the clients were told.

It empties a throwaway PostgreSQL database (its name must contain "soak", "bench" or "test"; it
is created when missing), migrates it, starts `uvicorn app.main:create_app --factory` with
several worker processes as production would, and lets C concurrent clients work for D seconds.
Two clients share each account (two sessions), so their edits really collide:

- sign-ups and logins (a fresh account now and then, each client logging in at the start);
- `POST /items/` with an `Idempotency-Key`; some are sent twice at once (a client retrying
  before the first answer), some re-sent with another body (must be 422);
- `GET /items/` pages and `GET /items/{id}`;
- `PATCH` and `DELETE` with `If-Match` from a fresh `GET`; some deliberately with a stale ETag
  (must be 412). A request that fails without an answer is retried with the same key, as a real
  client would.

Then `tests/soak/ledger.py` compares every acknowledged answer with the database. The report
lists the requests, the answers by status, p50/p99 latency per kind of request, and the server's
memory (RSS of all its processes) after the setup and at the end. Exit status 1 on any broken
promise, any 500 or any request left without an answer.

    make soak                                  # 60 s, 32 clients, 2 workers, PostgreSQL `soak`
    .venv/bin/python -m tests.soak.run --duration 30 --clients 16 \\
        --database-url postgresql://postgres@127.0.0.1:5432/test_soak
"""

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import httpx2

from app.core.config import API_V1_PREFIX
from tests.benchmarks.server import (
    HOST,
    BenchmarkError,
    free_port,
    migrate,
    print_log_tail,
    run_in_workdir,
    start_server,
    stop_server,
    throwaway_database,
    throwaway_url,
    wait_until_healthy,
)
from tests.soak.ledger import Ledger, State, Verdict, verify
from tests.soak.server import ensure_database, server_rss_kib, soak_env

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/soak"
PASSWORD = "soak-password-0123"  # a throwaway account on a throwaway database
REQUEST_TIMEOUT = 30.0
RETRIES = 4


@dataclass
class Stats:
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    unanswered: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.unanswered.values())


@dataclass
class Account:
    email: str
    id: str = ""


@dataclass
class Soak:
    client: httpx2.AsyncClient
    ledger: Ledger
    stats: Stats
    deadline: float
    accounts: list[Account] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def call(self, op: str, method: str, path: str, **kwargs: Any) -> httpx2.Response | None:
        started = perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx2.HTTPError as error:
            self.stats.unanswered[(op, type(error).__name__)] += 1
            return None
        self.stats.latencies[op].append(perf_counter() - started)
        self.stats.statuses[(op, response.status_code)] += 1
        return response

    async def call_with_retries(
        self, op: str, method: str, path: str, **kwargs: Any
    ) -> httpx2.Response | None:
        """Retry what may not have happened: no answer, or a 503 (with its Retry-After)."""
        response = None
        for _ in range(RETRIES):
            response = await self.call(op, method, path, **kwargs)
            if response is not None and response.status_code != 503:
                return response
            wait = 0.5
            if response is not None:
                wait = min(float(response.headers.get("Retry-After", "1")), 2.0)
            await asyncio.sleep(wait)
        return response

    async def sign_up(self, email: str) -> Account:
        response = await self.call_with_retries(
            "sign up",
            "POST",
            "/users/signup",
            json={"email": email, "password": PASSWORD, "full_name": "Soak Client"},
        )
        if response is None or response.status_code != 201:
            raise BenchmarkError(f"sign up {email}: {_describe(response)}")
        account = Account(email, response.json()["id"])
        self.accounts.append(account)
        return account

    async def log_in(self, email: str) -> dict[str, str]:
        response = await self.call_with_retries(
            "log in",
            "POST",
            "/login/access-token",
            data={"username": email, "password": PASSWORD},
        )
        if response is None or response.status_code != 200:
            raise BenchmarkError(f"log in {email}: {_describe(response)}")
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _describe(response: httpx2.Response | None) -> str:
    if response is None:
        return "no answer"
    return f"HTTP {response.status_code} {response.text[:300]}"


class Client:
    """One simulated client: one session of `owner`, working until the deadline."""

    def __init__(self, soak: Soak, owner: str, headers: dict[str, str], rng: random.Random):
        self.soak, self.owner, self.headers, self.rng = soak, owner, headers, rng
        self.serial = 0

    async def run(self) -> None:
        actions = (
            (0.02, self.new_account),
            (0.27, self.create),
            (0.42, self.list_page),
            (0.62, self.read),
            (0.88, self.update),
            (1.00, self.delete),
        )
        while perf_counter() < self.soak.deadline:
            roll = self.rng.random()
            action = next(action for limit, action in actions if roll < limit)
            await action()

    def some_item(self) -> str | None:
        live = self.soak.ledger.live_ids(self.owner)
        return self.rng.choice(live) if live else None

    def body(self) -> dict[str, str]:
        self.serial += 1
        return {
            "title": f"{self.owner.split('@')[0]}-{self.serial}-{self.rng.randrange(10**6)}",
            "description": self.rng.choice(["", "soak", f"note {self.rng.random():.6f}"]),
        }

    async def new_account(self) -> None:
        email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
        await self.soak.sign_up(email)
        headers = await self.soak.log_in(email)
        await Client(self.soak, email, headers, self.rng).create()

    async def create(self) -> None:
        key, body = uuid.uuid4().hex, self.body()
        headers = {**self.headers, "Idempotency-Key": key}
        post = self.soak.call_with_retries(
            "POST /items/", "POST", "/items/", json=body, headers=headers
        )
        if self.rng.random() < 0.1:
            # A client that retries before the first answer arrived: one item, one answer twice.
            first, second = await asyncio.gather(
                post,
                self.soak.call_with_retries(
                    "POST /items/ (same key, at once)",
                    "POST",
                    "/items/",
                    json=body,
                    headers=headers,
                ),
            )
            answers = [r for r in (first, second) if r is not None and r.status_code == 201]
            if len({r.json()["id"] for r in answers}) > 1:
                self.soak.problems.append(f"one Idempotency-Key created two items: {key}")
            if len(answers) == 2:
                self.soak.ledger.idempotent_replays += 1
            response = answers[0] if answers else first
        else:
            response = await post
        if response is None or response.status_code != 201:
            self.soak.ledger.owners_with_uncertain_creates.add(self.owner)
            return
        item = response.json()
        etag = response.headers.get("ETag")
        if etag is None:
            self.soak.problems.append("POST /items/ answered 201 without an ETag")
            return
        self.soak.ledger.created(
            self.owner, State(etag, body["title"], body["description"]), item["id"]
        )
        if self.rng.random() < 0.05:
            other = await self.soak.call(
                "POST /items/ (same key, other body)",
                "POST",
                "/items/",
                json=self.body(),
                headers=headers,
            )
            if other is not None and other.status_code != 422:
                self.soak.problems.append(
                    f"same Idempotency-Key with another body answered {other.status_code}, not 422"
                )
            elif other is not None:
                self.soak.ledger.idempotency_conflicts += 1

    async def list_page(self) -> None:
        skip = self.rng.choice([0, 0, 20, 40])
        await self.soak.call(
            "GET /items/", "GET", f"/items/?skip={skip}&limit=20", headers=self.headers
        )

    async def read(self) -> tuple[str, str] | None:
        """GET a random item of this account: (id, ETag), or None when there is none to read."""
        item_id = self.some_item()
        if item_id is None:
            return None
        response = await self.soak.call(
            "GET /items/{id}", "GET", f"/items/{item_id}", headers=self.headers
        )
        if response is None or response.status_code != 200:
            return None
        etag = response.headers.get("ETag")
        if etag is None:
            self.soak.problems.append("GET /items/{id} answered 200 without an ETag")
            return None
        return item_id, etag

    def stale_etag(self, item_id: str) -> str | None:
        """An ETag of this item that a write is known to have replaced."""
        record = self.soak.ledger.items[item_id]
        stale = list(record.successors)
        return self.rng.choice(stale) if stale else None

    async def update(self) -> None:
        found = await self.read()
        if found is None:
            return
        item_id, etag = found
        if self.rng.random() < 0.1 and (stale := self.stale_etag(item_id)):
            etag = stale
        body = self.body()
        response = await self.soak.call(
            "PATCH /items/{id}",
            "PATCH",
            f"/items/{item_id}",
            json=body,
            headers={**self.headers, "If-Match": etag},
        )
        ledger = self.soak.ledger
        if response is None or response.status_code >= 500:
            ledger.uncertain(item_id)
        elif response.status_code == 200:
            new_etag = response.headers.get("ETag")
            if new_etag is None:
                self.soak.problems.append("PATCH /items/{id} answered 200 without an ETag")
                ledger.uncertain(item_id)
                return
            ledger.updated(
                item_id, based_on=etag, state=State(new_etag, body["title"], body["description"])
            )
        elif response.status_code == 412:
            ledger.stale_writes_refused += 1
        elif response.status_code != 404:
            self.soak.problems.append(f"PATCH answered {_describe(response)}")

    async def delete(self) -> None:
        found = await self.read()
        if found is None:
            return
        item_id, etag = found
        response = await self.soak.call(
            "DELETE /items/{id}",
            "DELETE",
            f"/items/{item_id}",
            headers={**self.headers, "If-Match": etag},
        )
        if response is None or response.status_code >= 500:
            self.soak.ledger.uncertain(item_id)
        elif response.status_code == 200:
            self.soak.ledger.deleted(item_id)
        elif response.status_code == 412:
            self.soak.ledger.stale_writes_refused += 1
        elif response.status_code != 404:
            self.soak.problems.append(f"DELETE answered {_describe(response)}")


# --- the run ----------------------------------------------------------------------------------


async def soak(args: argparse.Namespace, port: int, server: Any) -> tuple[Soak, Verdict, int, int]:
    limits = httpx2.Limits(
        max_connections=args.clients * 2, max_keepalive_connections=args.clients * 2
    )
    async with httpx2.AsyncClient(
        base_url=f"http://{HOST}:{port}{API_V1_PREFIX}", limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        await wait_until_healthy(client, server)
        state = Soak(client, Ledger(), Stats(), deadline=0.0)
        rng = random.Random(args.seed)
        owners = [f"soak-owner-{n}@example.com" for n in range((args.clients + 1) // 2)]
        for email in owners:
            await state.sign_up(email)
        clients = []
        for number in range(args.clients):
            owner = owners[number // 2]
            headers = await state.log_in(owner)
            clients.append(Client(state, owner, headers, random.Random(rng.random())))
        rss_start = server_rss_kib(server.pid)
        state.deadline = perf_counter() + args.duration
        async with asyncio.TaskGroup() as group:
            for each in clients:
                group.create_task(each.run())
        rss_end = server_rss_kib(server.pid)
        owner_ids = {account.email: account.id for account in state.accounts}
        verdict = await verify(state.ledger, args.url, owner_ids)
        return state, verdict, rss_start, rss_end


def report(args: argparse.Namespace, state: Soak, verdict: Verdict, rss: tuple[int, int]) -> str:
    stats, ledger = state.stats, state.ledger
    lines = [
        f"soak: {args.duration} s, {args.clients} clients, {args.workers} workers | "
        f"{args.url.render_as_string(hide_password=True)} | Python {platform.python_version()} | "
        f"CPUs: {os.cpu_count()}",
        f"requests: {stats.requests}",
        "",
        f"{'request':38} {'n':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses",
    ]
    for op, latencies in sorted(stats.latencies.items()):
        cuts = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else latencies * 99
        )
        statuses = ", ".join(
            f"{status} x{n}" for (name, status), n in sorted(stats.statuses.items()) if name == op
        )
        p50, p99 = cuts[49] * 1000, cuts[98] * 1000
        lines.append(f"{op:38} {len(latencies):>7} {p50:>8.1f} {p99:>8.1f}  {statuses}")
    by_status = Counter[int]()
    for (_, status), n in stats.statuses.items():
        by_status[status] += n
    lines += [
        "",
        "answers by status: " + ", ".join(f"{s} x{n}" for s, n in sorted(by_status.items())),
        "no answer: "
        + (", ".join(f"{op} {kind} x{n}" for (op, kind), n in stats.unanswered.items()) or "none"),
        f"server RSS (all processes): {rss[0] / 1024:.1f} MiB after setup, "
        f"{rss[1] / 1024:.1f} MiB at the end",
        f"items checked against the database: {verdict.checked_items} "
        + "("
        + ", ".join(f"{k}: {n}" for k, n in verdict.counts.items())
        + ")",
        f"stale writes refused (412): {ledger.stale_writes_refused}; idempotent replays: "
        f"{ledger.idempotent_replays}; same key, other body (422): {ledger.idempotency_conflicts}",
    ]
    problems = Counter(state.problems + verdict.problems)
    lines.append(f"broken promises: {problems.total()}")
    lines += [f"  - {problem} (x{n})" for problem, n in problems.most_common(50)]
    return "\n".join(lines)


def run(args: argparse.Namespace, workdir: Path) -> int:
    args.url = throwaway_url(args.database_url)
    asyncio.run(ensure_database(args.url))
    url, _ = throwaway_database(args.database_url, workdir, "soak")
    env = soak_env(url)
    migrate(env)
    port = free_port()
    log_path = workdir / "server.log"
    server = start_server(port, env, log_path, "--workers", str(args.workers))
    try:
        state, verdict, rss_start, rss_end = asyncio.run(soak(args, port, server))
    except BaseException:
        print_log_tail(log_path)
        raise
    finally:
        stop_server(server)
    print(report(args, state, verdict, (rss_start, rss_end)))
    failed = (
        state.problems
        or verdict.problems
        or state.stats.unanswered
        or any(status >= 500 and status != 503 for _, status in state.stats.statuses)
    )
    if failed:
        print_log_tail(log_path)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak.run",
        description="Soak a real server (see the module docstring).",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SOAK_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help=f"throwaway database to empty and use (default: {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default: 60)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: 32)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default: 2)")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 3600 and 2 <= args.clients <= 512 and 1 <= args.workers <= 16):
        parser.error("--duration 1..3600, --clients 2..512, --workers 1..16")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_in_workdir("soak", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
