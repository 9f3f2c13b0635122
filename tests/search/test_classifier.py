"""The "does this need the web?" head: shipped, fast, precise on messages it was not trained on, retrainable."""

import json
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from scripts.train_classifier import DEFAULT_DATA, load_examples
from server.search.classifier import HeadMismatch, LinearHeadClassifier
from tests.support.paths import REPO

# none of these is in tests/data/search_labels.jsonl
NEEDS_SEARCH = [
    "What is the proper technique for a Romanian deadlift?", "How many calories are in a banana?",
    "What year was Su Shi exiled to Huangzhou?", "What are the health benefits of green tea?",
    "What's the weather forecast for Hangzhou this weekend?", "苏轼被贬到黄州是哪一年？",
]
SMALL_TALK = [
    "How was your day today?", "Good morning! I slept great.", "我今天好累啊", "Tell me a poem about spring rain",
    "lol ok", "My cat is sleeping on my keyboard again", "你还记得我上次说的事吗？",
]


def test_the_shipped_head_loads_in_milliseconds_and_records_its_cross_validated_quality():
    LinearHeadClassifier.load()  # imports warm
    started = time.perf_counter()
    head = LinearHeadClassifier.load()
    assert time.perf_counter() - started < 0.1
    assert head.dim == 384 and 0.5 <= head.threshold < 1
    assert head.embedder == "all-MiniLM-L6-v2"
    cv = head.meta["cv"]
    assert cv["precision"] >= 0.90 and cv["recall"] >= 0.80, cv


def test_the_labelled_set_covers_both_languages_both_labels_and_the_hard_cases():
    examples = load_examples(DEFAULT_DATA)
    assert len(examples) >= 400
    assert len({e.text for e in examples}) == len(examples)
    by = Counter((e.lang, e.search) for e in examples)
    assert min(by[(lang, label)] for lang in ("en", "zh") for label in (True, False)) >= 80
    kinds = {e.kind for e in examples}
    assert {"hard_personal_fact", "hard_personal_search", "followup_search", "followup_chat"} <= kinds


def test_messages_it_never_saw_are_classified_and_small_talk_is_not_searched(embed):
    head = LinearHeadClassifier.load()
    for text in NEEDS_SEARCH:
        assert head.decide(embed(text)).search, text
    for text in SMALL_TALK:
        assert not head.decide(embed(text)).search, text


def test_a_higher_threshold_searches_less(embed):
    vector = embed("What are the health benefits of green tea?")
    assert LinearHeadClassifier.load().decide(vector).search
    assert not LinearHeadClassifier.load(threshold=0.999).decide(vector).search


def test_a_head_for_other_embeddings_is_refused_rather_than_guessing():
    head = LinearHeadClassifier.load()
    head.check_embedder(None)
    head.check_embedder("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(HeadMismatch, match="retrain"):
        head.check_embedder("intfloat/multilingual-e5-small")
    with pytest.raises(HeadMismatch):
        head.decide(np.zeros(768, dtype=np.float32))


def test_malformed_labelled_data_is_rejected_with_its_line_number(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"text": "hi", "search": false}\n{"text": "x", "search": "yes"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"labels.jsonl:2: bad labelled example"):
        load_examples(path)


@pytest.mark.slow
def test_the_training_command_retrains_a_head_the_server_can_load(tmp_path, embed):
    rows = [json.loads(line) for line in DEFAULT_DATA.read_text(encoding="utf-8").splitlines()]
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[::5]), encoding="utf-8")
    out = tmp_path / "head.npz"
    done = subprocess.run([sys.executable, "-m", "scripts.train_classifier", "--data", str(subset),
                           "--out", str(out), "--folds", "3", "--repeats", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=240,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cross-validated 'search': precision" in done.stdout
    head = LinearHeadClassifier.load(out)
    assert head.meta["examples"] == len(rows[::5]) and out.stat().st_size < 20_000
    assert head.decide(embed("How do you perform a deadlift properly?")).search
    assert not head.decide(embed("How was your day?")).search
