import os

import pytest

# Tests never reach a model hub; everything they load is built locally or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A micro Llama with random weights and a byte-level BPE tokenizer trained on ../shared/corpus."""
    from tests.support.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
async def tiny_generator(tiny_model_dir):
    """The embedded transformers backend with the micro test model: one generation slot, like the default."""
    # imported here: the offline settings above must be in place before transformers loads
    from server.llm.transformers_backend import TransformersGenerator

    generator = TransformersGenerator(str(tiny_model_dir), device="cpu", concurrency=1, max_queued=4,
                                      context_tokens=2048)
    await generator.start()
    yield generator
    await generator.close()
