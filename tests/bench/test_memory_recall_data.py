"""Integrity of the memory bench's labelled data (tests/data/memory_recall/, read by bench/memory_recall.py).

Sizes meet the minimums, every label points at turns that exist, and each labelled turn says what its label
claims (so a label cannot silently point at the wrong turn). The committed files are what bench/memory_data.py
builds from its seed, so that editing the templates without rebuilding the data fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "memory_recall"
KINDS = {"single", "date", "changed", "multihop", "smalltalk"}
CJK = re.compile("[\u4e00-\u9fff]")


def rows(name: str) -> list[dict]:
    with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def data():
    convs = {c["conv"]: c for c in rows("conversations")}
    turns = defaultdict(list)
    for t in rows("turns"):
        turns[t["conv"]].append(t)
    return convs, turns, rows("questions")


def text(turn: dict) -> str:
    return turn["user"] + "\n" + turn["assistant"]


def test_sizes(data):
    convs, turns, questions = data
    assert len(convs) >= 20
    assert Counter(c["lang"] for c in convs.values()) == {"en": len(convs) // 2, "zh": len(convs) // 2}
    assert set(turns) == set(convs)
    for conv, meta in convs.items():
        assert len(turns[conv]) == meta["turns"] >= 200
        assert len({t["session"] for t in turns[conv]}) == meta["sessions"] >= 10
    assert len(questions) >= 400
    answerable = Counter(q["lang"] for q in questions if q["kind"] != "smalltalk")
    assert answerable["en"] >= 200 and answerable["zh"] >= 200
    assert {q["kind"] for q in questions} == KINDS
    assert sum(DATA.joinpath(f"{n}.jsonl").stat().st_size for n in ("conversations", "turns", "questions")) < 3e6


def test_turns_are_ordered_sessions_with_dates(data):
    convs, turns, _ = data
    for conv, ts in turns.items():
        assert [t["turn"] for t in ts] == list(range(len(ts)))
        times = [dt.datetime.fromisoformat(t["time"]) for t in ts]
        assert times == sorted(times)
        assert [t["session"] for t in ts] == sorted(t["session"] for t in ts)
        assert all(t["user"].strip() and t["assistant"].strip() for t in ts)
        chinese = sum(bool(CJK.search(t["user"])) for t in ts) / len(ts)
        assert chinese > 0.95 if convs[conv]["lang"] == "zh" else chinese == 0


def test_labels_point_at_turns_that_say_the_fact(data):
    convs, turns, questions = data
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert q["kind"] in KINDS and q["lang"] == convs[q["conv"]]["lang"]
        ts = turns[q["conv"]]
        labelled = q["answers"] + q["stale"]
        assert all(0 <= i < len(ts) for i in labelled), q["id"]
        assert sorted(e["turn"] for e in q["evidence"]) == sorted(labelled), q["id"]
        for e in q["evidence"]:
            missing = [s for s in e.get("contains", []) if s not in text(ts[e["turn"]])]
            assert not missing, (q["id"], missing, text(ts[e["turn"]]))
        if q["kind"] == "smalltalk":
            assert not q["answers"] and not q["stale"] and not q["answer"]
            continue
        assert q["answers"] and q["answer"], q["id"]
        check_kind(q, ts)


def check_kind(q: dict, ts: list[dict]) -> None:
    if q["kind"] == "single":
        (turn,) = q["answers"]
        assert q["answer"] in ts[turn]["user"], (q["id"], q["answer"], ts[turn]["user"])
    elif q["kind"] == "date":
        ((turn,), (e,)) = q["answers"], q["evidence"]
        if "offset_days" in e:  # "this morning", "yesterday": the answer is the turn's own date, moved
            day = dt.date.fromisoformat(ts[turn]["time"][:10]) + dt.timedelta(days=e["offset_days"])
            assert q["answer"] == day.isoformat(), q["id"]
        else:
            assert q["answer"] in ts[turn]["user"], q["id"]
    elif q["kind"] == "changed":
        ((new,), (old,)) = q["answers"], q["stale"]
        assert old < new, q["id"]
        assert q["answer"] in ts[new]["user"] and q["answer"] not in text(ts[old]), q["id"]
    elif q["kind"] == "multihop":
        intro, later = q["answers"]
        assert intro < later and q["answer"] in ts[later]["user"], q["id"]


def test_data_is_what_the_generator_builds():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import memory_data
    finally:
        sys.path.remove(str(REPO / "bench"))
    for name, built in memory_data.build(memory_data.DEFAULT_SEED).items():
        assert DATA.joinpath(f"{name}.jsonl").read_text(encoding="utf-8") == memory_data.dump(built), (
            f"{name}.jsonl is out of date: run python bench/memory_data.py")
