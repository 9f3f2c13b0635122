import uuid

import pytest

from server.store.redis_link import RedisLink
from server.store.redis_turns import RedisTurnStore
from tests.support.redis import RedisServer, redis_server_binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One redis-server for the test session; tests keep apart through their own key prefix."""
    if redis_server_binary() is None:
        pytest.fail("redis-server is not installed: `scripts/setup.sh test` installs it (Debian redis-server); "
                    "or deselect these tests with -m 'not redis'")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def replica(redis_server, prefix):
    """Makes RedisTurnStores on the shared server and prefix, each with its own pool as a replica has;
    closes them at the end."""
    stores: list[RedisTurnStore] = []

    async def make(url: str | None = None, **kwargs) -> RedisTurnStore:
        store = RedisTurnStore(RedisLink(url or redis_server.url, start_timeout=5), prefix=prefix, **kwargs)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
