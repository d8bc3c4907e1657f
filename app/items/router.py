from fastapi import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import crud as core_crud
from app.core.deps import SessionDep
from app.core.pagination import PageDep
from app.core.preconditions import (
    ETAG_HEADERS,
    IfMatch,
    IfMatchDep,
    IfNoneMatchDep,
    not_modified,
    read_responses,
    tag,
    write_responses,
)
from app.core.problems import problem_responses
from app.core.routing import FeatureRouter
from app.core.schemas import Message
from app.idempotency.deps import IdempotencyDep, idempotent_responses
from app.items import crud
from app.items.deps import OwnedItem
from app.items.errors import ItemNotFound
from app.items.models import Item
from app.items.schemas import ItemCreate, ItemPublic, ItemReplace, ItemsPublic, ItemUpdate
from app.users.deps import CurrentUser

router = FeatureRouter(prefix="/items", tags=["items"])

# Every route with an {item_id}: missing, and not yours, look the same.
NOT_FOUND = problem_responses(404)


@router.get("/", response_model=ItemsPublic)
async def read_items(user: CurrentUser, session: SessionDep, page: PageDep) -> ItemsPublic:
    """Your items, newest first; a superuser sees everyone's."""
    owner_id = None if user.is_superuser else user.id
    return ItemsPublic.model_validate(await crud.list_page(session, owner_id=owner_id, page=page))


@router.post(
    "/",
    status_code=201,
    response_model=ItemPublic,
    responses=idempotent_responses(201, ETAG_HEADERS),
)
async def create_item(
    item_in: ItemCreate,
    user: CurrentUser,
    session: SessionDep,
    idempotency: IdempotencyDep,
    response: Response,
) -> Item | Response:
    if (replay := await idempotency.claim(user.id, item_in)) is not None:
        return replay
    item = await crud.create(
        session, owner_id=user.id, title=item_in.title, description=item_in.description
    )
    tag(response, item.version)
    await idempotency.complete(response, ItemPublic.model_validate(item))
    return item


@router.get("/{id:uuid}", response_model=ItemPublic, responses={**NOT_FOUND, **read_responses()})
async def read_item(
    item: OwnedItem, if_none_match: IfNoneMatchDep, response: Response
) -> Item | Response:
    return not_modified(if_none_match, item.version, response) or item


async def _update(
    session: AsyncSession,
    item: Item,
    if_match: IfMatch,
    response: Response,
    changes: dict[str, object],
) -> Item:
    """PUT and PATCH: the changes, if `If-Match` holds (see `app.core.preconditions`)."""
    with if_match.write(item.version):
        await core_crud.update_versioned(
            session, item, changes=changes, any_version=if_match.any_version, gone=ItemNotFound
        )
    tag(response, item.version)
    return item


@router.put("/{id:uuid}", response_model=ItemPublic, responses={**NOT_FOUND, **write_responses()})
async def update_item(
    item_in: ItemReplace,
    item: OwnedItem,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> Item:
    return await _update(session, item, if_match, response, item_in.model_dump())


@router.patch("/{id:uuid}", response_model=ItemPublic, responses={**NOT_FOUND, **write_responses()})
async def patch_item(
    item_in: ItemUpdate,
    item: OwnedItem,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> Item:
    return await _update(session, item, if_match, response, item_in.model_dump(exclude_unset=True))


@router.delete(
    "/{id:uuid}",
    response_model=Message,
    responses={**NOT_FOUND, **write_responses(tagged=False)},
)
async def delete_item(item: OwnedItem, session: SessionDep, if_match: IfMatchDep) -> Message:
    with if_match.write(item.version):
        await core_crud.delete_versioned(
            session, item, any_version=if_match.any_version, gone=ItemNotFound
        )
    return Message(message="Item deleted successfully")
