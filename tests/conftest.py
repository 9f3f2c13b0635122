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
