"""Shared fixtures for the trainer tests: a small slice of the real corpus and a micro model built from it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from scraper.corpus import Poem, read_corpus, write_corpus

# The machine is shared with other work: one intra-op thread keeps the tests from fighting over cores and
# makes CPU float results independent of the thread count (resume tests compare bit for bit).
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
CORPUS_HTML = REPO.parent / "shared" / "corpus" / "poems.html"
N_POEMS = 40


def _synthetic_poems(n: int) -> list[Poem]:
    # Only for checkouts without ../shared/corpus: poem-shaped lines of common characters.
    chars = "春江花月夜山水風雨雲天人心明白日月長東西南北來去不知何處"
    poems = []
    for i in range(n):
        lines = ["".join(chars[(i * 7 + j * 3 + k) % len(chars)] for k in range(7)) for j in range(2 + i % 6)]
        poems.append(Poem(title=f"題{chars[i % len(chars)]}{i}", text="，\n".join(lines) + "。"))
    return poems


@pytest.fixture(scope="session")
def poems() -> list[Poem]:
    if CORPUS_HTML.is_file():
        return read_corpus(CORPUS_HTML)[:N_POEMS]
    return _synthetic_poems(N_POEMS)


@pytest.fixture(scope="session")
def corpus_file(poems, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(poems, out)
    return out / "poems.jsonl"


@pytest.fixture(scope="session")
def micro_dir(poems, tmp_path_factory) -> Path:
    from trainer.scratch import create_scratch_model

    out = tmp_path_factory.mktemp("micro-model")
    create_scratch_model([p.title + "\n" + p.text for p in poems], "micro", out, seed=0)
    return out


@pytest.fixture(scope="session")
def micro(micro_dir):
    """(model, tokenizer) loaded from the micro model directory; tests must not train it in place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(micro_dir, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(micro_dir)


@pytest.fixture
def make_config(corpus_file, micro_dir, tmp_path):
    """TrainConfig factory: a fast micro-model run writing under this test's tmp_path."""
    from trainer.config import TrainConfig

    base = TrainConfig(data=str(corpus_file), out=str(tmp_path / "out"), model=str(micro_dir), batch_size=8,
                       max_length=96, max_steps=4, lr=1e-3, eval_every=1000, save_every=1000, log_every=1,
                       eval_samples=0, progress=False, device="cpu", eval_split=0.1)

    def make(**overrides):
        return replace(base, **overrides)

    return make


@pytest.fixture(scope="session")
def exported_weights():
    """Reads the weights of an exported model directory."""
    from safetensors.torch import load_file

    def read(out_dir: Path) -> dict[str, torch.Tensor]:
        return load_file(Path(out_dir) / "model.safetensors")

    return read
