import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.core.deps import SessionDep
from app.items import crud
from app.items.errors import ItemNotFound
from app.items.models import Item
from app.users.deps import CurrentUser

# The full-stack template names this path parameter `id`; clients generated from it pass `id`.
ItemId = Annotated[uuid.UUID, Path(alias="id")]


async def get_owned_item(item_id: ItemId, user: CurrentUser, session: SessionDep) -> Item:
    """The item, for its owner or a superuser.

    Someone else's item is a 404 like a missing one, so ids do not reveal what exists.
    """
    owner_id = None if user.is_superuser else user.id
    item = await crud.get_visible(session, item_id, owner_id=owner_id)
    if item is None:
        raise ItemNotFound()
    return item


OwnedItem = Annotated[Item, Depends(get_owned_item)]
