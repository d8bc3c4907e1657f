"""`python -m app.serve [uvicorn's options]`: uvicorn's own command line (every option, and the
`UVICORN_*` and `WEB_CONCURRENCY` variables), changed in how it stops, so that a SIGTERM loses
no request: in flight, it is answered; arriving after, its connection is refused.

Three gaps of uvicorn 0.54, found by tests/core/test_shutdown.py (with plain uvicorn and
`--workers 2`, 5 to 8 writes of the ~70 sent after SIGTERM were reset unanswered):

- The parent process binds the socket and keeps its copy open until it exits. The workers close
  theirs when they start shutting down, but the kernel goes on accepting connections for the
  parent's copy; nobody serves them, and they are reset when the parent exits. Here the parent
  closes its copy before it signals the workers.
- A worker closing its listening socket resets the connections the kernel had already accepted
  for it (its backlog). Here each worker first takes those connections, then closes the socket
  (nothing can be queued in between), and serves them.
- A worker closes at once every connection with no request in progress, also one accepted a
  moment ago whose request is on its way. `app.core.protocol` answers those (`--http`).

The workers are started with multiprocessing's spawn, which imports this module again in each of
them (as `__mp_main__`), so the worker-side change applies there too.

Three more changes:

- Metrics (app.core.metrics): every start gets an empty `PROMETHEUS_MULTIPROC_DIR` (the one set,
  emptied, or a new temporary one, removed at exit), where each worker keeps its values and a
  scrape reads them all; a worker that dies or is replaced has its gauges dropped.
- Logs: uvicorn's own lines, the supervisor's in the parent process too, go through the app's
  structlog pipeline (app.core.logging), so with JSON logs every line of the output is JSON.
- The port: `--port`, else uvicorn's `UVICORN_PORT`, else `PORT` (what platforms and compose.yaml
  set, and what the image's exec-form CMD cannot expand), else uvicorn's 8000.
"""

import asyncio
import importlib
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.server import Server
from uvicorn.supervisors import multiprocess

# The module, not the `uvicorn.main` function that `uvicorn/__init__.py` puts in its place.
_cli = importlib.import_module("uvicorn.main")


class _Supervisor(multiprocess.Multiprocess):
    def keep_subprocess_alive(self) -> None:
        self._forgetting_replaced(super().keep_subprocess_alive)

    def handle_signals(self) -> None:
        # SIGHUP restarts every worker, SIGTTOU stops one.
        self._forgetting_replaced(super().handle_signals)

    def _forgetting_replaced(self, step: Callable[[], None]) -> None:
        before = {process.pid for process in self.processes}
        step()
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                _drop_worker_gauges(pid)

    def terminate_all(self) -> None:
        # Called once, when the whole server stops (restarts replace workers one by one).
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def run(self) -> None:
        super().run()
        # uvicorn stops when a worker fails to start (refused settings, say), but exits 0.
        if any(process.exitcode == STARTUP_FAILURE for process in self.processes):
            raise SystemExit(STARTUP_FAILURE)


class _Server(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        queued: list[socket.socket] = []
        for server in self.servers:
            for listener in server.sockets:
                queued += _accept_queued(listener.dup())
            server.close()  # right after the last accept: nothing more is queued, or reset
        loop = asyncio.get_running_loop()
        for connection in queued:
            await loop.connect_accepted_socket(
                lambda: config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=self.server_state, app_state=self.lifespan.state
                ),
                connection,
                ssl=config.ssl,
            )
        # Closes what is left, and asks every connection, these too, to finish and close.
        await super().shutdown(sockets)


def _accept_queued(listener: socket.socket) -> list[socket.socket]:
    accepted: list[socket.socket] = []
    with listener:
        listener.setblocking(False)
        while True:
            try:
                connection, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            connection.setblocking(False)
            accepted.append(connection)


def _port_from_env() -> None:
    port = os.environ.get("PORT")
    if not port:
        return
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise SystemExit(f"PORT must be a port number from 1 to 65535, not {port!r}")
    # click's precedence does the rest: --port on the command line still wins over it.
    os.environ.setdefault("UVICORN_PORT", port)


def _drop_worker_gauges(pid: int) -> None:
    # Imported here, after the directory is set: prometheus-client picks its kind of storage
    # when first imported.
    from prometheus_client import multiprocess as prometheus_multiprocess

    prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _fresh_metrics_dir() -> Path | None:
    """Empty the configured metrics directory, or make one; returns the one to remove at exit."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        # A previous run's files would be added to this run's counts.
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    _remove_orphaned_metrics_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)  # inherited by every worker
    # A single process exits the way uvicorn does, by re-raising the SIGTERM it shut down on,
    # which skips `finally`: remove the directory on the way out, then die by the signal.
    previous = signal.getsignal(signal.SIGTERM)

    def remove_and_exit(signum: int, frame: FrameType | None) -> None:
        shutil.rmtree(path, ignore_errors=True)
        signal.signal(signum, previous)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, remove_and_exit)
    return path


_TEMP_PREFIX = "app-metrics-"


def _remove_orphaned_metrics_dirs() -> None:
    """The temporary directories of servers that were killed (SIGKILL skips every cleanup)."""
    for orphan in Path(tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*-*"):
        pid = orphan.name.removeprefix(_TEMP_PREFIX).partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(orphan, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


_uvicorn_configure_logging = Config.configure_logging


def _configure_logging(config: Config) -> None:
    _uvicorn_configure_logging(config)  # its levels (--log-level) and access log switch stay
    if multiprocessing.parent_process() is not None:
        # A worker: create_app sets up logging before its first line. Not here, before the
        # worker starts answering the supervisor's health checks: importing the app's settings
        # at that point delayed the first answer past uvicorn's 5 s on a busy machine, and the
        # supervisor killed the worker as hung.
        return
    # Imported here, not at the top: workers import this module too (see above).
    from app.core.config import get_settings
    from app.core.logging import setup_logging

    setup_logging(get_settings())


Config.configure_logging = _configure_logging  # type: ignore[method-assign, assignment]
_cli.Multiprocess = _Supervisor  # type: ignore[attr-defined]
_cli.Server = _Server  # type: ignore[attr-defined]
multiprocess.Server = _Server  # type: ignore[attr-defined]


def run(args: list[str] | None = None, *, prog_name: str | None = None) -> None:
    """uvicorn's command line with these arguments (default: the process's); exits."""
    _port_from_env()
    created = _fresh_metrics_dir()
    try:
        _cli.main.main(args=args, prog_name=prog_name)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


if __name__ == "__main__":
    run()
