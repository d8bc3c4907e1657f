"""wrk, bench/lua/bench.lua and the parser of its result: a one-second run against the floor
(bench/floor.py under uvicorn) counts answers, statuses and latencies as they happened."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import servers, wrk
from bench.wrk import Call
from tests.helpers import require_program

ITEM = "/api/v1/items/{id}"


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Target]:
    require_program("wrk", install="apt-get install -y wrk")  # every test that runs wrk has it
    workdir = tmp_path_factory.mktemp("floor")
    target = servers.start_uvicorn(
        "floor", "bench.floor:create_app", dict(os.environ), workdir, 1, "/api/v1/items/1"
    )
    try:
        servers.wait_ready(target)
        yield target
    finally:
        servers.stop(target)


def measure(target: servers.Target, calls: list[Call], tmp_path: Path) -> wrk.Measure:
    ids = tmp_path / "ids"
    ids.write_text("one\ntwo\nthree\n")
    return wrk.start(
        target.base_url, calls, workdir=tmp_path, seconds=1, connections=2, ids_file=ids
    ).result()


def test_a_run_counts_its_answers_and_latencies(floor: servers.Target, tmp_path: Path) -> None:
    found = measure(floor, [Call("GET", ITEM)], tmp_path)

    assert found.requests > 50
    assert 0.9 < found.seconds < 2
    assert found.errors == 0
    assert 0 < found.p50_ms <= found.p99_ms <= found.max_ms
    assert found.rps == pytest.approx(found.requests / found.seconds)


def test_statuses_other_than_2xx_are_counted(floor: servers.Target, tmp_path: Path) -> None:
    # The floor knows only GET /items/{id}: a POST there is a 405, another path a 404.
    calls = [Call("GET", ITEM), Call("POST", ITEM, '{"title":"x"}'), Call("GET", "/nowhere")]
    found = measure(floor, calls, tmp_path)

    assert 0.4 * found.requests < found.non_2xx < 0.9 * found.requests


def test_a_run_without_a_result_line_is_an_error() -> None:
    with pytest.raises(wrk.WrkError, match="no result"):
        wrk.parse("Running 1s test @ http://127.0.0.1:1\n  0 requests in 1.00s\n")


def test_a_path_with_ids_needs_an_ids_file(floor: servers.Target, tmp_path: Path) -> None:
    running = wrk.start(
        floor.base_url, [Call("GET", ITEM)], workdir=tmp_path, seconds=1, connections=1
    )
    with pytest.raises(wrk.WrkError, match="BENCH_IDS"):
        running.result()
