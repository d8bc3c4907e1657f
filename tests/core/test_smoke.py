import httpx2
import pytest

pytestmark = pytest.mark.anyio


async def test_health_check(client: httpx2.AsyncClient) -> None:
    response = await client.get("/utils/health-check/")
    assert response.status_code == 200
    assert response.json() is True
