"""The Dockerfile as data, so tests run what the image runs instead of a copy that can drift.

`read()` parses each stage's ENV, RUN, COPY, CMD and HEALTHCHECK (exec form). `localize()` maps
the image's paths (/app, /data, the base image's interpreter) onto directories of this machine.
"""

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The interpreter the Dockerfile's build stage names (UV_PYTHON), i.e. the base image's.
IMAGE_PYTHON = "/usr/local/bin/python3"


@dataclass
class Stage:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    """ENV in order; `${NAME}` left as written."""
    runs: list[str] = field(default_factory=list)
    """RUN shell commands, without their `--mount=...` options."""
    copies: list[tuple[str, ...]] = field(default_factory=list)
    """COPY sources and destination (last), without `--from` and the like."""
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", text, flags=re.MULTILINE))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _exec_form(rest: str) -> list[str]:
    start = rest.index("[")  # after HEALTHCHECK's --interval=... options, or CMD's nothing
    assert rest[start - 4 : start] == "CMD " or start == 0, f"not an exec form: {rest}"
    words: list[str] = json.loads(rest[start:])
    return words


def read(path: Path = ROOT / "Dockerfile") -> dict[str, Stage]:
    """Each stage by its name (`FROM ... AS name`)."""
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            stage = stages.setdefault(rest.split()[-1], Stage(rest.split()[-1]))
            continue
        if stage is None:
            continue  # ARG before the first FROM
        words = shlex.split(rest) if keyword in {"ENV", "COPY"} else []
        if keyword == "ENV":
            for word in words:
                name, _, value = word.partition("=")
                stage.env[name] = value
        elif keyword == "RUN":
            stage.runs.append(re.sub(r"^(--\S+\s+)+", "", rest))
        elif keyword == "COPY":
            stage.copies.append(tuple(word for word in words if not word.startswith("--")))
        elif keyword == "CMD":
            stage.cmd = _exec_form(rest)
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = _exec_form(rest)
    return stages


def localize(value: str, places: dict[str, Path]) -> str:
    """`value` with each image path of `places` (`/app`, `/data`) replaced by its stand-in here,
    and the base image's interpreter by this one's."""
    value = value.replace(IMAGE_PYTHON, str(Path(sys.executable).resolve()))
    for image_path, here in places.items():
        # A whole path component only: /data/app.db holds "/app" too.
        value = re.sub(rf"(?<![\w.]){re.escape(image_path)}(?=/|:|$)", str(here), value)
    return value


def environment(
    stage: Stage, places: dict[str, Path], base: dict[str, str], **values: str
) -> dict[str, str]:
    """`base`, then the stage's ENV (paths localized, `${NAME}` expanded), then `values`."""
    env = dict(base)
    for name, raw in stage.env.items():
        expanded = re.sub(r"\$\{(\w+)\}", lambda found: env.get(found[1], ""), raw)
        env[name] = localize(expanded, places)
    env.update(values)
    return env
