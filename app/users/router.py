from fastapi import Response

from app.core.deps import PasswordsDep, SessionDep, SettingsDep
from app.core.pagination import PageDep
from app.core.preconditions import (
    ETAG_HEADERS,
    IfMatchDep,
    IfNoneMatchDep,
    not_modified,
    read_responses,
    tag,
    tagged_responses,
    write_responses,
)
from app.core.problems import problem_responses
from app.core.routing import FeatureRouter
from app.core.schemas import Message
from app.core.throttle import ClientAddressDep, ThrottleDep
from app.idempotency.deps import IdempotencyDep, idempotent_responses
from app.users import crud, service
from app.users.deps import CurrentUser, ManagedUser, SuperUser, VisibleUser
from app.users.errors import RegistrationClosed
from app.users.models import User
from app.users.schemas import (
    UpdatePassword,
    UserCreate,
    UserPublic,
    UserRegister,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
)

public_router = FeatureRouter(prefix="/users", tags=["users"])
router = FeatureRouter(prefix="/users", tags=["users"])


@public_router.post(
    "/signup",
    status_code=201,
    response_model=UserPublic,
    responses={**tagged_responses(201), **problem_responses(403, 409, 429)},
)
async def register_user(
    user_in: UserRegister,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    throttle: ThrottleDep,
    address: ClientAddressDep,
    response: Response,
) -> User:
    """Open registration; a normal, active account. Limited per client address."""
    if not settings.USERS_OPEN_REGISTRATION:
        raise RegistrationClosed()
    # Before the password is hashed: that is the cost a flood of sign-ups would make us pay.
    await throttle.hit("signup", address)
    user = await service.create(session, passwords, user_in=UserCreate(**user_in.model_dump()))
    tag(response, user.version)
    return user


@router.get("/me", response_model=UserPublic, responses=read_responses())
async def read_user_me(
    user: CurrentUser, if_none_match: IfNoneMatchDep, response: Response
) -> User | Response:
    return not_modified(if_none_match, user.version, response) or user


@router.patch("/me", response_model=UserPublic, responses=write_responses())
async def update_user_me(
    user_in: UserUpdateMe,
    user: CurrentUser,
    session: SessionDep,
    if_match: IfMatchDep,
    response: Response,
) -> User:
    with if_match.write(user.version):
        await service.update_me(session, user, user_in=user_in, any_version=if_match.any_version)
    tag(response, user.version)
    return user


@router.patch("/me/password", response_model=Message, responses=problem_responses(400))
async def update_password_me(
    body: UpdatePassword, user: CurrentUser, session: SessionDep, passwords: PasswordsDep
) -> Message:
    await service.change_password(
        session,
        passwords,
        user,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    return Message(message="Password updated successfully")


@router.delete("/me", response_model=Message)
async def delete_user_me(user: CurrentUser, session: SessionDep) -> Message:
    await service.delete(session, user, acting_user=user)
    return Message(message="User deleted successfully")


@router.get("/", response_model=UsersPublic)
async def read_users(_: SuperUser, session: SessionDep, page: PageDep) -> UsersPublic:
    return UsersPublic.model_validate(await crud.list_page(session, page=page))


@router.post(
    "/",
    status_code=201,
    response_model=UserPublic,
    responses={**idempotent_responses(201, ETAG_HEADERS), **problem_responses(409)},
)
async def create_user(
    user_in: UserCreate,
    superuser: SuperUser,
    session: SessionDep,
    passwords: PasswordsDep,
    idempotency: IdempotencyDep,
    response: Response,
) -> User | Response:
    # A retry of a request that was done costs no password hash.
    if (replay := await idempotency.replay(superuser.id, user_in)) is not None:
        return replay
    hashed_password = await service.hash_password(session, passwords, user_in.password)
    if (replay := await idempotency.claim(superuser.id, user_in)) is not None:
        return replay  # a concurrent retry did it while we were hashing
    user = await service.create(
        session, passwords, user_in=user_in, welcome=True, hashed_password=hashed_password
    )
    tag(response, user.version)
    await idempotency.complete(response, UserPublic.model_validate(user))
    return user


@router.get(
    "/{user_id:uuid}",
    response_model=UserPublic,
    responses={**problem_responses(404), **read_responses()},
)
async def read_user_by_id(
    user: VisibleUser, if_none_match: IfNoneMatchDep, response: Response
) -> User | Response:
    """Anyone may read themself; only a superuser may read others."""
    return not_modified(if_none_match, user.version, response) or user


@router.patch(
    "/{user_id:uuid}",
    response_model=UserPublic,
    responses={**problem_responses(404), **write_responses()},
)
async def update_user(
    user_in: UserUpdate,
    target: ManagedUser,
    superuser: SuperUser,
    session: SessionDep,
    passwords: PasswordsDep,
    if_match: IfMatchDep,
    response: Response,
) -> User:
    with if_match.write(target.version):
        await service.update(
            session,
            passwords,
            target,
            user_in=user_in,
            acting_user=superuser,
            any_version=if_match.any_version,
        )
    tag(response, target.version)
    return target


@router.delete(
    "/{user_id:uuid}",
    response_model=Message,
    responses={**problem_responses(404), **write_responses(tagged=False)},
)
async def delete_user(
    target: ManagedUser, superuser: SuperUser, session: SessionDep, if_match: IfMatchDep
) -> Message:
    with if_match.write(target.version):
        await service.delete(
            session, target, acting_user=superuser, any_version=if_match.any_version
        )
    return Message(message="User deleted successfully")
