"""The crash test script, run short: every acknowledged turn stored once, every flush exactly once."""

import asyncio

import pytest

from scripts.crash_test import run

pytestmark = pytest.mark.slow


def test_random_sigkills_lose_no_acknowledged_turn_and_duplicate_no_flush(tiny_model_dir, tmp_path):
    problems, stats = asyncio.run(run(tiny_model_dir, tmp_path, conversations=8, kills=3, seed=7,
                                     embed_workers="thread"))
    assert problems == []
    assert stats["acknowledged"] >= 8, "the conversations made progress between kills"
    assert stats["imported"] >= 3, "imports ran between the kills too"
    assert stats["flushes"] >= 1 and stats["documents"] >= 5 * stats["flushes"]
