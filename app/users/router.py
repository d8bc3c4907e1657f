from fastapi import APIRouter

from app.core.deps import PasswordsDep, SessionDep, SettingsDep
from app.core.pagination import PageDep
from app.core.problems import problem_responses
from app.core.schemas import Message
from app.core.throttle import ClientAddressDep, ThrottleDep
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

public_router = APIRouter(prefix="/users", tags=["users"])
router = APIRouter(prefix="/users", tags=["users"])


@public_router.post(
    "/signup",
    status_code=201,
    response_model=UserPublic,
    responses=problem_responses(403, 409, 429),
)
async def register_user(
    user_in: UserRegister,
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    throttle: ThrottleDep,
    address: ClientAddressDep,
) -> User:
    """Open registration; a normal, active account. Limited per client address."""
    if not settings.USERS_OPEN_REGISTRATION:
        raise RegistrationClosed()
    # Before the password is hashed: that is the cost a flood of sign-ups would make us pay.
    await throttle.hit("signup", address)
    return await service.create(session, passwords, user_in=UserCreate(**user_in.model_dump()))


@router.get("/me", response_model=UserPublic)
async def read_user_me(user: CurrentUser) -> User:
    return user


@router.patch("/me", response_model=UserPublic, responses=problem_responses(409))
async def update_user_me(user_in: UserUpdateMe, user: CurrentUser, session: SessionDep) -> User:
    return await service.update_me(session, user, user_in=user_in)


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


@router.post("/", status_code=201, response_model=UserPublic, responses=problem_responses(409))
async def create_user(
    user_in: UserCreate, _: SuperUser, session: SessionDep, passwords: PasswordsDep
) -> User:
    return await service.create(session, passwords, user_in=user_in, welcome=True)


@router.get("/{user_id:uuid}", response_model=UserPublic, responses=problem_responses(404))
async def read_user_by_id(user: VisibleUser) -> User:
    """Anyone may read themself; only a superuser may read others."""
    return user


@router.patch("/{user_id:uuid}", response_model=UserPublic, responses=problem_responses(404, 409))
async def update_user(
    user_in: UserUpdate,
    target: ManagedUser,
    superuser: SuperUser,
    session: SessionDep,
    passwords: PasswordsDep,
) -> User:
    return await service.update(session, passwords, target, user_in=user_in, acting_user=superuser)


@router.delete("/{user_id:uuid}", response_model=Message, responses=problem_responses(404))
async def delete_user(target: ManagedUser, superuser: SuperUser, session: SessionDep) -> Message:
    await service.delete(session, target, acting_user=superuser)
    return Message(message="User deleted successfully")
