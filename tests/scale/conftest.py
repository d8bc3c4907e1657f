"""Fixtures of the scale-out tests: their PostgreSQL database (made and migrated once per run),
Redis, a real SMTP server, and the two app instances on them, straight to PostgreSQL or through
PgBouncer in transaction mode."""

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.benchmarks.server import free_port
from tests.core import outage
from tests.emails.test_delivery import Mailbox, smtp_server
from tests.helpers import require_program
from tests.scale import pgbouncer
from tests.scale.instances import Instance, instance_env, two_instances


@pytest.fixture(scope="session")
async def scale_url() -> URL:
    if not os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"):
        pytest.skip("scale-out needs a database the instances share: run on PostgreSQL")
    return await outage.prepare_database("scale")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    with smtp_server(port, box):
        yield box, port


@pytest.fixture(scope="session")
def bouncer_url(scale_url: URL) -> Iterator[URL]:
    """The scale database through a PgBouncer in transaction mode, for the whole run."""
    require_program("pgbouncer", install="apt-get install -y pgbouncer")
    # Outside pytest's private temporary directory: PgBouncer, started as root, runs as nobody.
    with (
        tempfile.TemporaryDirectory(prefix="pgbouncer-") as workdir,
        pgbouncer.pgbouncer(scale_url, Path(workdir)) as url,
    ):
        yield url


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
async def instances(
    request: pytest.FixtureRequest,
    scale_url: URL,
    redis_url: str,
    mailbox: tuple[Mailbox, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Instances A and B: same database (straight, or through one PgBouncer), Redis and SMTP."""
    through_pgbouncer = request.param == "pgbouncer"
    url = request.getfixturevalue("bouncer_url") if through_pgbouncer else scale_url
    env = instance_env(
        url.render_as_string(hide_password=False),
        pgbouncer=through_pgbouncer,
        redis_url=redis_url,
        smtp_port=mailbox[1],
    )
    async with two_instances(env, tmp_path_factory.mktemp(f"instances-{request.param}")) as pair:
        yield pair
