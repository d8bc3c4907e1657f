# Production image: the locked dependencies in a virtualenv, the source tree, a non-root user.
#
#   docker build -t app .
#   docker run --rm -e DATABASE_URL=... -e SECRET_KEY=... -e FIRST_SUPERUSER_PASSWORD=... app python -m app migrate
#   docker run -d -p 8000:8000 -e DATABASE_URL=... -e SECRET_KEY=... -e FIRST_SUPERUSER_PASSWORD=... app
#
# compose.yaml runs it with PostgreSQL and Redis. Without DATABASE_URL it uses SQLite in /data,
# which production refuses (one file cannot be shared between instances); for a single-instance
# trial: -e ENVIRONMENT=staging -v appdata:/data (README "Deployment").
#
# Migrations are NOT run when the container starts: with several replicas (or WEB_CONCURRENCY > 1)
# they would race each other, and a failed migration should stop the deploy, not crash-loop the
# service. Run `python -m app migrate` in the image as a separate deploy step, before rolling out.

# Both stages must use the same image: the venv's `python` is a symlink to this image's interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# UV_PROJECT_ENVIRONMENT: the same path as in the runtime stage, because console scripts (uvicorn,
#   alembic) hard-code it in their shebang.
# UV_PYTHON, UV_PYTHON_DOWNLOADS: the image's interpreter, never one uv downloads, since it must
#   exist in the runtime stage too.
# UV_COMPILE_BYTECODE: the runtime user cannot write __pycache__, so compile once here instead of
#   on every start.
# UV_LINK_MODE: the uv cache is a separate mount, and uv cannot hardlink across it.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# Same uv as the Makefile, so the lockfile is read the way it was written.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app

# Only the dependency manifests: this layer is rebuilt when uv.lock changes, not on every code edit.
# pyproject sets `package = false`, so the sync needs no source code.
COPY pyproject.toml uv.lock ./
# --frozen: install exactly uv.lock and fail if it is out of date with pyproject.toml.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev


FROM ${PYTHON_IMAGE} AS runtime

# ENVIRONMENT=production turns on the settings' safety checks (the app refuses to start without a
# real SECRET_KEY and FIRST_SUPERUSER_PASSWORD) and JSON logs.
# UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN (uvicorn's --timeout-graceful-shutdown): on SIGTERM, requests
# in flight get this many seconds to finish; keep it below the orchestrator's kill timeout
# (docker stop: 10 s; Kubernetes: terminationGracePeriodSeconds, 30 s), so the pools are closed.
# MALLOC_ARENA_MAX: password hashing runs in threads and argon2id allocates tens of MiB per hash;
#   glibc gives each thread its own malloc arena and keeps the freed memory in it. A 60 s
#   `make soak` (one worker) grew from 149 to 420 MiB without it and to 191 MiB with 2.
# DATABASE_URL: SQLite in the /data volume, the one place the app user may write.
# PORT: where the server listens (app/serve.py passes it to uvicorn) and the health check asks.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:${PATH}" \
    ENVIRONMENT=production \
    UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=8 \
    MALLOC_ARENA_MAX=2 \
    DATABASE_URL=sqlite+aiosqlite:////data/app.db \
    PORT=8000

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it and volume permissions are stable.
# /data: the app user's only writable directory (a SQLite database); a new named volume mounted
# there starts as a copy of it, owner included.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app \
    && install --directory --owner=app --group=app --mode=0700 /data
VOLUME /data

WORKDIR /app

# Owned by root and read-only to the app user: a compromised process cannot rewrite its own code.
COPY --from=build /app/.venv /app/.venv
COPY alembic.ini ./
COPY app ./app
# The app user cannot write __pycache__ (and PYTHONDONTWRITEBYTECODE says not to try): without
# this, every start compiles every module again.
RUN python -m compileall -q app

USER 10001:10001

EXPOSE 8000

# The health check also queries the database, so it reports "cannot serve requests", not just
# "process alive". slim has no curl; the interpreter is already here. urlopen raises on non-2xx.
# The port as app/serve.py picks it (--port aside): UVICORN_PORT, then PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('UVICORN_PORT') or os.environ.get('PORT') or '8000'; urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/utils/health-check/', timeout=4)"]

# Worker processes: uvicorn reads WEB_CONCURRENCY itself (`-e WEB_CONCURRENCY=4`); default 1, which
# suits one container per core under an orchestrator.
# --proxy-headers: behind a TLS-terminating load balancer, the scheme and client address come
# from its X-Forwarded-* headers, believed only from the addresses in FORWARDED_ALLOW_IPS (set it,
# and TRUSTED_PROXIES, to the load balancer's addresses; uvicorn's default is 127.0.0.1). Never
# `--forwarded-allow-ips=*`: any client could then name its own address and dodge the
# per-address limits.
# --no-access-log: RequestContextMiddleware already logs each request once, with its request id.
# `python -m app serve`: uvicorn's command line (all its options and UVICORN_* variables) for
# app.main:create_app, with a shutdown that loses no request, also with several workers (see
# app/serve.py), and by default `--http app.core.protocol:HttpToolsProtocol`: httptools with a
# bound on the request headers (MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS); plain httptools
# has none.
# Exec form: the server is PID 1 and gets SIGTERM directly, so it shuts down gracefully. It cannot
# expand $PORT, hence no --port here: the server reads PORT (app/serve.py).
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--proxy-headers", "--no-access-log"]
