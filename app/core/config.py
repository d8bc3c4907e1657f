"""One typed Settings for the whole service, read from the environment and `.env`."""

import json
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from pydantic import EmailStr, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Usable with no setup on a laptop; the app refuses to start with them in production.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789"  # noqa: S105
DEV_SUPERUSER_PASSWORD = "changethis"  # noqa: S105

# Part of the contract with clients, so a constant rather than a setting.
API_V1_PREFIX = "/api/v1"


def normalize_database_url(url: str) -> str:
    """Pick the async driver for plain `postgresql://` and `sqlite://` URLs."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url.removeprefix(plain)
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,
        # A refused setting must not print the secret it was given.
        hide_input_in_errors=True,
    )

    ENVIRONMENT: Literal["local", "test", "staging", "production"] = "local"
    """Where the service runs. `production` enables the safety checks and JSON logs."""

    PROJECT_NAME: str = "FastAPI Service"
    """Shown in the OpenAPI docs."""

    SECRET_KEY: str = DEV_SECRET_KEY
    """Key that signs access tokens (HS256). At least 32 characters; required in production."""

    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=60 * 24 * 8, ge=1)
    """Lifetime of an access token, in minutes."""

    DATABASE_URL: str = "sqlite+aiosqlite:///./app.db"
    """SQLAlchemy URL. `postgresql://` uses asyncpg, `sqlite://` uses aiosqlite."""

    DB_POOL_SIZE: int = Field(default=10, ge=1)
    """Connections kept open per process (PostgreSQL)."""

    DB_MAX_OVERFLOW: int = Field(default=10, ge=0)
    """Extra connections opened under load beyond the pool size (PostgreSQL)."""

    DB_ECHO: bool = False
    """Log every SQL statement (development only)."""

    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413 before they are read into memory."""

    BACKEND_CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    """Origins allowed by CORS, comma-separated (e.g. `http://localhost:5173,https://app.example.com`)."""

    FIRST_SUPERUSER: EmailStr = "admin@example.com"
    """Email of the superuser created on start when it does not exist."""

    FIRST_SUPERUSER_PASSWORD: str = DEV_SUPERUSER_PASSWORD
    """Password of that superuser; required in production."""

    USERS_OPEN_REGISTRATION: bool = True
    """Whether anyone may sign up through `POST /users/signup`."""

    ARGON2_TIME_COST: int = Field(default=3, ge=1)
    """argon2id iterations. OWASP minimum: 2 (with 19 MiB)."""

    ARGON2_MEMORY_COST: int = Field(default=65536, ge=8)
    """argon2id memory in KiB. OWASP minimum: 19456 (19 MiB)."""

    ARGON2_PARALLELISM: int = Field(default=4, ge=1)
    """argon2id lanes."""

    FRONTEND_HOST: str = "http://localhost:5173"
    """Base URL of the frontend; emails link to `{FRONTEND_HOST}/reset-password?token=...`."""

    SMTP_HOST: str | None = None
    """SMTP server. Emails are sent when this and `EMAILS_FROM_EMAIL` are set; otherwise each
    message is written to the log instead."""

    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    """SMTP port: 587 for STARTTLS, 465 for implicit TLS, 25 or 1025 for a local relay."""

    SMTP_TLS: bool = True
    """Require STARTTLS after connecting."""

    SMTP_SSL: bool = False
    """Connect with implicit TLS (port 465); takes precedence over `SMTP_TLS`."""

    SMTP_USER: str | None = None
    """SMTP login, when the server asks for one."""

    SMTP_PASSWORD: SecretStr | None = None
    """SMTP password."""

    SMTP_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    """Longest wait for the SMTP server per message before it is retried later."""

    EMAILS_FROM_EMAIL: EmailStr | None = None
    """Sender address of every email."""

    EMAILS_FROM_NAME: str | None = None
    """Sender name; defaults to `PROJECT_NAME`."""

    EMAIL_RESET_TOKEN_EXPIRE_HOURS: int = Field(default=1, ge=1, le=72)
    """Lifetime of the link in a password recovery email."""

    EMAIL_SENDER: bool = True
    """Run the email sender in this process. Every instance may (PostgreSQL hands each email to
    one of them); turn it off where another process delivers the outbox."""

    EMAIL_POLL_SECONDS: float = Field(default=1.0, gt=0)
    """How often each instance looks for emails to send (another process may have queued them)."""

    EMAIL_RETRY_SECONDS: float = Field(default=5.0, gt=0)
    """First delay before an email that could not be sent is tried again; doubles each time."""

    EMAIL_RETRY_MAX_SECONDS: float = Field(default=600.0, gt=0)
    """Longest delay between two tries of one email."""

    EMAIL_MAX_ATTEMPTS: int = Field(default=30, ge=1)
    """Tries before an email is given up (status `failed`, logged as an error)."""

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Minimum level of log lines."""

    LOG_JSON: bool | None = None
    """JSON log lines; defaults to on in production and off elsewhere."""

    @field_validator("BACKEND_CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("["):
            value = json.loads(value)  # the JSON list form other templates use
        if isinstance(value, list):
            return [str(origin).strip().rstrip("/") for origin in value]
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("FRONTEND_HOST")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("DATABASE_URL")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @field_validator("FIRST_SUPERUSER")
    @classmethod
    def _lower_email(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.ENVIRONMENT != "production":
            return self
        problems = []
        if self.SECRET_KEY == DEV_SECRET_KEY or len(self.SECRET_KEY) < 32:
            problems.append(
                "SECRET_KEY must be set to a random value of at least 32 characters "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        if self.FIRST_SUPERUSER_PASSWORD == DEV_SUPERUSER_PASSWORD:
            problems.append("FIRST_SUPERUSER_PASSWORD must be changed from the default")
        if self.is_sqlite:
            problems.append(
                "DATABASE_URL must point at PostgreSQL: a SQLite file is not shared between "
                "instances"
            )
        if "*" in self.BACKEND_CORS_ORIGINS:
            problems.append("BACKEND_CORS_ORIGINS may not contain '*' (credentials are allowed)")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def emails_enabled(self) -> bool:
        return bool(self.SMTP_HOST and self.EMAILS_FROM_EMAIL)

    @property
    def log_json(self) -> bool:
        return self.LOG_JSON if self.LOG_JSON is not None else self.ENVIRONMENT == "production"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once. The app keeps the `Settings` it was built with in
    `app.state.settings` (what `SettingsDep` reads), so tests build apps with their own
    (`create_app(settings)`) instead of touching this cache."""
    return Settings()
