"""Two real app servers (`app.serve`, as the Dockerfile starts them) on different ports, sharing
one PostgreSQL database (straight, or through PgBouncer in transaction mode) and one Redis, each
with its email sender on, delivering to one real SMTP server."""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tests.benchmarks.server import free_port, start_server, stop_server
from tests.core import outage

START_WITHIN = 60.0  # two processes starting at once on a busy two-core machine
LOGIN_FAILURES_PER_ACCOUNT = 3


@dataclass(frozen=True)
class Instance:
    name: str
    client: httpx2.AsyncClient
    log_path: Path

    def log_events(self) -> list[dict[str, Any]]:
        """The server's JSON log lines so far (anything else it printed is skipped)."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events


def instance_env(
    database_url: str, *, pgbouncer: bool, redis_url: str, smtp_port: int
) -> dict[str, str]:
    """Both instances' environment: the same database, Redis, SMTP server and secret."""
    return outage.server_env(
        database_url,
        DB_PGBOUNCER_TRANSACTION_MODE=str(pgbouncer).lower(),
        DB_POOL_SIZE="4",
        # Generous: the machine is shared, and these tests are about sharing, not timeouts.
        DB_CONNECT_TIMEOUT_SECONDS="5",
        DB_POOL_TIMEOUT_SECONDS="10",
        DB_STATEMENT_TIMEOUT_SECONDS="10",
        # A secret of this pair only: its throttle keys (keyed hashes) are its own in Redis.
        SECRET_KEY=secrets.token_urlsafe(32),
        REDIS_URL=redis_url,
        THROTTLE_FAIL_OPEN="false",  # no Redis must not pass for a shared limit
        THROTTLE_LOGIN_FAILURES_PER_ACCOUNT=f"{LOGIN_FAILURES_PER_ACCOUNT}/minute",
        THROTTLE_SIGNUP_PER_ADDRESS="1000/hour",
        THROTTLE_RECOVERY_PER_ADDRESS="1000/hour",
        # Logins of the concurrent load wait for a hashing thread rather than get 503s.
        HASH_QUEUE_MAX="100",
        EMAIL_SENDER="true",
        EMAIL_POLL_SECONDS="0.05",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_TLS="false",
        SMTP_TIMEOUT_SECONDS="5",
        EMAILS_FROM_EMAIL="noreply@example.com",
        FIRST_SUPERUSER="scale-admin@example.com",
        FIRST_SUPERUSER_PASSWORD="scale-admin-password",
    )


@asynccontextmanager
async def two_instances(
    env: dict[str, str], workdir: Path
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances A and B, started at the same time (as a deploy would), stopped at the end."""
    servers = []
    try:
        async with AsyncExitStack() as stack:
            instances = []
            for name in ("a", "b"):
                port = free_port()
                log_path = workdir / f"{name}.log"
                servers.append(start_server(port, env, log_path))
                client = httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30)
                await stack.enter_async_context(client)
                instances.append(Instance(name, client, log_path))
            await asyncio.gather(*(_ready(instance) for instance in instances))
            a, b = instances
            yield a, b
            for instance, server in zip(instances, servers, strict=True):
                if server.poll() is not None:
                    output = instance.log_path.read_text()
                    raise AssertionError(f"{instance.name} exited ({server.returncode}):\n{output}")
    finally:
        for server in servers:
            stop_server(server)


async def _ready(instance: Instance) -> None:
    # Ready: its database and Redis answer.
    try:
        await outage.eventually(instance.client, "/utils/ready/", 200, within=START_WITHIN)
    except TimeoutError:
        output = instance.log_path.read_text()
        raise AssertionError(f"{instance.name} was not ready:\n{output}") from None


def failures_logged(instance: Instance) -> list[dict[str, Any]]:
    """What the instance logged as a failure: an error (an unexpected exception) or a 5xx
    answer. A healthy run logs none."""
    return [
        event
        for event in instance.log_events()
        if event.get("level") in ("error", "critical")
        or (event.get("event") == "request" and event.get("status", 0) >= 500)
    ]
