"""The README's settings table (## Configuration) against `Settings`: every setting has a row
with its environment name and its default, and no row names a setting that does not exist."""

import re
from typing import Any

import pytest
from pydantic.fields import FieldInfo

from app.core.config import DEV_SECRET_KEY, Settings
from tests.conftest import ROOT

# Rows for variables that other programs read, not `Settings`.
# Read by the server's start (app/serve.py, uvicorn), not by Settings.
NOT_SETTINGS = {"UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", "PORT", "PROMETHEUS_MULTIPROC_DIR"}


def settings_rows(readme: str) -> dict[str, str]:
    """Each variable of the table, with the part of the Default cell that is its own. A row
    may name several (`A` / `B`) with as many defaults (`1` / `2`), or one for all."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names_cell, default_cell, _meaning = (cell.strip() for cell in line.strip("|").split("|"))
        names = [name.strip().strip("`") for name in names_cell.split(" / ")]
        defaults = [default.strip() for default in default_cell.split(" / ")]
        if len(defaults) == 1:
            defaults *= len(names)
        assert len(defaults) == len(names), f"one default per variable: {line}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in rows, f"{name} has two rows"
            rows[name] = default
    return rows


def shown_default(field: FieldInfo) -> str | None:
    """How the README writes this field's default, or None where it is said in words (unset,
    empty, computed, or a development value not worth printing)."""
    default: Any = field.default
    if field.default_factory is not None or default in (None, [], DEV_SECRET_KEY):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


README_ROWS = settings_rows((ROOT / "README.md").read_text())


def test_no_row_for_a_setting_that_does_not_exist() -> None:
    assert set(README_ROWS) - set(Settings.model_fields) - NOT_SETTINGS == set()


@pytest.mark.parametrize(("name", "field"), Settings.model_fields.items())
def test_each_setting_has_a_row_with_its_default(name: str, field: FieldInfo) -> None:
    assert name in README_ROWS, f"README.md's settings table (## Configuration) lacks {name}"
    documented = README_ROWS[name]
    wanted = shown_default(field)
    if wanted is None:
        assert documented, f"{name}: say what its default is"
    else:
        # A unit may follow (`65536` KiB).
        assert re.match(rf"`{re.escape(wanted)}`( |$)", documented), (
            f"{name}: the README says {documented!r}, the default is `{wanted}`"
        )


def test_the_parser_reads_combined_rows() -> None:
    rows = settings_rows(
        "\n## Configuration\n| `A` / `B` | `1` / unset | x |\n| `C` / `D` | unset | y |\n## Next"
    )
    assert rows == {"A": "`1`", "B": "unset", "C": "unset", "D": "unset"}
