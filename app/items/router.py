from fastapi import APIRouter

from app.core import crud as core_crud
from app.core.deps import SessionDep
from app.core.pagination import PageDep
from app.core.problems import problem_responses
from app.core.schemas import Message
from app.items import crud
from app.items.deps import OwnedItem
from app.items.models import Item
from app.items.schemas import ItemCreate, ItemPublic, ItemReplace, ItemsPublic, ItemUpdate
from app.users.deps import CurrentUser

router = APIRouter(prefix="/items", tags=["items"])

# Every route with an {item_id}: missing, and not yours, look the same.
NOT_FOUND = problem_responses(404)


@router.get("/", response_model=ItemsPublic)
async def read_items(user: CurrentUser, session: SessionDep, page: PageDep) -> ItemsPublic:
    """Your items, newest first; a superuser sees everyone's."""
    owner_id = None if user.is_superuser else user.id
    return ItemsPublic.model_validate(await crud.list_page(session, owner_id=owner_id, page=page))


@router.post("/", status_code=201, response_model=ItemPublic)
async def create_item(item_in: ItemCreate, user: CurrentUser, session: SessionDep) -> Item:
    return await crud.create(
        session, owner_id=user.id, title=item_in.title, description=item_in.description
    )


@router.get("/{id:uuid}", response_model=ItemPublic, responses=NOT_FOUND)
async def read_item(item: OwnedItem) -> Item:
    return item


@router.put("/{id:uuid}", response_model=ItemPublic, responses=NOT_FOUND)
async def update_item(item_in: ItemReplace, item: OwnedItem, session: SessionDep) -> Item:
    return await core_crud.update(session, item, changes=item_in.model_dump())


@router.patch("/{id:uuid}", response_model=ItemPublic, responses=NOT_FOUND)
async def patch_item(item_in: ItemUpdate, item: OwnedItem, session: SessionDep) -> Item:
    return await core_crud.update(session, item, changes=item_in.model_dump(exclude_unset=True))


@router.delete("/{id:uuid}", response_model=Message, responses=NOT_FOUND)
async def delete_item(item: OwnedItem, session: SessionDep) -> Message:
    await core_crud.delete(session, item)
    return Message(message="Item deleted successfully")
