from app.core.errors import NotFound


class ItemNotFound(NotFound):
    code = "item-not-found"
    detail = "The item does not exist"
