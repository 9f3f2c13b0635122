"""Tiny real models for tests: random weights, tokenizer trained on the real corpus."""

from __future__ import annotations

from pathlib import Path

from scraper.corpus import read_corpus
from tests.support.paths import POEMS_HTML
from trainer.scratch import create_scratch_model


def build_tiny_model(out_dir: Path, size: str = "micro", poems: int = 1500) -> Path:
    corpus = read_corpus(POEMS_HTML)[:poems]
    # English chat phrases too, so the test conversations tokenise into words rather than bytes
    texts = [f"{p.title}\n{p.text}" for p in corpus] + [
        "User: How was your day? Assistant: Great, I went to the gym and did deadlifts.",
        "My cat likes fish. The weather in Paris is rainy. I play the violin and the guitar.",
    ] * 50
    create_scratch_model(texts, size, out_dir)
    return out_dir
