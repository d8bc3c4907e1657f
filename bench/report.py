"""The results as Markdown: medians of the repetitions, and ratios to the references."""

import os
import platform
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version

from bench.wrk import Measure

Key = tuple[str, ...]


@dataclass
class Results:
    """Every wrk run, by key (scenario, workers, connections, target ...)."""

    runs: dict[Key, list[Measure]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)
    memory: list[tuple[str, int, int]] = field(default_factory=list)
    """(process, VmRSS KiB at start, at end) of each worker in the memory run."""

    def add(self, key: Key, measure: Measure) -> None:
        self.runs[key].append(measure)

    def median(self, key: Key) -> "Median | None":
        runs = self.runs.get(key)
        return Median.of(runs) if runs else None


@dataclass(frozen=True)
class Median:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    runs: int

    @classmethod
    def of(cls, runs: list[Measure]) -> "Median":
        return cls(
            rps=statistics.median(run.rps for run in runs),
            p50_ms=statistics.median(run.p50_ms for run in runs),
            p99_ms=statistics.median(run.p99_ms for run in runs),
            errors=sum(run.errors for run in runs),
            runs=len(runs),
        )

    def cells(self) -> list[str]:
        if not self.rps:
            return ["0", "none answered", "-"]
        return [f"{self.rps:,.0f}", f"{self.p50_ms:,.1f}", f"{self.p99_ms:,.1f}"]


def ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or not theirs:
        return "-"
    return f"{mine / theirs:.2f}"


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def matrix(results: Results, endpoints: list[str], workers: list[int], conns: list[int]) -> str:
    """Ours against the ceiling, the floor and (if measured) the template, per endpoint."""
    template = any(key[3] == "template" for key in results.runs if key[0] == "endpoint")
    header = [
        "endpoint",
        "w",
        "c",
        "ours req/s",
        "p50 ms",
        "p99 ms",
        "ceiling req/s",
        "ceiling p99",
        "floor req/s",
        "ours/ceiling req/s",
        "ours/floor req/s",
        "p99 ours/ceiling",
    ]
    if template:
        header += ["template req/s", "template p99", "ours/template req/s"]
    header.append("non-2xx ours / ceiling" + (" / template" if template else ""))
    rows = []
    for endpoint in endpoints:
        for w in workers:
            for c in conns:
                ours = results.median(("endpoint", endpoint, f"w{w}c{c}", "ours"))
                if ours is None:
                    continue
                ceiling = results.median(("endpoint", endpoint, f"w{w}c{c}", "ceiling"))
                floor = results.median(("floor", f"w{w}c{c}"))
                row = [f"`{endpoint}`", str(w), str(c), *ours.cells()]
                row += [f"{ceiling.rps:,.0f}", f"{ceiling.p99_ms:,.1f}"] if ceiling else ["-"] * 2
                row.append(f"{floor.rps:,.0f}" if floor else "-")
                row.append(ratio(ours.rps, ceiling.rps if ceiling else None))
                row.append(ratio(ours.rps, floor.rps if floor else None))
                row.append(ratio(ours.p99_ms, ceiling.p99_ms if ceiling else None))
                if template:
                    other = results.median(("endpoint", endpoint, f"w{w}c{c}", "template"))
                    row += [f"{other.rps:,.0f}", f"{other.p99_ms:,.1f}"] if other else ["-"] * 2
                    row.append(ratio(ours.rps, other.rps if other else None))
                errors = [ours.errors, ceiling.errors if ceiling else 0]
                if template:
                    errors.append(other.errors if other else 0)
                row.append(" / ".join(map(str, errors)))
                rows.append(row)
    return table(header, rows)


def lists(results: Results) -> str:
    """Each page measured, against the first page of the user with 1,000 items."""
    base = results.median(("list", "1k", "first"))
    header = ["items", "page", "req/s", "p50 ms", "p99 ms", "req/s vs 1k", "p99 vs 1k", "non-2xx"]
    rows = []
    for key in results.runs:
        found = results.median(key)
        if key[0] != "list" or found is None:
            continue
        rows.append(
            [
                key[1],
                key[2],
                *found.cells(),
                ratio(found.rps, base.rps if base else None),
                ratio(found.p99_ms, base.p99_ms if base else None),
                str(found.errors),
            ]
        )
    return table(header, rows)


def storm(results: Results) -> str:
    calm, stormy = results.median(("storm", "calm")), results.median(("storm", "stormy"))
    logins = results.median(("storm", "logins"))
    if calm is None or stormy is None:
        return "(not measured)"
    header = ["`GET /items/{id}` c32", "req/s", "p50 ms", "p99 ms", "p99 vs calm"]
    rows = [
        ["without logins", *calm.cells(), "1.00"],
        ["with 8 concurrent logins", *stormy.cells(), ratio(stormy.p99_ms, calm.p99_ms)],
    ]
    text = table(header, rows)
    if logins:
        text += (
            f"\n\nLogins meanwhile: {logins.rps:,.1f} answers/s, p50 {logins.p50_ms:,.0f} ms, "
            f"{logins.errors} non-2xx (503 `hashing-busy` is the queue refusing, by design)."
        )
    return text


def mix(results: Results) -> str:
    found = results.median(("mix",))
    if found is None:
        return "(not measured)"
    rows = [["mix", *found.cells(), str(found.errors)]]
    return table(["run", "req/s", "p50 ms", "p99 ms", "non-2xx"], rows)


def memory(results: Results, minutes: float, workers: int) -> str:
    load = results.median(("memory-load",))
    if not results.memory or load is None:
        return "(not measured)"
    rows = [
        [name, f"{start:,}", f"{end:,}", f"{(end - start) / start:+.1%}"]
        for name, start, end in results.memory
    ]
    header = ["process", "VmRSS at start KiB", "VmRSS at end KiB", "growth"]
    return (
        f"{minutes:g}-minute mixed run, {workers} worker(s), c32: {load.rps:,.0f} req/s, "
        f"p99 {load.p99_ms:,.1f} ms, {load.errors} non-2xx.\n\n" + table(header, rows)
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(database: str, command: str) -> str:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("fastapi", "starlette", "sqlalchemy", "uvicorn")
    )
    return "\n".join(
        [
            f"- machine: {os.cpu_count()} CPUs, {_cpu_model()}; {platform.platform()}",
            f"- Python {platform.python_version()}; {database}; {packages}",
            f"- {(wrk.stdout or wrk.stderr or 'wrk').splitlines()[0]}",
            f"- command: `{command}`",
        ]
    )
