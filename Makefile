# Everything runs from a project-local virtualenv (.venv) that `uv` builds from uv.lock.
# A fresh machine needs only Python 3.11+ and make: the first target that needs .venv installs it.

PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test

export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.DEFAULT_GOAL := help
.PHONY: help install dev migrate migration feature test test-postgres contract lint contracts format bench soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

install: $(VENV)/.installed ## Create .venv with the locked dependencies

migrate: install ## Upgrade the database to the latest migration
	$(BIN)/alembic upgrade head

migration: install ## Autogenerate a migration with the next id: make migration m="orders: add status"
	@test -n "$(m)" || { echo 'usage: make migration m="<feature>: <what changes>"'; exit 2; }
	$(BIN)/python -m tools.scaffold migration "$(m)"

feature: install ## Generate a feature package, its tests and migration: make feature name=orders
	@test -n "$(name)" || { echo 'usage: make feature name=<plural> [singular=<singular>]'; exit 2; }
	$(BIN)/python -m tools.scaffold feature "$(name)" $(if $(singular),--singular "$(singular)")

dev: migrate ## Serve on HOST:PORT (127.0.0.1:8000) with reload
	$(BIN)/python -m app.serve app.main:create_app --factory --http app.core.protocol:HttpToolsProtocol \
		--reload --host $(HOST) --port $(PORT)

test: install ## Run the test suite (SQLite; TEST_DATABASE_URL picks another database)
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install ## Run the test suite on PostgreSQL (TEST_POSTGRES_URL)
	TEST_DATABASE_URL=$(TEST_POSTGRES_URL) $(BIN)/pytest $(PYTEST_ARGS)

contract: install ## Fuzz a real server against its OpenAPI schema (schemathesis; CONTRACT_DATABASE_URL)
	$(BIN)/python -m tests.contract.run $(if $(CONTRACT_DATABASE_URL),--database-url $(CONTRACT_DATABASE_URL))

lint: install ## ruff, ruff format --check, mypy --strict, import-linter, hadolint, compose schema
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m tools.contracts --check
	$(BIN)/lint-imports --no-logo
	$(BIN)/hadolint Dockerfile
# The Compose Specification's JSON schema, as vendored by check-jsonschema (pinned in uv.lock).
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

contracts: install ## Regenerate the import contracts (.importlinter) from app/features.py
	$(BIN)/python -m tools.contracts

bench: install ## wrk against ours, the same-work ceiling and the floor (BENCH_DATABASE_URL, BENCH_ARGS=--quick)
	$(BIN)/python -m bench.run $(if $(BENCH_DATABASE_URL),--database-url $(BENCH_DATABASE_URL)) $(BENCH_ARGS)

soak: install ## Mixed load on a real server, then check the database holds what clients were told (SOAK_DATABASE_URL)
	$(BIN)/python -m tests.soak.run $(if $(SOAK_DATABASE_URL),--database-url $(SOAK_DATABASE_URL)) $(SOAK_ARGS)

format: install ## Fix what ruff can fix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove the virtualenvs and caches
	rm -rf .tools $(VENV) .pytest_cache .mypy_cache .ruff_cache
