"""A real server with two worker processes (`python -m app.serve --workers 2`, JSON logs): one
scrape counts every request, whichever worker served it and whichever answers the scrape; a
previous run's metrics are not carried over; and every line the server writes, the
supervisor's and uvicorn's included, is JSON."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.benchmarks.server import (
    HOST,
    free_port,
    migrate,
    server_env,
    start_server,
    stop_server,
    wait_until_healthy,
)
from tests.core.metrics import parse, total

pytestmark = pytest.mark.anyio

LIVE = "/api/v1/utils/live/"
ROUTE = {"method": "GET", "route": LIVE, "status": "200"}
BATCH = 20
MAX_REQUESTS = 400


def _leave_stale_counts(directory: Path) -> None:
    """What a previous run of the server leaves: 1000 requests counted in a dead process's file."""
    code = (
        "from prometheus_client import Counter\n"
        "Counter('http_requests', '', ['method', 'route', 'status'])"
        f".labels('GET', '{LIVE}', '200').inc(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603
    assert list(directory.glob("counter_*.db"))


def _count_per_worker(directory: Path, scratch: Path) -> dict[str, float]:
    """Requests to LIVE counted by each worker so far, read from its own file."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for path in directory.glob("counter_*.db"):
        alone = scratch / path.stem
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        samples = parse(generate_latest(registry).decode())
        counts[path.stem] = total(samples, "http_requests_total", **ROUTE)
    return counts


async def test_two_workers_one_scrape_counts_every_request_and_every_line_is_json(
    tmp_path: Path,
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    _leave_stale_counts(metrics_dir)
    env = server_env(make_url(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    env.update(LOG_JSON="true", LOG_LEVEL="INFO", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    env.pop("WEB_CONCURRENCY", None)
    migrate(env)
    port = free_port()
    log_path = tmp_path / "server.log"
    server = start_server(port, env, log_path, "--workers", "2", "--log-level", "info")
    sent = 0
    try:
        base = f"http://{HOST}:{port}"
        async with httpx2.AsyncClient(base_url=f"{base}/api/v1") as client:
            await wait_until_healthy(client, server)
        # A new connection per request, so the kernel hands them to either worker; on until
        # both have served some (a few batches at most), counting what was sent.
        limits = httpx2.Limits(max_keepalive_connections=0)
        async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
            while sent < MAX_REQUESTS:
                for _ in range(BATCH):
                    assert (await client.get(LIVE)).status_code == 200
                sent += BATCH
                per_worker = _count_per_worker(metrics_dir, tmp_path)
                if len(per_worker) == 2 and all(per_worker.values()):
                    break
            scrape = await client.get("/metrics")
        assert scrape.status_code == 200
        samples = parse(scrape.text)
    finally:
        stop_server(server)
    log = log_path.read_text()

    # The stale file was removed at start; both workers' counts are summed.
    assert len(per_worker) == 2, per_worker
    assert all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == sent
    assert total(samples, "http_requests_total", **ROUTE) == sent
    assert total(samples, "http_request_duration_seconds_count", **ROUTE) == sent
    # Gauges are summed over the live workers: the scrape is the one request in flight.
    assert total(samples, "http_requests_in_flight") == 1

    lines = [line for line in log.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a line of the server's output is not JSON: {line!r}\n{log}")
    events = [record["event"] for record in records]
    assert any(event.startswith("Started parent process") for event in events), log
    assert sum(event.startswith("Started server process") for event in events) == 2, log
    assert events.count("Application shutdown complete.") == 2, log
    assert any(event.startswith("Stopping parent process") for event in events), log
    assert events.count("request") >= sent


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _matching(directory: Path, pattern: str) -> list[Path]:
    return list(directory.glob(pattern))


async def test_one_process_removes_its_metrics_dir_and_a_killed_servers_at_start(
    tmp_path: Path,
) -> None:
    # A killed server's directory: named by its parent's pid, which no longer runs.
    orphan = tmp_path / f"app-metrics-{_dead_pid()}-x1y2"
    orphan.mkdir()
    (orphan / "counter_1.db").write_bytes(b"")
    env = server_env(make_url(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("WEB_CONCURRENCY", None)
    env["TMPDIR"] = str(tmp_path)  # where the server makes its directory
    migrate(env)
    port = free_port()
    server = start_server(port, env, tmp_path / "server.log")
    try:
        async with httpx2.AsyncClient(base_url=f"http://{HOST}:{port}/api/v1") as client:
            await wait_until_healthy(client, server)
        assert not orphan.exists()
        (own,) = _matching(tmp_path, f"app-metrics-{server.pid}-*")
        assert _matching(own, "counter_*.db")  # the one process writes there
        server.terminate()
        assert server.wait(timeout=20) == -signal.SIGTERM  # uvicorn's way: exit by the signal
    finally:
        stop_server(server)
    assert not own.exists()
