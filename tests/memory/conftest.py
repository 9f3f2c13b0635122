from tests.redis.conftest import redis_server  # noqa: F401  (the Redis-store half of these tests)
