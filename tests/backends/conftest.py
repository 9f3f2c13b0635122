import pytest

from server.app import Hooks
from tests.server.conftest import make_settings
from tests.support.scripted_openai import ScriptedOpenAI
from tests.support.servers import ServerThread


@pytest.fixture(scope="package")
def api_server(tiny_model_dir, tmp_path_factory):
    """Our server on the transformers backend, observed through its built prompts; FLUSH_EVERY=2."""
    prompts = []
    data_dir = tmp_path_factory.mktemp("api-data")
    server = ServerThread(make_settings(tiny_model_dir, data_dir, flush_every=2),
                          Hooks(on_prompt=prompts.append)).start()
    server.prompts = prompts
    server.data_dir = data_dir
    server.model = str(tiny_model_dir)
    yield server
    server.stop()


@pytest.fixture(scope="package")
def scripted_endpoint():
    endpoint = ScriptedOpenAI().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def scripted(scripted_endpoint):
    scripted_endpoint.reset()
    yield scripted_endpoint
    scripted_endpoint.reset()
