"""Driving load with wrk: the request spec its Lua script reads, the command, and its result."""

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua" / "bench.lua"
RESULT_PREFIX = "BENCH_RESULT "
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


class WrkError(Exception):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class Call:
    """One kind of request of a run; `weight` is its share of a mix. `{id}` in the path
    takes the ids of the run's ids file in turn."""

    method: str
    path: str
    body: str | None = None
    content_type: str = JSON_TYPE
    weight: int = 1

    def spec_line(self) -> str:
        for field in (self.path, self.body or ""):
            if "\t" in field or "\n" in field:
                raise ValueError(f"tabs and newlines cannot travel in a spec line: {field!r}")
        body = self.body if self.body is not None else "-"
        content_type = self.content_type if self.body is not None else "-"
        return "\t".join((str(self.weight), self.method, self.path, content_type, body))


@dataclass(frozen=True)
class Measure:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkError("wrk is not installed: apt-get install -y wrk")
    return found


def parse(output: str) -> Measure:
    """The result line that bench.lua's done() printed."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line.removeprefix(RESULT_PREFIX))
            return Measure(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                p50_ms=raw["p50_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                non_2xx=raw["status"],
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
            )
    raise WrkError(f"wrk printed no result:\n{output[-2000:]}")


@dataclass
class Running:
    process: subprocess.Popen[str]

    def result(self) -> Measure:
        stdout, stderr = self.process.communicate()
        if self.process.returncode != 0:
            raise WrkError(f"wrk exited with {self.process.returncode}: {stderr[-2000:]}")
        return parse(stdout)


def start(
    base_url: str,
    calls: Sequence[Call],
    *,
    workdir: Path,
    seconds: float,
    connections: int,
    threads: int = 2,
    token: str = "",
    ids_file: Path | None = None,
    name: str = "run",
) -> Running:
    """Start wrk against `base_url` with `calls`; `.result()` waits for it."""
    spec = workdir / f"{name}.spec"
    spec.write_text("".join(call.spec_line() + "\n" for call in calls))
    env = {
        **os.environ,
        "BENCH_SPEC": str(spec),
        "BENCH_IDS": str(ids_file or ""),
        "BENCH_TOKEN": token,
    }
    command = [
        wrk_path(),
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        # wrk takes the host from here; each request's path comes from the script.
        base_url,
    ]
    process = subprocess.Popen(  # noqa: S603 - wrk, arguments we build
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Running(process)
