"""The import contracts catch what matters, and are what the feature list says they are.

Each forbidden import is written into a copy of `app/` and `lint-imports` must refuse it, naming
the contract that says why; the unmodified copy must pass, so a failure means the import.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import contracts

ROOT = contracts.ROOT
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

LAYERS, INDEPENDENT, FEATURE_LAYERS, NO_HTTP = (
    contracts.LAYERS,
    contracts.INDEPENDENT,
    contracts.FEATURE_LAYERS,
    contracts.NO_HTTP,
)


def test_the_contracts_file_is_generated_from_the_feature_list() -> None:
    assert contracts.CONTRACTS_FILE.read_text() == contracts.render(), "run `make contracts`"


def _lint_copy(tmp_path: Path, edits: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(contracts.CONTRACTS_FILE, tmp_path)
    for relative, line in edits.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + f"\n{line}\n")
    return subprocess.run(  # noqa: S603 - our own virtualenv's tool, fixed arguments
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_unchanged_code_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint_copy(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("edits", "broken"),
    [
        pytest.param(
            {"app/users/service.py": "import app.items.crud"},
            INDEPENDENT,
            id="a feature's service imports another feature's crud",
        ),
        pytest.param(
            {"app/items/crud.py": "import app.users.crud"},
            INDEPENDENT,
            id="items imports users' private crud",
        ),
        pytest.param(
            {"app/items/deps.py": "import app.auth.errors"},
            INDEPENDENT,
            id="items depends on the login flow",
        ),
        pytest.param(
            {"app/users/crud.py": "import app.auth.errors"},
            INDEPENDENT,
            id="users imports auth, which imports users",
        ),
        pytest.param(
            {"app/items/deps.py": "import app.users.router"},
            INDEPENDENT,
            id="a feature imports another feature's router",
        ),
        pytest.param(
            {"app/items/schemas.py": "import app.items.crud"},
            FEATURE_LAYERS,
            id="schemas import crud",
        ),
        pytest.param(
            {"app/users/crud.py": "import app.users.router"},
            FEATURE_LAYERS,
            id="crud imports its own router",
        ),
        pytest.param(
            {"app/items/crud.py": "from fastapi import HTTPException"},
            NO_HTTP,
            id="crud raises HTTPException",
        ),
        pytest.param(
            {"app/users/service.py": "from starlette.requests import Request"},
            NO_HTTP,
            id="a service takes a Request",
        ),
        pytest.param(
            {"app/core/db.py": "import app.users.models"},
            LAYERS,
            id="core imports a feature",
        ),
        pytest.param(
            {"app/tags/__init__.py": '"""Not in FEATURES."""'},
            LAYERS,
            id="a package left out of the feature list",
        ),
        pytest.param(
            {"app/tags/__init__.py": "", "app/core/config.py": "import app.tags"},
            LAYERS,
            id="an unlisted package imported by core",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, edits: dict[str, str], broken: str
) -> None:
    result = _lint_copy(tmp_path, edits)
    assert result.returncode != 0, result.stdout
    assert f"{broken} BROKEN" in result.stdout, result.stdout
