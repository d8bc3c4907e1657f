"""`python -m app COMMAND`: serve, migrate, create-superuser, check-settings, openapi.

Every command reads the same settings as the app (the environment, then `.env`).
"""

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from app import features
from app.core.config import SUPERUSER_PASSWORD_MIN_LENGTH, Settings, get_settings, refusals
from app.core.db import create_engine, create_sessionmaker
from app.core.logging import setup_logging
from app.core.security import get_passwords
from app.serve import run as run_server
from app.users import service as users_service
from app.users.errors import EmailAlreadyRegistered
from app.users.schemas import UserCreate, UserUpdate

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
APP = "app.main:create_app"
# httptools with a bound on request heads (MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS).
PROTOCOL = "app.core.protocol:HttpToolsProtocol"

cli = typer.Typer(
    help="The service's commands. Settings come from the environment and .env.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@cli.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,  # `serve --help` is uvicorn's, which lists every option
)
def serve(ctx: typer.Context) -> None:
    """Serve the app: uvicorn's options (see `serve --help`), losing no request on SIGTERM.

    The app and `--factory` are given; `--http` defaults to the bounded httptools protocol.
    The shutdown is app/serve.py's: requests in flight are answered, with several workers too.
    """
    args = list(ctx.args)
    if not any(arg == "--http" or arg.startswith("--http=") for arg in args):
        args = ["--http", PROTOCOL, *args]
    run_server([APP, "--factory", *args], prog_name="python -m app serve")


@cli.command()
def migrate() -> None:
    """Upgrade the database (DATABASE_URL) to the latest migration (alembic upgrade head)."""
    get_settings()  # invalid settings: the app's own message, before alembic's traceback
    try:
        command.upgrade(Config(str(ALEMBIC_INI)), "head")
    except (DBAPIError, OSError) as error:
        _fail(f"migrate: the database refused: {_first_line(error)}")


def _first_line(error: Exception) -> str:
    # The driver's message (never the URL, which may hold a password).
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]


@cli.command("create-superuser")
def create_superuser(
    email: Annotated[str, typer.Argument(help="The account's email address.")],
    password_env: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Read the password from this environment variable instead of a prompt.",
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update", help="If the account exists: set its password, make it an active superuser."
        ),
    ] = False,
) -> None:
    """Create a superuser, or with --update promote an existing account.

    The password is asked twice, hidden, unless --password-env names a variable holding it.
    """
    settings = get_settings()
    if password_env is None:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = os.environ.get(password_env, "")
        if not password:
            _fail(f"create-superuser: the environment variable {password_env} is not set or empty")
    user_in = _superuser_in(email, password)
    setup_logging(settings)
    try:
        outcome = asyncio.run(_save_superuser(settings, user_in, update=update))
    except DBAPIError as error:
        _fail(
            f"create-superuser: the database refused: {_first_line(error)} "
            "(is it reachable and migrated? `python -m app migrate`)"
        )
    if outcome == "exists":
        _fail(f"create-superuser: {user_in.email} already exists (--update to promote it)")
    typer.echo(f"{outcome} superuser {user_in.email}")


def _superuser_in(email: str, password: str) -> UserCreate:
    """The account, by the API's own rules (an email that can receive mail, 8-128 characters),
    and production's for a superuser's password (`FIRST_SUPERUSER_PASSWORD`)."""
    try:
        user_in = UserCreate(email=email, password=password, is_superuser=True)
    except ValidationError as error:
        # Field and message only: the input would print the password.
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()]
        _fail("\n".join(["create-superuser: refused:", *lines]))
    if len(password) < SUPERUSER_PASSWORD_MIN_LENGTH:
        _fail(
            f"create-superuser: refused: a superuser's password has at least "
            f"{SUPERUSER_PASSWORD_MIN_LENGTH} characters"
        )
    if password.lower() == user_in.email:
        _fail("create-superuser: refused: the password is the email")
    return user_in


async def _save_superuser(settings: Settings, user_in: UserCreate, *, update: bool) -> str:
    """`created`, `updated` or `exists` (not changed, as `update` was not asked)."""
    features.import_models()
    engine = create_engine(settings)
    passwords = get_passwords(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await users_service.find_by_email(session, user_in.email)
            if user is None:
                try:
                    await users_service.create(session, passwords, user_in=user_in)
                    await session.commit()
                except EmailAlreadyRegistered:  # created by someone else meanwhile
                    return "exists"
                return "created"
            if not update:
                return "exists"
            changes = UserUpdate(password=user_in.password, is_active=True, is_superuser=True)
            # Ends the account's sessions: they were opened with the old password.
            await users_service.update(
                session, passwords, user, user_in=changes, acting_user=user, any_version=True
            )
            await session.commit()
            return "updated"
    finally:
        await engine.dispose()


@cli.command("check-settings")
def check_settings() -> None:
    """Say what production would refuse in these settings; exit 1 if anything.

    The checks are the app's own, run as it starts with ENVIRONMENT=production.
    """
    try:
        Settings(ENVIRONMENT="production")
    except ValidationError as error:
        lines = [f"  {line}" for line in refusals(error)]
        typer.echo("\n".join(["production would refuse these settings:", *lines]))
        raise typer.Exit(1) from None
    typer.echo("production would accept these settings")


def openapi_json(app: FastAPI) -> str:
    """The app's OpenAPI document as committed in openapi.json: sorted, indented, one newline."""
    document: dict[str, Any] = app.openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@cli.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it to this file.")
    ] = None,
) -> None:
    """Print the OpenAPI document, or write it (`make openapi`: openapi.json).

    It describes the code, whatever the environment or .env says.
    """
    # Imported here, not at the top: the app imports prometheus-client, which chooses its storage
    # when first imported, and `serve` must set PROMETHEUS_MULTIPROC_DIR before that.
    from app.main import create_app

    # The title (PROJECT_NAME) is the one setting the document shows.
    title = Settings.model_fields["PROJECT_NAME"].default
    text = openapi_json(
        create_app(Settings(_env_file=None, ENVIRONMENT="local", PROJECT_NAME=title))
    )
    if output is None:
        typer.echo(text, nl=False)
    elif not output.exists() or output.read_text() != text:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
