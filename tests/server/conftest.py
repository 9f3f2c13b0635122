import pytest

from server.config import Settings
from tests.support.servers import ServerThread


def make_settings(model_dir, data_dir, **overrides) -> Settings:
    # Embeddings in threads of the test's process, which imports the model once: worker processes (the default)
    # import torch and sentence-transformers afresh for every server. test_embedder and test_durability run them.
    values = dict(model=str(model_dir), data_dir=data_dir, llm_backend="transformers", max_new_tokens=24,
                  temperature=0.8, flush_every=5, memory_top_k=2, log_format="console",
                  context_tokens=2048, embed_workers="thread")
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def shared_server(tiny_model_dir, tmp_path_factory):
    """One in-process server for tests that only need a working server (each uses its own sessions)."""
    server = ServerThread(make_settings(tiny_model_dir, tmp_path_factory.mktemp("data"))).start()
    yield server
    server.stop()
