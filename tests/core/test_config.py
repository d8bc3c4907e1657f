import pytest
from pydantic import ValidationError

from app.core.config import DEV_SECRET_KEY, Settings

STRONG_SECRET = "x" * 40


def production(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "ENVIRONMENT": "production",
        "SECRET_KEY": STRONG_SECRET,
        "FIRST_SUPERUSER_PASSWORD": "a-real-password",
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
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        production(**overrides)


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
