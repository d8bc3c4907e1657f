"""compose.yaml as data, read with the YAML parser of its schema check (check-jsonschema's), and
Compose's variable interpolation (`$$`, `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
`${NAME:?error}`, `${NAME?error}`), as the Compose Specification describes it."""

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>\w+)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(Exception):
    """What `docker compose` stops with for a required variable that is unset (or empty)."""


def read(path: Path = ROOT / "compose.yaml") -> dict[str, Any]:
    """The file as written, merge keys (`<<: *app`) resolved."""
    loaded: dict[str, Any] = YAML(typ="safe").load(path)
    return loaded


def _one(found: re.Match[str], variables: dict[str, str]) -> str:
    if found["escaped"]:
        return "$"
    name = found["bare"] or found["name"]
    value, op, arg = variables.get(name), found["op"], found["arg"]
    empty = value is None or (op is not None and op.startswith(":") and value == "")
    if op in (":-", "-") and empty:
        return str(arg)
    if op in (":?", "?") and empty:
        raise MissingVariable(f"required variable {name} is missing a value: {arg}")
    return value or ""


def interpolate(node: Any, variables: dict[str, str]) -> Any:
    """`node` (the file, or part of it) with every variable in its string values replaced."""
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, variables) for value in node]
    if isinstance(node, str):
        return _VARIABLE.sub(lambda found: _one(found, variables), node)
    return node


def dotenv(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of an env file such as `.env.example` (comments skipped)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs
