from factory.declarations import Sequence
from factory.faker import Faker

from app.items.models import Item
from tests.factories import AsyncFactory


class ItemFactory(AsyncFactory[Item]):
    """Needs `owner_id=`: an item always belongs to a user."""

    class Meta:
        model = Item

    title = Sequence(lambda n: f"Item {n}")
    description = Faker("sentence")
