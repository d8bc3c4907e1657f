"""`make feature` on a copy of the project: the generated feature passes lint and its own tests
without edits, and its migration goes up and down with the rest.

Slow-ish (~20 s: one scaffold, one lint, one pytest run in subprocesses), and the only test of the
generator that proves anything: the output has to work, not to look a certain way.
"""

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import normalize_database_url
from tools import scaffold

ROOT = scaffold.ROOT
BIN = Path(sys.executable).parent
COPY_IGNORES = shutil.ignore_patterns(
    ".git", ".venv", ".tools", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "*.db"
)


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - our own virtualenv's tools, fixed arguments
        args, cwd=cwd, capture_output=True, text=True, check=False, timeout=600, env=env
    )
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with `orders` generated into it."""
    copy = tmp_path_factory.mktemp("project") / "project"
    shutil.copytree(ROOT, copy, ignore=COPY_IGNORES)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    if (ROOT / ".mypy_cache").is_dir():  # only speed: mypy re-checks what changed
        shutil.copytree(ROOT / ".mypy_cache", copy / ".mypy_cache")
    _run(copy, str(BIN / "python"), "-m", "tools.scaffold", "feature", "orders")
    return copy


@pytest.fixture(scope="module")
def database_url(project: Path) -> Iterator[str]:
    """Where the generated tests run: like the suite's database, never the same one."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url or url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{project / 'scaffold-test.db'}"
        return
    admin = make_url(normalize_database_url(url))
    name = f"{admin.database}_scaffold_{uuid.uuid4().hex[:8]}"

    async def ddl(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        async with engine.connect() as connection:
            await connection.execute(text(statement))
        await engine.dispose()

    anyio.run(ddl, f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        anyio.run(ddl, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_feature_is_generated_and_registered(project: Path) -> None:
    for module in ("router", "schemas", "models", "crud", "errors", "deps"):
        assert (project / "app" / "orders" / f"{module}.py").is_file()
    assert (project / "tests" / "orders" / "test_orders.py").is_file()
    assert 'Feature("orders", uses=("users",))' in (project / "app" / "features.py").read_text()
    assert "app.orders.** -> app.users.deps" in (project / ".importlinter").read_text()
    assert "/app/orders/  @your-org/orders" in (project / ".github" / "CODEOWNERS").read_text()
    versions = project / "app" / "migrations" / "versions"
    existing = sorted(
        path.name.split("_")[1] for path in (ROOT / "app/migrations/versions").glob("*.py")
    )
    migrations = list(versions.glob("*_orders.py"))
    assert len(migrations) == 1
    # The next sequential id, on top of the newest one.
    assert migrations[0].name.split("_")[1] == f"{int(existing[-1]) + 1:04d}"
    assert f'down_revision: str | None = "{existing[-1]}"' in migrations[0].read_text()


def test_the_generated_feature_passes_lint(project: Path) -> None:
    _run(project, str(BIN / "ruff"), "check", ".")
    _run(project, str(BIN / "ruff"), "format", "--check", ".")
    _run(project, str(BIN / "mypy"))
    _run(project, str(BIN / "python"), "-m", "tools.contracts", "--check")
    assert "4 kept, 0 broken" in _run(project, str(BIN / "lint-imports"), "--no-cache")


def test_the_generated_tests_pass(project: Path, database_url: str) -> None:
    env = {**os.environ, "TEST_DATABASE_URL": database_url}
    env.pop("PYTEST_ADDOPTS", None)
    output = _run(
        project,
        str(BIN / "pytest"),
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/orders",
        # The migration round trip and the models/migrations drift check, now with 0002.
        "tests/core/test_database.py",
        "tests/core/test_features.py",
        env=env,
    )
    assert " passed" in output
    assert "failed" not in output


def test_a_name_that_cannot_be_a_feature_is_refused(project: Path) -> None:
    for name in ("Orders", "users", "core", "class", "2fa"):
        result = subprocess.run(  # noqa: S603
            [str(BIN / "python"), "-m", "tools.scaffold", "feature", name],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert result.stderr.startswith("error: "), result.stderr
    assert not (project / "app" / "core" / "router.py").exists()


@pytest.mark.parametrize(
    ("name", "singular"),
    [
        ("orders", "order"),
        ("categories", "category"),
        ("addresses", "address"),
        ("boxes", "box"),
        ("order_lines", "order_line"),
    ],
)
def test_singular_of(name: str, singular: str) -> None:
    assert scaffold.singular_of(name) == singular
