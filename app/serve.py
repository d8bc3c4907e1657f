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

The port: `--port`, else uvicorn's `UVICORN_PORT`, else `PORT` (what platforms and compose.yaml
set, and what the image's exec-form CMD cannot expand), else uvicorn's 8000.
"""

import asyncio
import importlib
import os
import socket

from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import Server
from uvicorn.supervisors import multiprocess

# The module, not the `uvicorn.main` function that `uvicorn/__init__.py` puts in its place.
_cli = importlib.import_module("uvicorn.main")


class _Supervisor(multiprocess.Multiprocess):
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


_cli.Multiprocess = _Supervisor  # type: ignore[attr-defined]
_cli.Server = _Server  # type: ignore[attr-defined]
multiprocess.Server = _Server  # type: ignore[attr-defined]


def run(args: list[str] | None = None, *, prog_name: str | None = None) -> None:
    """uvicorn's command line with these arguments (default: the process's); exits."""
    _port_from_env()
    _cli.main.main(args=args, prog_name=prog_name)


if __name__ == "__main__":
    run()
