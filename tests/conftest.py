import os
from collections import Counter

import pytest

# Tests never reach a model hub; everything they load is built locally or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (scripts/test.sh: `-n 2 --dist loadscope --no-loadscope-reorder`), the modules that
    hold `slow` tests go out first, then the others by test count: the workers end on short modules together
    instead of one worker running a long module alone at the end. Each module keeps its own order."""
    if not hasattr(config, "workerinput"):  # a plain run keeps the collection order
        return
    module = {id(item): item.nodeid.split("::")[0] for item in items}
    tests = Counter(module.values())
    slow = Counter(module[id(item)] for item in items if item.get_closest_marker("slow"))
    first_seen = {name: i for i, name in reversed(list(enumerate(module[id(item)] for item in items)))}
    items.sort(key=lambda item: (-slow[module[id(item)]], -tests[module[id(item)]], first_seen[module[id(item)]]))


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
