"""`python -m app.serve` takes its port from PORT, after `--port` and uvicorn's UVICORN_PORT
(the image's CMD names none: an exec-form CMD cannot expand $PORT)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from app.core.config import API_V1_PREFIX
from tests.benchmarks.server import HOST, free_port, stop_server
from tests.deploy.dockerfile import ROOT

STARTUP_SECONDS = 60
COMMAND = [sys.executable, "-m", "app.serve", "app.main:create_app", "--factory", "--host", HOST]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    # A database that need not exist: liveness asks none.
    env.update(
        PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{tmp_path}/app.db", EMAIL_SENDER="false"
    )
    env.update(values)
    return env


def _serves_on(command: list[str], env: dict[str, str], cwd: Path) -> int:
    """The port of the candidates in env/command on which the server answers its liveness."""
    candidates = {int(v) for k, v in env.items() if k.endswith("PORT")}
    if "--port" in command:
        candidates.add(int(command[command.index("--port") + 1]))
    process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
        command,
        cwd=cwd,  # no .env here
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server stopped"
            for port in candidates:
                try:
                    httpx2.get(f"http://{HOST}:{port}{API_V1_PREFIX}/utils/live/", timeout=1)
                except httpx2.TransportError:
                    continue
                return port
            time.sleep(0.2)
        raise AssertionError("it answered on none of the ports")
    finally:
        stop_server(process)


def test_port_then_uvicorn_port_then_the_command_line(tmp_path: Path) -> None:
    port, uvicorn_port, option = free_port(), free_port(), free_port()
    assert _serves_on(COMMAND, _env(tmp_path, PORT=str(port)), tmp_path) == port
    both = _env(tmp_path, PORT=str(port), UVICORN_PORT=str(uvicorn_port))
    assert _serves_on(COMMAND, both, tmp_path) == uvicorn_port
    with_option = [*COMMAND, "--port", str(option)]
    assert _serves_on(with_option, both, tmp_path) == option


@pytest.mark.parametrize("value", ["http", "0", "65536", "-1", "80 "])
def test_a_port_that_is_not_one_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    completed = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        COMMAND,
        cwd=tmp_path,
        env=_env(tmp_path, PORT=value),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )
    assert completed.returncode == 1
    assert completed.stderr == f"PORT must be a port number from 1 to 65535, not {value!r}\n"
