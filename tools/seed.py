"""`make seed`: fill a development database with realistic users and their items.

    python -m tools.seed [--users 25] [--items 40] [--password PASSWORD]

The database is the app's (`DATABASE_URL`, `.env`), migrated by `make seed` first. Users and items
are built by the tests' own factory-boy factories with Faker names, emails and texts, so the seed
looks like the data the tests use. Every seeded user can log in with the one password printed at
the end (hashed once, with the app's own argon2 settings). Running it again adds more users: their
emails carry a random tag, so they never collide with earlier seeds or real accounts.

It refuses `ENVIRONMENT=production`: fake accounts with a shared, printed password do not belong
there.
"""

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence

from factory.faker import Faker
from rich.progress import Progress
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.security import get_passwords
from app.items.models import Item
from app.users.models import User
from tests.items.factories import ItemFactory
from tests.users.factories import UserFactory

DEFAULT_PASSWORD = "seeded-password-123"  # noqa: S105 - development data, printed
# Rows written per transaction: one commit per batch keeps a large seed's memory flat.
BATCH = 500


def _email(full_name: str, tag: str, n: int) -> str:
    local = ".".join(part for part in full_name.lower().split() if part.isalpha()) or "user"
    return f"{local}.{tag}{n}@example.com"


async def _flush(session: AsyncSession, rows: Sequence[User | Item]) -> None:
    session.add_all(rows)
    await session.commit()


async def seed(settings: Settings, *, users: int, items: int, password: str) -> tuple[int, int]:
    """Add `users` users with `items` items each; returns what was added."""
    hashed = await get_passwords(settings).hash(password)
    tag = secrets.token_hex(3)
    engine = create_engine(settings, statement_timeout=False)
    sessionmaker = create_sessionmaker(engine)
    added_users = added_items = 0
    try:
        with Progress() as progress:
            task = progress.add_task("seeding", total=users * (1 + items))
            async with sessionmaker() as session:
                for n in range(users):
                    # A Faker name, and an email made from it that no other seed or account has.
                    user = UserFactory.build(hashed_password=hashed)
                    user.email = _email(user.full_name or "", tag, n)
                    await _flush(session, [user])
                    added_users += 1
                    progress.advance(task)
                    for start in range(0, items, BATCH):
                        size = min(BATCH, items - start)
                        batch = ItemFactory.build_batch(
                            size, owner_id=user.id, title=Faker("catch_phrase")
                        )
                        await _flush(session, batch)
                        added_items += size
                        progress.advance(task, size)
    finally:
        await engine.dispose()
    return added_users, added_items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.seed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=25, help="users to add (default 25)")
    parser.add_argument("--items", type=int, default=40, help="items per user (default 40)")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="every seeded user's")
    args = parser.parse_args(argv)
    if args.users < 0 or args.items < 0:
        parser.error("--users and --items must not be negative")
    if len(args.password) < 8:
        parser.error("--password must be at least 8 characters, as the API requires")
    settings = Settings()
    if settings.ENVIRONMENT == "production":
        print("refusing to seed: ENVIRONMENT is production", file=sys.stderr)
        return 2
    users, items = asyncio.run(
        seed(settings, users=args.users, items=args.items, password=args.password)
    )
    print(f"added {users} users and {items} items; every seeded user's password: {args.password}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
