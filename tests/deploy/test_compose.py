"""compose.yaml, read and interpolated as Compose would, for what its JSON schema (`make lint`)
cannot say: the order of the deploy, the health checks, the required secrets from `.env`, and
that the app's settings name the stack's own services and pass production's checks.
Docker itself never runs here: no test starts the stack."""

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.metrics import METRICS_PATH
from tests.deploy import compose, dockerfile
from tests.deploy.compose import ROOT, MissingVariable

FILE = compose.read()
SERVICES: dict[str, Any] = FILE["services"]
EXAMPLE = compose.dotenv(ROOT / ".env.example")  # what `cp .env.example .env` gives
SECRETS = {
    "POSTGRES_PASSWORD": "a-database-password",
    "SECRET_KEY": "k3Zq9-TwLp_0vXe7RfYb2NcHsUa8MgDj-4Vn",
    "FIRST_SUPERUSER_PASSWORD": "a-long-and-safe-password",
}


def _resolved(**variables: str) -> dict[str, Any]:
    resolved: dict[str, Any] = compose.interpolate(FILE, {**EXAMPLE, **SECRETS, **variables})
    services: dict[str, Any] = resolved["services"]
    return services


def test_the_schema_check_of_make_lint_refuses_a_misspelt_key(tmp_path: Path) -> None:
    checker = [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema"]
    checker.append("vendor.compose-spec")
    good = subprocess.run(  # noqa: S603 - the dev dependency, fixed arguments
        [*checker, str(ROOT / "compose.yaml")], capture_output=True, text=True, check=False
    )
    assert good.returncode == 0, good.stdout
    bad = tmp_path / "compose.yaml"
    bad.write_text((ROOT / "compose.yaml").read_text().replace("depends_on:", "depend_on:"))
    refused = subprocess.run(  # noqa: S603 - the dev dependency, fixed arguments
        [*checker, str(bad)], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1
    assert "'depend_on' was unexpected" in refused.stdout


def test_the_app_starts_after_the_one_shot_migrate_step_of_the_same_image() -> None:
    migrate, app = SERVICES["migrate"], SERVICES["app"]
    # tests/deploy/test_image.py runs this command and finds the database migrated.
    assert migrate["command"] == ["python", "-m", "app", "migrate"]
    assert "command" not in app  # the image's CMD
    for key in ("build", "image", "env_file", "environment"):
        assert migrate[key] == app[key], key
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert app["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_every_service_that_runs_has_a_health_check() -> None:
    assert set(SERVICES) == {"db", "redis", "migrate", "app", "prometheus"}
    # The one-shot step serves nothing; the image's health check would only mark it unhealthy.
    assert SERVICES["migrate"]["healthcheck"] == {"disable": True}
    assert SERVICES["db"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    image = dockerfile.read()["runtime"].healthcheck
    assert SERVICES["app"]["healthcheck"]["test"] == ["CMD", *image]
    assert SERVICES["prometheus"]["healthcheck"]["test"][-1].endswith(":9090/-/ready")
    for name in ("db", "redis", "app", "prometheus"):
        assert SERVICES[name]["restart"] == "unless-stopped", name


def test_the_optional_prometheus_scrapes_the_apps_metrics_on_its_port() -> None:
    resolved = compose.interpolate(FILE, {**EXAMPLE, **SECRETS, "PORT": "9000"})
    prometheus = resolved["services"]["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]  # not started by a plain `up`
    assert prometheus["depends_on"] == {"app": {"condition": "service_healthy"}}
    (mount,) = prometheus["configs"]
    assert mount["target"] == "/etc/prometheus/prometheus.yml"
    config = YAML(typ="safe").load(resolved["configs"][mount["source"]]["content"])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == METRICS_PATH
    assert job["static_configs"] == [{"targets": ["app:9000"]}]


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("value", [None, ""])
def test_each_secret_is_required_from_the_env_file(secret: str, value: str | None) -> None:
    # .env.example names it, and leaves it unset: a copy left unedited does not start.
    assert f"# {secret}=\n" in (ROOT / ".env.example").read_text()
    assert secret not in EXAMPLE
    variables = {**EXAMPLE, **SECRETS}
    if value is None:
        del variables[secret]
    else:
        variables[secret] = value
    with pytest.raises(
        MissingVariable, match=rf"^required variable {secret} .*set {secret} in .env"
    ):
        compose.interpolate(FILE, variables)


def test_no_secret_is_written_in_the_file() -> None:
    app, db = SERVICES["app"], SERVICES["db"]
    assert app["env_file"] == ".env"
    assert "env_file" not in db  # the database container gets its password, not the app's keys
    for environment in (app["environment"], db["environment"]):
        for name, value in environment.items():
            if "PASSWORD" in name or "SECRET" in name or name == "DATABASE_URL":
                assert "${" in value, name


def test_the_app_uses_the_stacks_database_and_redis_with_settings_production_accepts() -> None:
    services = _resolved()
    app, db = services["app"], services["db"]
    url = make_url(app["environment"]["DATABASE_URL"])
    assert url.host == "db"
    assert url.port in (None, 5432)
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == db["environment"]["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    assert url.database == db["environment"]["POSTGRES_DB"]
    assert urlsplit(app["environment"]["REDIS_URL"]).hostname == "redis"
    # What the container sees: .env (a copy of .env.example), then `environment:` over it.
    seen = {**EXAMPLE, **SECRETS, **app["environment"]}
    settings = Settings(_env_file=None, **seen)  # production refuses unsafe settings here
    assert settings.ENVIRONMENT == "production"
    assert settings.DATABASE_URL.startswith("postgresql+asyncpg://app:")
    assert settings.REDIS_URL == "redis://redis:6379/0"


def test_the_database_keeps_its_data_in_a_named_volume_and_redis_keeps_none() -> None:
    assert SERVICES["db"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert "pgdata" in FILE["volumes"]
    command = SERVICES["redis"]["command"]
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"


@pytest.mark.parametrize(("variables", "port"), [({}, "8000"), ({"PORT": "9000"}, "9000")])
def test_the_app_listens_on_port_and_is_published_there(
    variables: dict[str, str], port: str
) -> None:
    app = _resolved(**variables)["app"]
    assert app["environment"]["PORT"] == port
    assert app["ports"] == [f"{port}:{port}"]
