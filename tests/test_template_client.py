"""The full-stack FastAPI template's frontend works against this backend unmodified.

Each test sends exactly the JSON body one of the template's React forms sends (Add user, Sign
up, Edit user, Change password, Password recovery, Add/Edit/Delete item) and checks the status,
fields and texts the frontend shows; the last one checks the OpenAPI document the template's
TypeScript client is generated from: its schema names, references and operation ids.
"""

import uuid
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item
from app.users.models import User
from tests.helpers import assert_problem, login
from tests.users.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.anyio

EMAIL_TAKEN = "The user with this email already exists in the system"
NEW_PASSWORD = "newpassword1"


async def stored_user(session: AsyncSession, email: str) -> User | None:
    query = select(User).where(User.email == email).execution_options(populate_existing=True)
    return await session.scalar(query)


def error_locs(body: Any) -> list[list[str | int]]:
    return [error["loc"] for error in body["errors"]]


# --- Admin: Add user ----------------------------------------------------------------------


def add_user_form(email: str, **changes: Any) -> dict[str, Any]:
    """The Add user form's body with its default values (an inactive, normal user)."""
    form: dict[str, Any] = {
        "email": email,
        "password": "s3cret-pass",
        "confirm_password": "s3cret-pass",
        "full_name": "",
        "is_superuser": False,
        "is_active": False,
    }
    return form | changes


@pytest.mark.parametrize(
    ("is_superuser", "is_active"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["add-user", "create-superuser", "add-active-user", "create-active-superuser"],
)
async def test_add_user_form(
    client: httpx2.AsyncClient,
    superuser_headers: dict[str, str],
    session: AsyncSession,
    is_superuser: bool,
    is_active: bool,
) -> None:
    form = add_user_form("added@example.com", is_superuser=is_superuser, is_active=is_active)

    response = await client.post("/users/", headers=superuser_headers, json=form)

    assert response.status_code == 201, response.text
    body = response.json()
    assert {"id", "email", "full_name", "is_active", "is_superuser"} <= set(body)
    assert (body["email"], body["full_name"]) == ("added@example.com", "")
    assert (body["is_active"], body["is_superuser"]) == (is_active, is_superuser)
    stored = await stored_user(session, "added@example.com")
    assert stored is not None
    assert str(stored.id) == body["id"]
    assert (stored.is_active, stored.is_superuser) == (is_active, is_superuser)
    token = await login(client, "added@example.com", "s3cret-pass")
    if is_active:
        assert token.status_code == 200, token.text
        assert token.json()["token_type"] == "bearer"
    else:
        assert assert_problem(token, 400)["detail"] == "Inactive user"


async def test_add_user_with_mismatched_confirmation_is_422_and_creates_nothing(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], session: AsyncSession
) -> None:
    form = add_user_form("mismatch@example.com", confirm_password="s3cret-pasS")

    body = assert_problem(await client.post("/users/", headers=superuser_headers, json=form), 422)

    assert ["body", "confirm_password"] in error_locs(body)
    assert await stored_user(session, "mismatch@example.com") is None


# --- Sign up, and the 409 every email form shows --------------------------------------------


async def test_signup_form_and_signing_up_twice(
    client: httpx2.AsyncClient, session: AsyncSession
) -> None:
    form = {
        "email": "signup@example.com",
        "password": "s3cret-pass",
        "confirm_password": "s3cret-pass",
        "full_name": "Sign Up",
    }

    response = await client.post("/users/signup", json=form)

    assert response.status_code == 201, response.text
    assert response.json()["full_name"] == "Sign Up"
    assert (await login(client, "signup@example.com", "s3cret-pass")).status_code == 200
    again = assert_problem(await client.post("/users/signup", json=form), 409)
    assert again["detail"] == EMAIL_TAKEN
    count = select(func.count()).select_from(User).where(User.email == "signup@example.com")
    assert await session.scalar(count) == 1


async def test_admin_create_with_a_registered_email_is_409(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], user: User
) -> None:
    form = add_user_form(user.email, is_active=True)

    body = assert_problem(await client.post("/users/", headers=superuser_headers, json=form), 409)

    assert body["detail"] == EMAIL_TAKEN


async def test_update_me_to_someone_elses_email_is_409(
    client: httpx2.AsyncClient,
    user: User,
    other_user: User,
    user_headers: dict[str, str],
    session: AsyncSession,
) -> None:
    own_email = user.email
    response = await client.patch(
        "/users/me", headers=user_headers, json={"email": other_user.email}
    )

    assert assert_problem(response, 409)["detail"] == EMAIL_TAKEN
    stored = await stored_user(session, own_email)
    assert stored is not None
    assert stored.id == user.id


# --- Admin: Edit user ---------------------------------------------------------------------


def edit_user_form(user: User, **changes: Any) -> dict[str, Any]:
    """The Edit user form's body: every field but the password it drops when left empty."""
    form: dict[str, Any] = {
        "email": user.email,
        "full_name": user.full_name,
        "is_superuser": user.is_superuser,
        "is_active": user.is_active,
    }
    return form | changes


async def test_edit_user_form(
    client: httpx2.AsyncClient,
    superuser_headers: dict[str, str],
    user: User,
    session: AsyncSession,
) -> None:
    form = edit_user_form(
        user, email="edited@example.com", full_name="Edited Name", is_superuser=True
    )

    response = await client.patch(f"/users/{user.id}", headers=superuser_headers, json=form)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["email"], body["full_name"]) == ("edited@example.com", "Edited Name")
    assert (body["is_superuser"], body["is_active"]) == (True, True)
    stored = await stored_user(session, "edited@example.com")
    assert stored is not None
    assert (stored.id, stored.full_name, stored.is_superuser) == (user.id, "Edited Name", True)


async def test_edit_user_form_setting_a_password(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], user: User
) -> None:
    form = edit_user_form(user, password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)

    response = await client.patch(f"/users/{user.id}", headers=superuser_headers, json=form)

    assert response.status_code == 200, response.text
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert_problem(await login(client, user.email, DEFAULT_PASSWORD), 400)


async def test_edit_user_form_with_the_password_left_empty(
    client: httpx2.AsyncClient, superuser_headers: dict[str, str], user: User
) -> None:
    # Older template versions drop the empty password but send its (empty) confirmation.
    form = edit_user_form(user, full_name="Still Normal", confirm_password="")

    response = await client.patch(f"/users/{user.id}", headers=superuser_headers, json=form)

    assert response.status_code == 200, response.text
    assert response.json()["full_name"] == "Still Normal"
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


# --- Change password ----------------------------------------------------------------------


def password_form(current: str, new: str, confirm: str | None = None) -> dict[str, str]:
    return {"current_password": current, "new_password": new, "confirm_password": confirm or new}


async def test_change_password_form(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    form = password_form(DEFAULT_PASSWORD, NEW_PASSWORD)

    response = await client.patch("/users/me/password", headers=user_headers, json=form)

    assert response.status_code == 200, response.text
    assert response.json() == {"message": "Password updated successfully"}
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    assert_problem(await login(client, user.email, DEFAULT_PASSWORD), 400)


@pytest.mark.parametrize(
    ("form", "status", "detail"),
    [
        (
            password_form(DEFAULT_PASSWORD, DEFAULT_PASSWORD),
            400,
            "New password cannot be the same as the current one",
        ),
        (password_form("wrong-password", NEW_PASSWORD), 400, "Incorrect password"),
        (password_form(DEFAULT_PASSWORD, NEW_PASSWORD, "newpassword2"), 422, None),
    ],
    ids=["same-password", "wrong-current", "mismatched-confirmation"],
)
async def test_change_password_form_refusals(
    client: httpx2.AsyncClient,
    user: User,
    user_headers: dict[str, str],
    form: dict[str, str],
    status: int,
    detail: str | None,
) -> None:
    response = await client.patch("/users/me/password", headers=user_headers, json=form)

    body = assert_problem(response, status)
    if detail is None:
        assert ["body", "confirm_password"] in error_locs(body)
    else:
        assert body["detail"] == detail
    assert (await login(client, user.email, DEFAULT_PASSWORD)).status_code == 200


# --- Password recovery and reset ----------------------------------------------------------


async def test_password_recovery_answers_alike_for_any_address(
    client: httpx2.AsyncClient, user: User
) -> None:
    registered = await client.post(f"/password-recovery/{user.email}")
    unknown = await client.post("/password-recovery/nobody@example.com")

    expected = {"message": "If that email is registered, we sent a password recovery link"}
    assert (registered.status_code, registered.json()) == (200, expected)
    assert (unknown.status_code, unknown.json()) == (200, expected)


async def test_reset_password_form_refusals(client: httpx2.AsyncClient) -> None:
    invalid = await client.post(
        "/reset-password/", json={"token": "not-a-token", "new_password": NEW_PASSWORD}
    )
    weak = await client.post(
        "/reset-password/", json={"token": "not-a-token", "new_password": "short"}
    )

    assert assert_problem(invalid, 400)["detail"] == "Invalid token"
    assert ["body", "new_password"] in error_locs(assert_problem(weak, 422))


# --- Items --------------------------------------------------------------------------------


async def test_item_forms_add_edit_list_delete(
    client: httpx2.AsyncClient, user: User, user_headers: dict[str, str], session: AsyncSession
) -> None:
    created = await client.post(
        "/items/", headers=user_headers, json={"title": "Groceries", "description": "Milk"}
    )
    assert created.status_code == 201, created.text
    item_id = created.json()["id"]
    assert created.json()["owner_id"] == str(user.id)

    edited = await client.put(
        f"/items/{item_id}", headers=user_headers, json={"title": "Shopping", "description": "Tea"}
    )
    assert edited.status_code == 200, edited.text
    assert (edited.json()["title"], edited.json()["description"]) == ("Shopping", "Tea")
    query = select(Item).where(Item.id == uuid.UUID(item_id))
    stored = await session.scalar(query.execution_options(populate_existing=True))
    assert stored is not None
    assert (stored.title, stored.description) == ("Shopping", "Tea")

    listed = await client.get("/items/?skip=0&limit=5", headers=user_headers)
    assert listed.status_code == 200
    # The template's fields, and the cursor its clients may ignore.
    assert set(listed.json()) == {"data", "count", "next_cursor"}
    assert listed.json()["next_cursor"] is None
    assert listed.json()["count"] == 1
    assert [item["id"] for item in listed.json()["data"]] == [item_id]

    deleted = await client.delete(f"/items/{item_id}", headers=user_headers)
    assert deleted.status_code == 200
    assert deleted.json() == {"message": "Item deleted successfully"}
    assert await session.scalar(select(func.count()).select_from(Item)) == 0


# --- The OpenAPI document the TypeScript client is generated from -------------------------

TEMPLATE_SCHEMAS = (
    {"UserPublic", "UsersPublic", "UserCreate", "UserRegister", "UserUpdate"}
    | {"UserUpdateMe", "UpdatePassword", "NewPassword", "Token", "Message"}
    | {"ItemPublic", "ItemsPublic", "ItemCreate", "ItemUpdate"}
)
TEMPLATE_OPERATIONS = {
    "login-recover_password",
    "login-reset_password",
    "login-recover_password_html_content",
    "users-create_user",
    "users-register_user",
    "items-update_item",
}


async def test_openapi_matches_the_template_client(client: httpx2.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert set(document["components"]["schemas"]) >= TEMPLATE_SCHEMAS
    paths = document["paths"]

    def ok_schema(path: str, method: str) -> Any:
        return paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]

    assert ok_schema("/api/v1/users/me", "get") == {"$ref": "#/components/schemas/UserPublic"}
    assert ok_schema("/api/v1/items/", "get") == {"$ref": "#/components/schemas/ItemsPublic"}
    reset_body = paths["/api/v1/reset-password/"]["post"]["requestBody"]
    assert reset_body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewPassword"
    }
    operation_ids = {op["operationId"] for item in paths.values() for op in item.values()}
    assert operation_ids >= TEMPLATE_OPERATIONS
    put_item = paths["/api/v1/items/{id}"]["put"]
    assert put_item["operationId"] == "items-update_item"
