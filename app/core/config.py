"""One typed Settings for the whole service, read from the environment and `.env`."""

import ipaddress
import json
import os
import sys
from functools import lru_cache
from typing import Annotated, Any, Literal, Self, get_args

import limits
from pydantic import (
    EmailStr,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.oidc_provider import OidcProvider

# Usable with no setup on a laptop; the app refuses to start with them in production.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789"  # noqa: S105
DEV_SUPERUSER_PASSWORD = "changethis"  # noqa: S105

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# Part of the contract with clients, so a constant rather than a setting.
API_V1_PREFIX = "/api/v1"

# Production refuses weaker values (see `Settings._refuse_unsafe_production`).
SECRET_KEY_MIN_DISTINCT = 16
SUPERUSER_PASSWORD_MIN_LENGTH = 12
# OWASP Password Storage Cheat Sheet: argon2id (memory KiB, iterations) pairs of equal strength,
# with one degree of parallelism; any one of them is the minimum.
OWASP_ARGON2_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


def _owasp_argon2(memory_kib: int, time_cost: int) -> bool:
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_ARGON2_MINIMUMS)


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
    """Key that signs access tokens (HS256). At least 32 characters; required in production,
    and random there (at least 16 distinct characters)."""

    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1)
    """Lifetime of an access token, in minutes. Clients renew it with their refresh token; raise
    it (the full-stack template used 11520, 8 days) for clients that cannot."""

    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=30, ge=1)
    """Lifetime of a refresh token; each refresh issues a new one with a new lifetime."""

    REFRESH_REUSE_GRACE_SECONDS: float = Field(default=2.0, ge=0, le=60)
    """A rotated refresh token presented again within this many seconds of its rotation is taken
    for a client's own race (two tabs refreshing at once): refused, but the session lives on.
    Later, it is theft: the session ends."""

    REFRESH_TOKEN_COOKIE: bool = False
    """Browser mode: the refresh token travels in a `Secure; HttpOnly; SameSite=Strict` cookie
    scoped to `/api/v1/login/refresh` (not in the response body), and a refresh by cookie needs
    the `X-CSRF-Token` header to equal the `csrf_token` cookie."""

    DATABASE_URL: str = "sqlite+aiosqlite:///./app.db"
    """SQLAlchemy URL. `postgresql://` uses asyncpg, `sqlite://` uses aiosqlite."""

    DB_POOL_SIZE: int = Field(default=10, ge=1)
    """Connections kept open per process (PostgreSQL)."""

    DB_MAX_OVERFLOW: int = Field(default=0, ge=0)
    """Extra connections opened under load beyond the pool size (PostgreSQL). Each is closed
    when handed back to a full pool, so under steady load above the pool size every such request
    paid for a new connection: at 32 concurrent `GET /items/{id}`, 10 overflow cost ~10 % more
    CPU per request than none (bench/README.md). Requests wait for a pooled connection instead,
    up to `DB_POOL_TIMEOUT_SECONDS`."""

    DB_ECHO: bool = False
    """Log every SQL statement (development only)."""

    DB_CONNECT_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    """Longest wait to open a database connection (TCP, TLS and login, PostgreSQL); a request
    that needs one answers 503 with `Retry-After` after it."""

    DB_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    """Longest wait for a pooled connection while all are in use; then 503 with `Retry-After`."""

    DB_STATEMENT_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0)
    """Longest a statement may run: PostgreSQL cancels it (`statement_timeout`), and the driver
    gives up one second later when the server does not answer at all (a frozen server or a lost
    network). Either way the request answers 503 with `Retry-After`. Migrations are not bound."""

    DB_PGBOUNCER_TRANSACTION_MODE: bool = False
    """`DATABASE_URL` is a PgBouncer in `pool_mode = transaction` (PostgreSQL): consecutive
    transactions of one connection may run on different server connections, so no statement is
    kept prepared between them (each is sent unnamed, and parsed once more when run), and
    `DB_STATEMENT_TIMEOUT_SECONDS` is not sent (PgBouncer refuses it as a connection parameter):
    the driver still gives up at it plus a second, but the statement runs on, holding a server
    connection. Set it on the database role too (`ALTER ROLE ... SET statement_timeout = '5s'`)
    for PostgreSQL to cancel a slow statement itself."""

    HEALTH_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0)
    """Longest the readiness and health checks wait for each dependency (database, Redis) before
    they answer 503."""

    MAX_REQUEST_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413 before they are read into memory."""

    MAX_REQUEST_HEADER_BYTES: int = Field(default=32 * 1024, ge=1024)
    """Larger request heads (request line and headers) are refused with 431 and the connection
    closed, counted as they arrive (never buffered beyond this plus one read). Enforced by the
    server's protocol, `app.core.protocol:HttpToolsProtocol` (`uvicorn --http ...`)."""

    MAX_REQUEST_HEADERS: int = Field(default=100, ge=10)
    """Requests with more header lines are refused with 431 (same protocol)."""

    DOCS_ENABLED: bool | None = None
    """Serve the OpenAPI document and the interactive docs (`/docs`, `/redoc`); defaults to on
    except in production. Off, they are 404s."""

    BACKEND_CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    """Origins allowed by CORS, comma-separated (e.g. `http://localhost:5173,https://app.example.com`)."""

    FIRST_SUPERUSER: EmailStr = "admin@example.com"
    """Email of the superuser created on start when it does not exist."""

    FIRST_SUPERUSER_PASSWORD: str = DEV_SUPERUSER_PASSWORD
    """Password of that superuser; required in production, and there at least 12 characters and
    not the email."""

    USERS_OPEN_REGISTRATION: bool = True
    """Whether anyone may sign up through `POST /users/signup`."""

    IDEMPOTENCY_KEY_TTL_HOURS: int = Field(default=24, ge=1)
    """How long an `Idempotency-Key` of `POST /items/` or `POST /users/` is remembered: a retry
    with it within this time gets the first answer again; after it, the key is new again."""

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

    REDIS_URL: str | None = None
    """Redis shared by every instance (`redis://host:6379/0`, `rediss://`, `unix://`): where
    request limits are counted. Unset, each process counts in its own memory, so N instances
    allow N times the limits."""

    THROTTLE_ENABLED: bool = True
    """Count and limit the attempts of the throttled routes (sign-up, recovery, login, refresh)."""

    THROTTLE_FAIL_OPEN: bool = True
    """When Redis cannot be reached: serve the throttled routes without limits (true, and one
    `throttle.degraded` warning), or refuse them with 503 (false)."""

    TRUSTED_PROXIES: Annotated[list[str], NoDecode] = []
    """Addresses or networks of the reverse proxies whose `X-Forwarded-For` is believed,
    comma-separated (e.g. `10.0.0.0/8,127.0.0.1`). From anyone else the header is ignored."""

    THROTTLE_LOGIN_FAILURES_PER_ACCOUNT: str = "10/15 minutes"
    """Failed logins allowed per account (email), in the `limits` notation (`count/period`)."""

    THROTTLE_LOGIN_FAILURES_PER_ADDRESS: str = "100/15 minutes"
    """Failed logins allowed per client address."""

    THROTTLE_SIGNUP_PER_ADDRESS: str = "60/hour"
    """Sign-ups (`POST /users/signup`) allowed per client address."""

    THROTTLE_RECOVERY_PER_ADDRESS: str = "60/hour"
    """Password recovery requests allowed per client address."""

    THROTTLE_REFRESH_PER_SESSION: str = "60/minute"
    """Token refreshes allowed per session."""

    HASH_QUEUE_MAX: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=0)
    """Logins that may wait for a password-hashing thread (per process; one thread per core);
    one more is refused at once with 503 and `Retry-After`. Default: twice the cores, so a
    burst of a few logins per core waits a second or two instead of failing, while a flood gets
    fast 503s rather than ever-longer waits that add no throughput (every core is hashing).
    Sign-up, password change and reset never wait in this queue."""

    OIDC_PROVIDERS: list[OidcProvider] = []
    """OpenID Connect providers to sign in with, as a JSON list of objects with `name`, `issuer`,
    `client_id`, `client_secret` and optionally `scopes`. Each provider's redirect URI is
    `https://<this API>/api/v1/login/oidc/{name}/callback`."""

    @field_validator("OIDC_PROVIDERS")
    @classmethod
    def _unique_provider_names(cls, value: list[OidcProvider]) -> list[OidcProvider]:
        names = [provider.name for provider in value]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"OIDC_PROVIDERS names must be unique; listed twice: {twice}")
        return value

    LOG_LEVEL: LogLevel = "INFO"
    """Minimum level of log lines: `DEBUG`, `INFO`, `WARNING` or `ERROR`, in any case."""

    LOG_JSON: bool | None = None
    """JSON log lines; defaults to on in production and off elsewhere."""

    METRICS_ENABLED: bool = True
    """Serve Prometheus metrics at `/metrics`; off, it is a 404."""

    METRICS_BEARER_TOKEN: SecretStr | None = None
    """When set, `/metrics` needs `Authorization: Bearer <this token>`; otherwise 401."""

    METRICS_DB_MAX_AGE_SECONDS: float = Field(default=15.0, ge=0)
    """How long each process reuses what a scrape read from the database (emails pending)."""

    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    """OTLP/HTTP collector URL (`http://collector:4318`): when set, requests and SQL statements
    are traced and spans sent to `<this>/v1/traces`. Unset, tracing is off and costs nothing."""

    OTEL_SERVICE_NAME: str | None = None
    """The traces' `service.name`; defaults to `PROJECT_NAME`."""

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in get_args(LogLevel):
            return value.upper()  # `info` as well as `INFO`: logging's names, any case
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(get_args(LogLevel))} (any case)")

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

    @field_validator("TRUSTED_PROXIES", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [str(proxy).strip() for proxy in value if str(proxy).strip()]
            for proxy in value:
                ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if not value:  # `REDIS_URL=` in a .env file means unset
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator(
        "THROTTLE_LOGIN_FAILURES_PER_ACCOUNT",
        "THROTTLE_LOGIN_FAILURES_PER_ADDRESS",
        "THROTTLE_SIGNUP_PER_ADDRESS",
        "THROTTLE_RECOVERY_PER_ADDRESS",
        "THROTTLE_REFRESH_PER_SESSION",
    )
    @classmethod
    def _one_limit(cls, value: str) -> str:
        try:
            items = limits.parse_many(value)
        except ValueError:
            items = []
        if len(items) != 1 or items[0].amount < 1 or items[0].multiples < 1:
            raise ValueError(
                f"{value!r} is not one limit: write `count/period` with a count of at least 1, "
                "e.g. `10/15 minutes`, `60/hour` or `5 per minute`"
            )
        return value

    @field_validator("METRICS_BEARER_TOKEN", "OTEL_EXPORTER_OTLP_ENDPOINT", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value  # `NAME=` in a .env file means unset

    @field_validator("OTEL_EXPORTER_OTLP_ENDPOINT")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("OTEL_EXPORTER_OTLP_ENDPOINT is an http:// or https:// URL")
        return value.rstrip("/") if value else value

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
        # Every problem at once, one per line: a deploy should not fail five times in a row.
        problems = []
        if self.SECRET_KEY == DEV_SECRET_KEY or len(self.SECRET_KEY) < 32:
            problems.append(
                "SECRET_KEY must be set to a random value of at least 32 characters "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        elif len(set(self.SECRET_KEY)) < SECRET_KEY_MIN_DISTINCT:
            problems.append(
                f"SECRET_KEY must be random: it has fewer than {SECRET_KEY_MIN_DISTINCT} distinct "
                'characters (python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        if self.FIRST_SUPERUSER_PASSWORD == DEV_SUPERUSER_PASSWORD:
            problems.append("FIRST_SUPERUSER_PASSWORD must be changed from the default")
        elif len(self.FIRST_SUPERUSER_PASSWORD) < SUPERUSER_PASSWORD_MIN_LENGTH:
            problems.append(
                f"FIRST_SUPERUSER_PASSWORD must be at least {SUPERUSER_PASSWORD_MIN_LENGTH} "
                "characters long"
            )
        elif self.FIRST_SUPERUSER_PASSWORD.lower() == self.FIRST_SUPERUSER.lower():
            problems.append("FIRST_SUPERUSER_PASSWORD must not be the superuser's email")
        if self.is_sqlite:
            problems.append(
                "DATABASE_URL must point at PostgreSQL: a SQLite file is not shared between "
                "instances"
            )
        if bad := [o for o in self.BACKEND_CORS_ORIGINS if o.lower() == "null" or "*" in o]:
            problems.append(
                f"BACKEND_CORS_ORIGINS may not contain {', '.join(map(repr, bad))}: credentials "
                "are allowed, so list exact origins (`null` is any sandboxed page or file)"
            )
        if not _owasp_argon2(self.ARGON2_MEMORY_COST, self.ARGON2_TIME_COST):
            problems.append(
                f"ARGON2_MEMORY_COST={self.ARGON2_MEMORY_COST} with ARGON2_TIME_COST="
                f"{self.ARGON2_TIME_COST} is below the OWASP minimum for argon2id: 19456 KiB with "
                "2 iterations (or 47104/1, 12288/3, 9216/4, 7168/5)"
            )
        if problems:
            raise ValueError("unsafe production settings:\n" + "\n".join(problems))
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

    @property
    def docs_enabled(self) -> bool:
        if self.DOCS_ENABLED is not None:
            return self.DOCS_ENABLED
        return self.ENVIRONMENT != "production"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once. The app keeps the `Settings` it was built with in
    `app.state.settings` (what `SettingsDep` reads), so tests build apps with their own
    (`create_app(settings)`) instead of touching this cache."""
    try:
        return Settings()
    except ValidationError as error:
        # A deploy log should say what to fix, once per problem, without a traceback around it.
        # Exit status 3 is uvicorn's "failed to start": with --workers, the parent stops too
        # instead of restarting the worker forever.
        lines = [f"  {line}" for line in refusals(error)]
        print("refusing to start, the settings are invalid:", *lines, sep="\n", file=sys.stderr)
        raise SystemExit(3) from None


def refusals(error: ValidationError) -> list[str]:
    """What is wrong with the settings, one line per problem, each naming the setting."""
    lines = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in problem["loc"])
        for line in message.splitlines():
            named = not field or line.startswith(field)
            lines.append(line if named else f"{field}: {line}")
    return lines
