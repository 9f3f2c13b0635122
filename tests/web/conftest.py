import uuid

import pytest

from tests.server.conftest import make_settings
from tests.support.servers import ServerThread

# The servers in these tests require an API token, so every test also proves that the UI authenticates.
TOKEN = "web-ui-test-token-0123456789"
SERVER_TOKENS = f"{TOKEN}:web-tester"
# all tests chat as the one user of TOKEN: lift the per-user turn rate limit out of their way
TURNS_PER_MINUTE = 10_000


def new_session() -> str:
    return f"w-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="package")
def chat_server(tiny_model_dir, tmp_path_factory):
    """One in-process server for the client and handler tests (each test uses its own sessions)."""
    data_dir = tmp_path_factory.mktemp("web-data")
    settings = make_settings(tiny_model_dir, data_dir, server_tokens=SERVER_TOKENS, turns_per_minute=TURNS_PER_MINUTE)
    server = ServerThread(settings).start()
    yield server
    server.stop()
