from app.core.errors import NotFound


class ItemNotFound(NotFound):
    code = "item-not-found"

    def __init__(self) -> None:
        super().__init__("The item does not exist")
