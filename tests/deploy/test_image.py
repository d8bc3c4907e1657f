"""The image's own steps, without Docker: the Dockerfile's install, copy and compile commands build
a stand-in for /app in a temporary directory (a fresh virtualenv from `uv sync --frozen --no-dev`),
then, with the Dockerfile's ENV, a writable directory for /data and `ENVIRONMENT=staging`, the
compose file's migrate command and the Dockerfile's CMD serve on the PORT given, and its
HEALTHCHECK command passes. With the image's defaults (production, SQLite), migrate refuses.

What only a real build would show (the base image, the user and /data's owner, the read-only
/app) is not tested here. ~25 s on a busy 2-core machine, most of it the install (from uv's
cache, which `make install` fills); in the SQLite run of the suite only, as nothing here depends
on the suite's database.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from app.core.config import API_V1_PREFIX, Settings
from tests.benchmarks.server import free_port, stop_server
from tests.deploy import compose, dockerfile
from tests.deploy.dockerfile import ROOT

STEP_SECONDS = 300  # the install, from uv's cache; the other steps take seconds
STARTUP_SECONDS = 60
UV = ROOT / ".tools" / "bin" / "uv"  # the Makefile's

STAGES = dockerfile.read()


@pytest.fixture(scope="module", autouse=True)
def _sqlite_run_only(settings: Settings) -> None:
    if not settings.is_sqlite:
        pytest.skip("the image's own steps use no test database: the SQLite run covers them")


def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float = STEP_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the Dockerfile's commands, in a directory of ours
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _the_run(stage: dockerfile.Stage, starts: str) -> list[str]:
    found = [run for run in stage.runs if run.startswith(starts)]
    assert len(found) == 1, (starts, stage.runs)
    return ["/bin/sh", "-c", found[0]]


def _copy(stage: dockerfile.Stage, root: Path) -> None:
    for *sources, destination in stage.copies:
        if sources[0].startswith("/"):
            continue  # COPY --from another stage: the same directory here
        for source in sources:
            target = root / destination / (source if destination.endswith("/") else "")
            if (ROOT / source).is_dir():
                ignore = shutil.ignore_patterns("__pycache__")  # as .dockerignore says
                shutil.copytree(ROOT / source, target.resolve(), ignore=ignore)
            else:
                shutil.copy2(ROOT / source, target.resolve())


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/app as the Dockerfile builds it: the locked dependencies, alembic.ini and app/, compiled."""
    assert UV.exists(), "no uv: `make install` puts the Makefile's in .tools/bin"
    root = tmp_path_factory.mktemp("image") / "app"
    root.mkdir()
    build, runtime = STAGES["build"], STAGES["runtime"]
    _copy(build, root)
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("UV_", "VIRTUAL_ENV", "PYTHON"))
    }
    base["PATH"] = f"{UV.parent}:{base['PATH']}"  # the image pip-installs it
    synced = _run(
        _the_run(build, "uv sync"), root, dockerfile.environment(build, {"/app": root}, base)
    )
    assert synced.returncode == 0, synced.stderr
    _copy(runtime, root)
    env = dockerfile.environment(runtime, {"/app": root}, _plain_env())
    compiled = _run(_the_run(runtime, "python -m compileall"), root, env)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return root


def _plain_env() -> dict[str, str]:
    return {
        name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ
    }


def test_the_build_uses_the_makefiles_uv_and_installs_no_dev_dependency(image_root: Path) -> None:
    pinned = re.search(r"\buv==(\S+)", " ".join(STAGES["build"].runs))
    assert pinned, STAGES["build"].runs
    version = _run([str(UV), "--version"], ROOT, _plain_env())
    assert version.stdout.split()[1] == pinned[1]
    packages = {
        path.name.split("-")[0].lower()
        for path in image_root.glob(".venv/lib/*/site-packages/*.dist-info")
    }
    assert {"uvicorn", "sqlalchemy", "alembic", "asyncpg", "aiosqlite", "redis"} <= packages
    assert not packages & {"pytest", "ruff", "mypy", "schemathesis", "check_jsonschema"}


def test_app_is_byte_compiled_and_the_compiled_files_are_loaded(image_root: Path) -> None:
    sources = sorted((image_root / "app").rglob("*.py"))
    assert len(sources) > 50
    missing = [s for s in sources if not Path(importlib.util.cache_from_source(str(s))).exists()]
    assert not missing
    # The image's interpreter and environment (PYTHONDONTWRITEBYTECODE: nothing is written),
    # importing the app: `-v` names where each module's code came from.
    env = dockerfile.environment(STAGES["runtime"], {"/app": image_root}, _plain_env())
    loaded = _run(["python", "-v", "-c", "import app.main"], image_root, env)
    assert loaded.returncode == 0, loaded.stderr
    from_pyc = re.findall(
        rf"^# code object from '?{re.escape(str(image_root))}/app/\S+\.pyc",
        loaded.stderr,
        re.MULTILINE,
    )
    from_source = re.findall(
        rf"^# code object from '?{re.escape(str(image_root))}/app/\S+\.py'?$",
        loaded.stderr,
        re.MULTILINE,
    )
    assert len(from_pyc) > 20
    assert not from_source


def test_the_migrate_step_refuses_unsafe_production_settings(
    image_root: Path, tmp_path: Path
) -> None:
    # The image's defaults: production, SQLite in /data, the development secrets.
    env = dockerfile.environment(
        STAGES["runtime"], {"/app": image_root, "/data": tmp_path}, _plain_env()
    )
    refused = _run(compose.read()["services"]["migrate"]["command"], image_root, env)
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr
    for problem in ("SECRET_KEY must be set", "FIRST_SUPERUSER_PASSWORD must be changed"):
        assert problem in refused.stderr
    assert "DATABASE_URL must point at PostgreSQL" in refused.stderr
    assert not (tmp_path / "app.db").exists()


@dataclass
class Server:
    env: dict[str, str]
    process: "subprocess.Popen[bytes]"
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}{API_V1_PREFIX}"


@pytest.fixture
def server(image_root: Path, tmp_path: Path) -> Iterator[Server]:
    """compose.yaml's migrate command, then the Dockerfile's CMD, on SQLite in /data."""
    data = tmp_path / "data"  # /data's stand-in: a directory the server may write
    data.mkdir()
    env = dockerfile.environment(
        STAGES["runtime"],
        {"/app": image_root, "/data": data},
        _plain_env(),
        ENVIRONMENT="staging",  # production refuses SQLite
        PORT=str(free_port()),
        EMAIL_SENDER="false",
    )
    migrated = _run(compose.read()["services"]["migrate"]["command"], image_root, env)
    assert migrated.returncode == 0, migrated.stderr
    assert (data / "app.db").exists()
    command = list(STAGES["runtime"].cmd)
    command[command.index("--host") + 1] = "127.0.0.1"  # not every interface of this machine
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - the Dockerfile's CMD
            command,
            cwd=image_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Server(env, process, log)
    try:
        yield running
    finally:
        stop_server(process)


def test_migrated_it_serves_on_port_and_its_health_check_passes(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        assert server.process.poll() is None, server.log.read_text()
        try:
            health = httpx2.get(f"{server.base}/utils/health-check/", timeout=2)
            break
        except httpx2.TransportError:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)
    assert health.status_code == 200
    assert health.json() is True
    # Readiness finds the schema at the newest migration (503 "not migrated" otherwise).
    ready = httpx2.get(f"{server.base}/utils/ready/", timeout=5)
    assert ready.json() == {"status": "ok", "checks": {"database": "ok"}}, ready.text
    # The image's HEALTHCHECK, with the same environment: it asks PORT, and fails elsewhere.
    check = STAGES["runtime"].healthcheck
    assert _run(check, server.log.parent, server.env, 10).returncode == 0
    elsewhere = {**server.env, "PORT": str(free_port())}
    assert _run(check, server.log.parent, elsewhere, 10).returncode != 0
