from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import DEV_SECRET_KEY, Settings, get_settings

STRONG_SECRET = "k3Zq9-TwLp_0vXe7RfYb2NcHsUa8MgDj"  # 32 characters, 31 distinct


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": STRONG_SECRET,
        "FIRST_SUPERUSER_PASSWORD": "a-real-password",
        "ARGON2_TIME_COST": 2,
        "ARGON2_MEMORY_COST": 19456,
        "ARGON2_PARALLELISM": 1,
        "DATABASE_URL": "postgresql://app@db/app",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_safe_production_settings_load() -> None:
    assert production().log_json is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": DEV_SECRET_KEY}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "too-short"}, "SECRET_KEY must be set"),
        ({"FIRST_SUPERUSER_PASSWORD": "changethis"}, "FIRST_SUPERUSER_PASSWORD"),
        ({"BACKEND_CORS_ORIGINS": "*"}, "BACKEND_CORS_ORIGINS"),
        ({"DATABASE_URL": "sqlite:///./app.db"}, "DATABASE_URL must point at PostgreSQL"),
        ({"SECRET_KEY": "a" * 38}, "fewer than 16 distinct characters"),
        ({"SECRET_KEY": "abcdefghijklmno" * 3}, "fewer than 16 distinct characters"),
        ({"FIRST_SUPERUSER_PASSWORD": "x"}, "at least 12 characters"),
        ({"FIRST_SUPERUSER_PASSWORD": "short-pass1"}, "at least 12 characters"),
        (
            {"FIRST_SUPERUSER": "root@example.com", "FIRST_SUPERUSER_PASSWORD": "Root@Example.com"},
            "must not be the superuser's email",
        ),
        ({"BACKEND_CORS_ORIGINS": "null"}, "may not contain 'null'"),
        ({"BACKEND_CORS_ORIGINS": "https://a.example,https://*.example"}, "'https://\\*.example'"),
        ({"ARGON2_MEMORY_COST": 19455}, "below the OWASP minimum"),
        ({"ARGON2_TIME_COST": 1}, "below the OWASP minimum"),
        ({"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_COST": 47103}, "below the OWASP minimum"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        production(**overrides)


@pytest.mark.parametrize(
    ("memory", "time"), [(19456, 2), (47104, 1), (12288, 3), (9216, 4), (7168, 5), (65536, 3)]
)
def test_production_accepts_owasp_argon2_costs(memory: int, time: int) -> None:
    production(ARGON2_MEMORY_COST=memory, ARGON2_TIME_COST=time)


def test_production_reports_every_problem_at_once_one_per_line() -> None:
    with pytest.raises(ValidationError) as refused:
        production(
            SECRET_KEY="a" * 38,
            FIRST_SUPERUSER_PASSWORD="x",
            BACKEND_CORS_ORIGINS="null",
            ARGON2_TIME_COST=1,
            DATABASE_URL="sqlite:///./app.db",
        )
    lines = str(refused.value).splitlines()
    for field in (
        "SECRET_KEY",
        "FIRST_SUPERUSER_PASSWORD",
        "BACKEND_CORS_ORIGINS",
        "ARGON2_MEMORY_COST",
        "DATABASE_URL",
    ):
        assert sum(line.startswith(field) for line in lines) == 1, (field, lines)


def test_refusal_does_not_echo_the_secret() -> None:
    with pytest.raises(ValidationError) as refused:
        production(SECRET_KEY="short-but-secret")
    assert "short-but-secret" not in str(refused.value)


def test_development_works_with_no_setup() -> None:
    settings = Settings(_env_file=None)
    assert settings.SECRET_KEY == DEV_SECRET_KEY
    assert settings.DATABASE_URL.startswith("sqlite+aiosqlite://")
    assert settings.log_json is False


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_url_gets_an_async_driver(given: str, expected: str) -> None:
    assert expected == Settings(_env_file=None, DATABASE_URL=given).DATABASE_URL


@pytest.mark.parametrize(
    "value", ["http://a.example, https://b.example/", '["http://a.example", "https://b.example/"]']
)
def test_cors_origins_are_comma_separated_or_json_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BACKEND_CORS_ORIGINS", value)
    assert Settings(_env_file=None).BACKEND_CORS_ORIGINS == [
        "http://a.example",
        "https://b.example",
    ]


def test_an_invalid_setting_stops_the_process_with_one_line_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("REDIS_URL", "http://not-redis")
    monkeypatch.setenv("SMTP_PORT", "0")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as stopped:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert stopped.value.code == 3  # uvicorn's "failed to start"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "refusing to start, the settings are invalid:"
    assert "  REDIS_URL must start with redis://, rediss:// or unix://" in lines
    assert any(line.startswith("  SMTP_PORT: ") for line in lines), lines
    assert len(lines) == 3


@pytest.mark.parametrize("given", ["info", "INFO", "Info", "iNfO"])
def test_log_level_is_case_insensitive(given: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", given)
    assert Settings(_env_file=None).LOG_LEVEL == "INFO"
    assert Settings(_env_file=None, LOG_LEVEL="warning").LOG_LEVEL == "WARNING"


@pytest.mark.parametrize("given", ["verbose", "", "INFO ", "critical", 20])
def test_an_unknown_log_level_names_the_allowed_ones(given: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, LOG_LEVEL=given)
    (error,) = refused.value.errors()
    assert error["loc"] == ("LOG_LEVEL",)
    assert error["msg"] == (
        "Value error, LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR (any case)"
    )
