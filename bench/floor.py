"""The framework's floor: FastAPI under uvicorn answering a constant of our JSON's shape.

No token, no database, no validation: what one request costs in uvicorn, httptools, Starlette's
routing and FastAPI's endpoint call alone. No app built on this stack serves more.

    uvicorn bench.floor:create_app --factory --loop uvloop --http httptools
"""

from fastapi import FastAPI, Response

ITEM = (
    b'{"id":"0b7a8e6e-5a53-4c0e-9a57-2f4c8f0b7d11","title":"item 1","description":"bench",'
    b'"owner_id":"6f1d2c3b-8e4a-4b5c-9d6e-7f8091a2b3c4","created_at":"2026-11-27T21:00:00.123456Z"}'
)


def create_app() -> FastAPI:
    app = FastAPI(openapi_url=None)

    @app.get("/api/v1/items/{item_id}")
    async def item(item_id: str) -> Response:
        return Response(ITEM, media_type="application/json", headers={"ETag": '"1"'})

    return app
