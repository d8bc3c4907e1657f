"""A real PgBouncer in transaction pooling mode, in front of one test database, for the tests.

Started on a free port of 127.0.0.1 from a configuration written for the test, stopped at the
end. Clients log in without a password (`auth_type = trust`, loopback only); PgBouncer logs in to
PostgreSQL as the database URL says. As root (CI), it runs as `nobody`: PgBouncer refuses root.
"""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from tests.benchmarks.server import free_port, stop_server

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
# Fewer server connections than the app instances' pools hold together (2 x 4 in the tests):
# clients' transactions must share them, which is what transaction pooling is for.
SERVER_POOL_SIZE = 3


def executable() -> str | None:
    return shutil.which("pgbouncer")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def write_config(workdir: Path, url: URL, port: int) -> Path:
    server = {
        "host": url.host or HOST,
        "port": str(url.port or 5432),
        "dbname": url.database or "",
        "user": url.username or "postgres",
    }
    if url.password:
        server["password"] = str(url.password)
    users = workdir / "userlist.txt"
    users.write_text(f'"{url.username or "postgres"}" ""\n')
    config = workdir / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"{url.database} = {' '.join(f'{key}={_quote(value)}' for key, value in server.items())}\n"
        "[pgbouncer]\n"
        f"listen_addr = {HOST}\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {users}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL_SIZE}\n"
        "max_client_conn = 100\n"
        # What the app's clients keep open beyond their pools is their business.
        "server_idle_timeout = 60\n"
    )
    return config


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((HOST, port)) == 0


@contextmanager
def pgbouncer(url: URL, workdir: Path) -> Iterator[URL]:
    """PgBouncer in transaction mode in front of `url`'s database; yields the URL through it."""
    binary = executable()
    assert binary is not None, "pgbouncer is not installed (apt-get install -y pgbouncer)"
    workdir.mkdir(parents=True, exist_ok=True)
    # Readable by `nobody`, which PgBouncer becomes when started as root.
    workdir.chmod(0o755)
    port = free_port()
    config = write_config(workdir, url, port)
    for path in (config, workdir / "userlist.txt"):
        path.chmod(0o644)
    command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(config)]
    log_path = workdir / "pgbouncer.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - the installed pgbouncer, our own config
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield url.set(host=HOST, port=port, password=None)
    finally:
        stop_server(process)
