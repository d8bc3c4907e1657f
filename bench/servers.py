"""The servers the benchmark drives: ours as production starts it, and the references.

Ours: `python -m app serve` (the Dockerfile's command) with uvloop, the bounded httptools
protocol, ENVIRONMENT=production (a random SECRET_KEY, so the production refusals pass), JSON
logs at INFO into a log file, and MALLOC_ARENA_MAX=2 as in the image. The references run under
plain uvicorn with uvloop and httptools, the same worker count and the same environment.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx2
from sqlalchemy.engine import URL

from tests.benchmarks.server import (
    HOST,
    ROOT,
    BenchmarkError,
    Server,
    free_port,
    print_log_tail,
    server_env,
    start_server,
    stop_server,
)

STARTUP_TIMEOUT = 60.0
HEALTH_PATH = "/api/v1/utils/health-check/"


def production_env(url: URL) -> dict[str, str]:
    """Our server's environment: production, except on SQLite (which production refuses)."""
    env = server_env(url)  # the settings that change a request's cost, at their defaults
    env.update(
        ENVIRONMENT="staging" if url.get_backend_name() == "sqlite" else "production",
        SECRET_KEY=secrets.token_urlsafe(32),
        FIRST_SUPERUSER_PASSWORD=secrets.token_urlsafe(16),
        LOG_LEVEL="INFO",
        LOG_JSON="true",
        # A full run is longer than the default 15 minutes; the tokens are taken once.
        ACCESS_TOKEN_EXPIRE_MINUTES="240",  # noqa: S106 - a lifetime
        MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"),
        REDIS_URL="",
    )
    return env


@dataclass
class Target:
    """One server under test."""

    name: str
    port: int
    process: Server
    log_path: Path
    ready_path: str
    realm: str = ""
    """Prefix of its users' tokens and ids files: "template:" for the template's own."""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def pooled(env: dict[str, str], workers: int) -> dict[str, str]:
    """`env` with each worker's pool a `workers`-th of the default: N workers hold the same
    connections as one. PostgreSQL's `max_connections` (100 by default) is shared by the three
    servers of a run, and by anyone else on the machine; two workers each at the default, plus
    the ceiling's, plus the template's, ask for more than that under load."""
    if workers == 1:
        return env
    return {
        **env,
        "DB_POOL_SIZE": str(max(1, int(env["DB_POOL_SIZE"]) // workers)),
        "DB_MAX_OVERFLOW": str(max(0, int(env["DB_MAX_OVERFLOW"]) // workers)),
    }


def start_ours(env: dict[str, str], workdir: Path, workers: int) -> Target:
    port = free_port()
    log = workdir / f"ours-w{workers}.log"
    extra = ("--loop", "uvloop", "--workers", str(workers))
    process = start_server(port, pooled(env, workers), log, *extra)
    return Target("ours", port, process, log, HEALTH_PATH)


def start_uvicorn(
    name: str,
    app: str,
    env: dict[str, str],
    workdir: Path,
    workers: int,
    ready_path: str,
    cwd: Path = ROOT,
    python: str = sys.executable,
    realm: str = "",
) -> Target:
    """A reference under plain uvicorn (uvloop, httptools), same workers."""
    port = free_port()
    log_path = workdir / f"{name}-w{workers}.log"
    command = [
        python,
        "-m",
        "uvicorn",
        app,
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if app.endswith(":create_app"):
        command.insert(4, "--factory")
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - an interpreter and arguments we chose
            command,
            cwd=cwd,
            env=pooled(env, workers) if "DB_POOL_SIZE" in env else env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Target(name, port, process, log_path, ready_path, realm)


def wait_ready(target: Target) -> None:
    """Until `ready_path` answers anything but a 5xx (the references have no health check)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx2.Client(base_url=target.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if target.process.poll() is not None:
                print_log_tail(target.log_path)
                raise BenchmarkError(f"{target.name} exited with {target.process.returncode}")
            try:
                if client.get(target.ready_path).status_code < 500:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
    print_log_tail(target.log_path)
    raise BenchmarkError(f"{target.name} did not answer within {STARTUP_TIMEOUT:.0f} s")


def stop(target: Target) -> None:
    stop_server(target.process)


def worker_pids(pid: int) -> list[int]:
    """The processes that serve requests: uvicorn's spawned workers, or the server itself."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), ""
        )
        if parent == str(pid) and b"spawn_main" in cmdline:
            workers.append(int(entry.name))
    return sorted(workers) or [pid]


def rss_kib(pid: int) -> int:
    """VmRSS of one process (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "")
    return int(line.split()[1]) if line else 0


_STATUS = re.compile(r'"status": ([45]\d\d)\b')


def refusals(log_path: Path) -> Counter[str]:
    """Our JSON request log's answers of 400 and above, by status and route (logins apart:
    their 503s are the hashing queue at work)."""
    found: Counter[str] = Counter()
    with log_path.open(errors="replace") as log:
        for line in log:
            if _STATUS.search(line) is None:  # most lines: skip the JSON parsing
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            route = str(entry.get("route") or entry.get("path"))
            if "login" not in route:
                found[f"{entry.get('status')} {entry.get('method', '')} {route}"] += 1
    return found
