"""Builds the memory bench's labelled conversations (tests/data/memory_recall/) from templates, reproducibly.

Each conversation is one user talking with the Su Shi persona over 13-17 dated sessions, 205-235 turns in all.
Most turns are small talk; planted among them are the user's facts (single facts, dated events, facts that
change later, two-step facts about the user's people) and other people's facts of the same kinds (distractors).
Every question is labelled with the turns that answer it (`answers`; a fact that changed also lists the turns it
superseded in `stale`) and with `evidence`: the strings each of those turns contains, checked here while building
and again by tests/bench/test_memory_recall_data.py.

    python bench/memory_data.py                 # rewrite tests/data/memory_recall/ (seed 19)
    python bench/memory_data.py --check         # rebuild in memory and compare with the committed files

Files: conversations.jsonl (one line per conversation), turns.jsonl (one per turn: conv, turn, session, time,
user, assistant), questions.jsonl (one per question: id, conv, lang, kind, question, answer, answers, stale,
evidence). Turn ids are the 0-based turn index in the conversation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import random
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
OUT = BENCH.parent / "tests" / "data" / "memory_recall"
PER_LANGUAGE = 10
DEFAULT_SEED = 19
PLAN = {"single": 9, "date": 5, "changed": 3, "multihop": 4, "smalltalk": 3}


def language(lang: str) -> SimpleNamespace:
    names: dict = {}
    for part in ("facts", "events", "talk"):
        module = importlib.import_module(f"memory_text.{lang}_{part}")
        names.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    return SimpleNamespace(**names)


def plan_sessions(rng: random.Random) -> list[tuple[dt.datetime, int]]:
    """(start, number of turns) per session."""
    total, count = rng.randint(205, 235), rng.randint(13, 17)
    sizes = [8] * count
    for _ in range(total - 8 * count):
        sizes[rng.randrange(count)] += 1
    day = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(540))
    sessions = []
    for size in sizes:
        start = dt.datetime.combine(day, dt.time(rng.randint(7, 21), rng.randrange(60)))
        sessions.append((start, size))
        day += dt.timedelta(days=rng.randint(1, 20))
    return sessions


class Conversation:
    """Turn slots first, then the planted facts, then small talk in every slot left."""

    def __init__(self, conv: str, L: SimpleNamespace, rng: random.Random):
        self.conv, self.L, self.rng = conv, L, rng
        self.p = L.profile(rng)
        self.turns: list[dict | None] = []
        self.meta: list[tuple[int, dt.datetime]] = []  # (session, time) per turn
        self.body: list[int] = []  # turns free for facts (not a session's greeting or goodbye)
        for s, (start, size) in enumerate(plan_sessions(rng)):
            first = len(self.turns)
            greet, bye = rng.random() < 0.85, rng.random() < 0.7
            for i in range(size):
                start += dt.timedelta(minutes=rng.randint(1, 4))
                self.meta.append((s, start))
                self.turns.append(None)
                if greet and i == 0:
                    self.put(first, *self.pick_pair(L.GREET))
                elif bye and i == size - 1:
                    self.put(first + i, *self.pick_pair(L.BYE))
                else:
                    self.body.append(first + i)
        self.questions: list[dict] = []

    def pick_pair(self, pairs) -> tuple[str, str]:
        user, reply = self.rng.choice(pairs)
        return user.format(**self.p), reply.format(**self.p)

    def put(self, turn: int, user: str, assistant: str, kind: str = "talk") -> int:
        self.turns[turn] = {"user": user, "assistant": assistant, "kind": kind}
        return turn

    def free_turn(self, lo: float = 0.0, hi: float = 1.0, after: int = -1) -> int:
        """A random free body turn between fractions lo and hi of the conversation, later than `after`,
        not next to another planted fact."""
        n = len(self.turns)

        def apart(t: int) -> bool:
            return all(self.turns[u] is None or self.turns[u]["kind"] == "talk" for u in (t - 1, t + 1) if 0 <= u < n)
        options = [t for t in self.body if self.turns[t] is None and lo * n <= t < hi * n and t > after and apart(t)]
        if not options:
            options = [t for t in self.body if self.turns[t] is None and t > after]
        return self.rng.choice(options)

    def reply(self, templates, ctx: dict) -> str:
        return self.elaborate(self.rng.choice(templates).format(**ctx), ctx)

    def elaborate(self, text: str, ctx: dict) -> str:
        """A persona's reply runs on: a musing or two, sometimes a question back."""
        rng, L = self.rng, self.L
        count = sum(rng.random() < chance for chance in L.MUSE_CHANCES)
        lessons = rng.sample(L.MUSE_FILL["lesson"], count)
        for musing, lesson in zip(rng.sample(L.MUSINGS, count), lessons, strict=True):
            fill = {k: rng.choice(v) for k, v in L.MUSE_FILL.items()}
            fill.update(lesson=lesson, lesson_cap=lesson[:1].upper() + lesson[1:])
            fill["qplace"], fill["quote"] = rng.choice(L.WRITTEN)
            text += L.SEP + musing.format(**fill)
        if rng.random() < 0.2:
            text += L.SEP + rng.choice(L.ASIDES).format(**ctx)
        return text

    def said(self, text: str, chance: float = 0.3) -> str:
        """What the user came to say, sometimes with an afterthought (not after a question)."""
        if text.endswith(("?", "？")) or self.rng.random() >= chance:
            return text
        return text + self.L.SEP + self.rng.choice(self.L.TAILS)

    def date_of(self, turn: int) -> dt.date:
        return self.meta[turn][1].date()

    def ask(self, kind: str, question: str, answer: str, answers: list[int], evidence: list[dict],
            stale: list[int] | None = None) -> None:
        for ev in evidence:
            turn = self.turns[ev["turn"]]
            text = turn["user"] + "\n" + turn["assistant"]
            missing = [s for s in ev.get("contains", []) if s not in text]
            assert not missing, (self.conv, question, missing, text)
        self.questions.append({"id": f"{self.conv}-q{len(self.questions):02d}", "conv": self.conv,
                               "lang": self.L.LANG, "kind": kind, "question": question, "answer": answer,
                               "answers": answers, "stale": stale or [], "evidence": evidence})

    def plant_single(self, key: str) -> None:
        fact = self.L.SINGLE[key]
        turn = self.put(self.free_turn(), self.said(self.rng.choice(fact["say"]).format(**self.p)),
                        self.reply(fact["reply"], self.p), "fact")
        answer = fact["answer"].format(**self.p)
        self.ask("single", self.rng.choice(fact["ask"]).format(**self.p), answer, [turn],
                 [{"turn": turn, "contains": [answer]}])

    def plant_date(self, key: str) -> None:
        event = self.L.DATES[key]
        turn = self.free_turn()
        ctx = dict(self.p)
        if event.get("explicit"):
            day = self.date_of(turn) + dt.timedelta(days=self.rng.randint(12, 90))
            ctx["when"] = answer = self.L.date_text(day.month, day.day)
            evidence = {"turn": turn, "contains": [answer]}
        else:
            answer = (self.date_of(turn) + dt.timedelta(days=event["offset"])).isoformat()
            evidence = {"turn": turn, "offset_days": event["offset"], "contains": [event["mark"]]}
        self.put(turn, self.said(self.rng.choice(event["say"]).format(**ctx)), self.reply(event["reply"], ctx), "fact")
        self.ask("date", self.rng.choice(event["ask"]).format(**ctx), answer, [turn], [evidence])

    def plant_changed(self, key: str) -> None:
        change = self.L.CHANGED[key]
        old = self.put(self.free_turn(0.02, 0.4), self.said(self.rng.choice(change["old"]).format(**self.p)),
                       self.reply(change["old_reply"], self.p), "fact")
        new = self.put(self.free_turn(0.55, 1.0), self.said(self.rng.choice(change["new"]).format(**self.p)),
                       self.reply(change["reply"], self.p), "fact")
        answer, before = self.p[change["answer"]], self.p[change["old_answer"]]
        self.ask("changed", self.rng.choice(change["ask"]).format(**self.p), answer, [new],
                 [{"turn": new, "contains": [answer]}, {"turn": old, "contains": [before]}], stale=[old])

    def plant_multihop(self, bridge: dict, hop_key: str) -> None:
        ctx = {**self.p, **bridge}
        hop = self.L.HOPS[hop_key]
        intro = self.put(self.free_turn(0.0, 0.7), self.said(self.intros.pop().format(**ctx)),
                         self.reply(self.L.INTRO_REPLIES, ctx), "fact")
        later = self.put(self.free_turn(after=intro + 10), self.said(self.rng.choice(hop["say"]).format(**ctx)),
                         self.reply(self.L.HOP_REPLIES, ctx), "fact")
        answer = ctx[hop["answer"]]
        self.ask("multihop", self.rng.choice(hop["ask"]).format(**ctx), answer, [intro, later],
                 [{"turn": intro, "contains": [bridge["rel_name"]]},
                  {"turn": later, "contains": [bridge["rel_name"], answer]}])

    def fill(self) -> None:
        """Other people's facts and the user's near misses, then small talk: every filler line once before any
        line twice, and a few short acknowledgements."""
        L, rng = self.L, self.rng
        for user, assistant in rng.sample(L.DISTRACT + L.NEAR, len(L.DISTRACT) + len(L.NEAR)):
            self.put(self.free_turn(), self.said(user.format(**self.p), 0.2),
                     self.elaborate(assistant.format(**self.p), self.p), "distractor")
        used: Counter = Counter()
        for turn in range(len(self.turns)):
            if self.turns[turn] is not None:
                continue
            if rng.random() < 0.12:
                user, replies = rng.choice(L.ACKS)
                self.put(turn, user, rng.choice(replies).format(**self.p))
                continue
            fewest = min(used[user] for user, _ in L.FILLER)  # every line once before any line twice
            user, assistant = rng.choice([pair for pair in L.FILLER if used[pair[0]] == fewest])
            used[user] += 1
            ctx = {**self.p, **{k: rng.choice(v) for k, v in L.FILL.items()}}
            ctx["season"] = L.FILL["season"][self.date_of(turn).month % 12 // 3 - 1]
            user = user.format(**ctx)
            if rng.random() < 0.15:
                user = rng.choice(L.OPENERS) + L.SEP + user
            self.put(turn, self.said(user), self.elaborate(assistant.format(**ctx), ctx))

    def build(self) -> None:
        rng, L = self.rng, self.L
        for key in rng.sample(sorted(L.SINGLE), PLAN["single"]):
            self.plant_single(key)
        for key in rng.sample(sorted(L.DATES), PLAN["date"]):
            self.plant_date(key)
        for key in rng.sample(sorted(L.CHANGED), PLAN["changed"]):
            self.plant_changed(key)
        bridges = rng.sample(self.p["bridges"], PLAN["multihop"])
        self.intros = rng.sample(L.INTROS, len(L.INTROS))  # a different introduction for each
        for bridge, hop in zip(bridges, rng.sample(sorted(L.HOPS), PLAN["multihop"]), strict=True):
            self.plant_multihop(bridge, hop)
        self.fill()
        for text in rng.sample(L.SMALL_TALK, PLAN["smalltalk"]):
            self.ask("smalltalk", text, "", [], [])

    def records(self) -> tuple[dict, list[dict], list[dict]]:
        meta = {"conv": self.conv, "lang": self.L.LANG, "user_name": self.p["name"],
                "assistant_name": self.L.ASSISTANT, "sessions": self.meta[-1][0] + 1, "turns": len(self.turns)}
        turns = [{"conv": self.conv, "turn": i, "session": s, "time": when.isoformat(timespec="minutes"),
                  "user": t["user"], "assistant": t["assistant"]}
                 for i, ((s, when), t) in enumerate(zip(self.meta, self.turns, strict=True))]
        return meta, turns, self.questions


def build(seed: int) -> dict[str, list[dict]]:
    files: dict[str, list[dict]] = {"conversations": [], "turns": [], "questions": []}
    for lang in ("en", "zh"):
        L = language(lang)
        for i in range(1, PER_LANGUAGE + 1):
            conv = f"{lang}{i:02d}"
            c = Conversation(conv, L, random.Random(f"{seed}-{conv}"))
            c.build()
            meta, turns, questions = c.records()
            files["conversations"].append(meta)
            files["turns"].extend(turns)
            files["questions"].extend(questions)
    return files


def dump(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args()
    files = build(args.seed)
    stale = []
    for name, rows in files.items():
        path = args.out / f"{name}.jsonl"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != dump(rows):
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(dump(rows), encoding="utf-8")
    questions = Counter((q["lang"], q["kind"]) for q in files["questions"])
    print(f"{len(files['conversations'])} conversations, {len(files['turns'])} turns, "
          f"{len(files['questions'])} questions: {dict(sorted(questions.items()))}")
    if stale:
        sys.exit(f"out of date (run python bench/memory_data.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
