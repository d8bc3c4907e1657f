import factory

from app.items.models import Item
from tests.factories import AsyncFactory


class ItemFactory(AsyncFactory[Item]):
    """Needs `owner_id=`: an item always belongs to a user."""

    class Meta:
        model = Item

    title = factory.Sequence(lambda n: f"Item {n}")
    description = factory.Faker("sentence")
