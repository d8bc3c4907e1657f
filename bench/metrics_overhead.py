"""CPU that the request metrics add per request, in process: `GET /api/v1/users/me` through
httpx2's ASGITransport on two apps built alike but for `METRICS_ENABLED`, interleaved round by
round on one SQLite file, so a machine that slows down for a while slows both alike.

    .venv/bin/python -m bench.metrics_overhead                  # values in memory (one process)
    .venv/bin/python -m bench.metrics_overhead --multiprocess   # as app.serve runs: mmap files

Prints the CPU time (process_time) per request of each, the median over rounds, and the ratio.
Log level WARNING: no per-request log line, so the ratio is over the rest of the request's cost.
On a shared machine the whole-request figures vary by a few percent from round to round, more
than the metrics cost; so it also times the middleware alone around an app that only answers,
and one pool checkout's gauge updates, 100,000 times each: the added cost without the noise.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "metrics-overhead-password"  # noqa: S105 - a throwaway user of a temporary database


async def _token(client: httpx2.AsyncClient) -> str:
    email = "overhead@example.com"
    await client.post("/api/v1/users/signup", json={"email": email, "password": PASSWORD})
    response = await client.post(
        "/api/v1/login/access-token", data={"username": email, "password": PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


async def _cpu_per_request(client: httpx2.AsyncClient, headers: dict[str, str], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        response = await client.get("/api/v1/users/me", headers=headers)
        assert response.status_code == 200, response.text
    return (time.process_time() - started) / n


async def measure(database: Path, rounds: int, per_round: int) -> dict[str, list[float]]:
    from app.core.config import Settings
    from app.main import create_app

    def app(metrics: bool) -> Any:
        return create_app(
            Settings(
                _env_file=None,
                DATABASE_URL=f"sqlite:///{database}",
                LOG_LEVEL="WARNING",
                METRICS_ENABLED=metrics,
                EMAIL_SENDER=False,
                THROTTLE_ENABLED=False,
                ARGON2_TIME_COST=1,
                ARGON2_MEMORY_COST=8192,
                ARGON2_PARALLELISM=1,
            )
        )

    apps = {"metrics on": app(True), "metrics off": app(False)}
    clients = {
        name: httpx2.AsyncClient(transport=httpx2.ASGITransport(app=a), base_url="http://bench")
        for name, a in apps.items()
    }
    headers = {"Authorization": f"Bearer {await _token(clients['metrics on'])}"}
    for client in clients.values():  # warm up: first-request imports and caches
        await _cpu_per_request(client, headers, 50)
    results: dict[str, list[float]] = {name: [] for name in apps}
    for n in range(rounds):
        order = list(apps) if n % 2 == 0 else list(reversed(apps))
        for name in order:
            results[name].append(await _cpu_per_request(clients[name], headers, per_round))
    for name, client in clients.items():
        await client.aclose()
        await apps[name].state.engine.dispose()
    return results


async def _answer(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _discard(_message: Any) -> None:
    pass


async def _nothing() -> dict[str, Any]:
    return {}


async def micro(n: int = 100_000) -> tuple[float, float]:
    """Added CPU of the request middleware, and of one checkout's pool gauges, in microseconds."""
    from app.core.metrics import DB_POOL_IN_USE, RequestMetrics, RequestMetricsMiddleware

    wrapped = RequestMetricsMiddleware(_answer, RequestMetrics())
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    cpu = {}
    for name, app in (("bare", _answer), ("wrapped", wrapped)):
        started = time.process_time()
        for _ in range(n):
            await app(dict(scope), _nothing, _discard)
        cpu[name] = (time.process_time() - started) / n
    started = time.process_time()
    for _ in range(n):
        DB_POOL_IN_USE.inc()
        DB_POOL_IN_USE.dec()
    pool = (time.process_time() - started) / n
    return (cpu["wrapped"] - cpu["bare"]) * 1e6, pool * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per app (default 2000)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--multiprocess", action="store_true", help="prometheus-client's mmap files"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-overhead-") as workdir:
        if args.multiprocess:
            # Before prometheus-client is imported: it picks its storage then.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = workdir
        database = Path(workdir) / "bench.db"
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}"}
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        results = asyncio.run(measure(database, args.rounds, args.requests // args.rounds))
        middleware, pool = asyncio.run(micro())
    on = statistics.median(results["metrics on"]) * 1e6
    off = statistics.median(results["metrics off"]) * 1e6
    mode = "multiprocess (mmap files)" if args.multiprocess else "in memory"
    print(f"GET /api/v1/users/me, {args.requests} requests per app, {mode}")
    print(f"  metrics off: {off:7.1f} us CPU per request (median of {args.rounds} rounds)")
    print(f"  metrics on:  {on:7.1f} us CPU per request")
    print(f"  added:       {on - off:7.1f} us, ratio on/off {on / off:.3f}")
    print(f"  alone: the middleware {middleware:.1f} us, a checkout's pool gauges {pool:.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
