"""Convert LoCoMo (a public benchmark of long multi-session conversations) into bench/memory_recall.py's data.

LoCoMo (Maharana et al., 2024, github.com/snap-research/locomo) holds 10 conversations between two people, about
600 utterances each over up to 35 dated sessions, and ~2,000 questions labelled with the utterances (`dia_id`)
that answer them. It is not committed here; download it, then:

    python bench/locomo.py locomo10.json --out /tmp/locomo-bench     # or the repository's locomo10_v2/ directory
    python bench/memory_recall.py --data /tmp/locomo-bench

Mapping: speaker A is the user and speaker B the assistant, both under their own names. Each turn holds A's
utterance and B's reply; where B speaks first in a session (or twice in a row) a turn has an empty user side,
and the other way round, so every utterance lands in exactly one turn and the evidence maps onto turns. A
session's turns are a minute apart from its date. Questions: category 4 (single-hop) -> "single",
2 (temporal) -> "date", 1 (multi-hop) -> "multihop", 3 (open-domain inference) -> "inference"; category 5
(adversarial: the answer is not in the conversation) is left out, as its questions have no answering turns.
`strict` needs the answer's words in a returned text, which LoCoMo's free-form answers rarely match verbatim;
only "recall of the answering turns" is meaningful on this data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

KINDS = {4: "single", 2: "date", 1: "multihop", 3: "inference"}


def samples(path: Path) -> list[dict]:
    """Each sample as {"id", "conversation": {speaker_a, speaker_b, session_N, session_N_date_time}, "qa"}."""
    if path.is_dir():  # the repository's zip: one file per conversation, the sessions at the top level
        return [{"id": f.stem, "conversation": data, "qa": data["qa"]}
                for f in sorted(path.glob("*.json")) for data in [json.loads(f.read_text(encoding="utf-8"))]]
    return [{"id": s.get("sample_id", str(i)), "conversation": s["conversation"], "qa": s["qa"]}
            for i, s in enumerate(json.loads(path.read_text(encoding="utf-8")))]


def session_start(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(re.sub(r"\s+", " ", stamp.strip()), "%I:%M %p on %d %B, %Y")


def turns_of(conv: dict) -> tuple[list[dict], dict[str, int]]:
    """The conversation as turns (user = speaker A, assistant = speaker B) and dia_id -> turn number."""
    a = conv["speaker_a"]
    turns: list[dict] = []
    where: dict[str, int] = {}
    numbers = sorted(int(m.group(1)) for k in conv if (m := re.fullmatch(r"session_(\d+)", k)))
    for session, n in enumerate(numbers):
        start = session_start(conv[f"session_{n}_date_time"])
        open_turn: dict | None = None
        for utterance in conv[f"session_{n}"]:
            side = "user" if utterance["speaker"] == a else "assistant"
            if open_turn is None or open_turn[side] or (side == "user" and open_turn["assistant"]):
                open_turn = {"turn": len(turns), "session": session, "user": "", "assistant": ""}
                open_turn["time"] = (start + dt.timedelta(minutes=sum(t["session"] == session for t in turns))) \
                    .strftime("%Y-%m-%dT%H:%M")
                turns.append(open_turn)
            open_turn[side] = utterance["text"]
            where[utterance["dia_id"]] = open_turn["turn"]
    return turns, where


def convert(path: Path, out: Path) -> tuple[int, int, int]:
    out.mkdir(parents=True, exist_ok=True)
    conversations, all_turns, questions = [], [], []
    for sample in samples(path):
        conv_id = f"locomo{sample['id']}"
        turns, where = turns_of(sample["conversation"])
        conversations.append({"conv": conv_id, "lang": "en", "user_name": sample["conversation"]["speaker_a"],
                              "assistant_name": sample["conversation"]["speaker_b"],
                              "sessions": turns[-1]["session"] + 1, "turns": len(turns)})
        all_turns += [{"conv": conv_id, **t} for t in turns]
        for i, qa in enumerate(sample["qa"]):
            # evidence ids are sometimes malformed in the release ("D8:6; D9:17"): keep those that name an utterance
            answers = sorted({where[e] for ev in qa.get("evidence", []) for e in re.findall(r"D\d+:\d+", ev)
                              if e in where})
            if qa.get("category") not in KINDS or not answers:
                continue
            questions.append({"id": f"{conv_id}-q{i:03d}", "conv": conv_id, "lang": "en",
                              "kind": KINDS[qa["category"]], "question": qa["question"],
                              "answer": str(qa.get("answer", "")), "answers": answers, "stale": [],
                              "evidence": [{"turn": t, "contains": []} for t in answers]})
    for name, rows in (("conversations", conversations), ("turns", all_turns), ("questions", questions)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return len(conversations), len(all_turns), len(questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="locomo10.json, or the directory of per-conversation files")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    convs, turns, questions = convert(args.source, args.out)
    print(f"{convs} conversations, {turns} turns, {questions} questions -> {args.out}")


if __name__ == "__main__":
    main()
