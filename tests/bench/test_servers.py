"""What the harness reads from our server's JSON request log after a run."""

import json
from pathlib import Path

from bench.servers import refusals


def test_refusals_are_counted_by_status_and_route_logins_apart(tmp_path: Path) -> None:
    def line(status: int, route: str, method: str = "GET") -> str:
        return json.dumps({"event": "request", "status": status, "route": route, "method": method})

    log = tmp_path / "ours.log"
    log.write_text(
        "\n".join(
            [
                line(200, "/api/v1/items/{id}"),
                line(503, "/api/v1/items/{id}"),
                line(503, "/api/v1/items/{id}"),
                line(404, "/api/v1/items/{id}", "PATCH"),
                line(503, "/api/v1/login/access-token", "POST"),  # the hashing queue, by design
                'not json, "status": 500',
                "",
            ]
        )
    )

    assert refusals(log) == {"503 GET /api/v1/items/{id}": 2, "404 PATCH /api/v1/items/{id}": 1}
