"""A word index of one namespace's memories: BM25 through SQLite FTS5, in memory, beside the vector index.

Text is tokenised here, not by FTS5, so that one tokenisation serves English and Chinese alike: lowercased
word runs (FTS5's Porter stemmer then folds "moved"/"moving"), and for runs of CJK characters every character
and every two adjacent characters (Chinese has no spaces; bigrams carry most of its words). Words that say
nothing of a memory's content ("the", "ok", "的", "你好") are left out of queries, so that a message made only
of them finds nothing.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from pathlib import Path

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(f"([{CJK}]+)|([^\\W_{CJK}]+)")


def _lines(name: str) -> list[str]:
    return [line for line in Path(__file__).with_name(name).read_text("utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


# Function words and small talk, English and Chinese. A query keeps its other words; documents keep all.
STOPWORDS = frozenset(word for line in _lines("stopwords.txt") for word in line.split())
# Small-talk phrases that hold a word which elsewhere says something ("great job", "what is my job?")
SMALL_TALK = frozenset(" ".join(line.split()) for line in _lines("smalltalk.txt"))
_CLAUSE = re.compile(r"[^\w\s']+")  # punctuation and emoji end a clause
_STOP_CHARS = re.compile("[" + "".join(w for w in STOPWORDS if len(w) == 1 and re.match(f"[{CJK}]", w)) + "]")


def tokens(text: str) -> list[str]:
    """Lowercased word runs, and for CJK runs every character and every two adjacent characters."""
    out: list[str] = []
    for cjk, word in _TOKEN.findall(text.lower()):
        if word:
            out.append(word)
        else:
            out.extend(cjk)
            out.extend(cjk[i:i + 2] for i in range(len(cjk) - 1))
    return out


def query_terms(text: str) -> list[str]:
    """The query's distinct content words, in order (empty for small talk).

    A CJK run is cut at its function characters (我, 的, 在, ...); each piece gives its bigrams, or itself when
    it is one character, and a piece that repeats a unit ("晚安晚安") gives the unit's. Single characters of
    longer pieces would match nearly every Chinese memory, and bigrams across a function character are noise.
    """
    terms = []
    for cjk, word in _TOKEN.findall(text.lower()):
        if word:
            terms.append(word)
            continue
        if cjk in STOPWORDS or _unit(cjk) in STOPWORDS:
            continue
        for piece in _STOP_CHARS.split(cjk):
            piece = _unit(piece)
            terms.extend([piece[i:i + 2] for i in range(len(piece) - 1)] or ([piece] if piece else []))
    return [t for t in dict.fromkeys(terms) if t not in STOPWORDS]


def small_talk(text: str) -> bool:
    """Whether a message is only small talk: each of its clauses is a small-talk phrase or holds no content word
    ("Sounds good, see you later!", "ok 👍", "太好了！")."""
    clauses = (" ".join(c.lower().split()) for c in _CLAUSE.split(text.replace("\u2019", "'")))
    return all(c in SMALL_TALK or not query_terms(c) for c in clauses)


def _unit(piece: str) -> str:
    for size in range(1, len(piece) // 2 + 1):
        if len(piece) % size == 0 and piece[:size] * (len(piece) // size) == piece:
            return piece[:size]
    return piece


class LexicalIndex:
    """Documents by id; `search` ranks by BM25 (higher is better). Used from one thread at a time.

    A query leaves out its words that more than `COMMON_SHARE` of a large index's documents hold (a speaker's
    name that labels half of them, "one", "new"): their BM25 weight is slight, and each costs a walk over
    thousands of postings. LoCoMo's questions at 10,000 of its memories: BM25 p99 3.2–3.4 → 2.4–2.9 ms (labelled
    User/Assistant), 6.9 → 4.3 ms (labelled with the speakers' names); recall the same on it and on ours.
    Counted before stemming: a word whose stem a common word shares ("assist", "assistant") is not left out.
    """

    COMMON_SHARE = 0.05
    COMMON_FLOOR = 100  # below 2,000 documents BM25 over every word is fast: no word is left out there

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='porter unicode61')")
        self._holding: Counter[str] = Counter()  # documents that hold each token
        self._size = 0

    def add(self, rows: list[tuple[int, str]]) -> None:
        latest = dict(rows)
        if self._size:  # a document added again replaces itself
            for doc_id in latest:
                self.remove(doc_id)
        bodies = [(doc_id, tokens(text)) for doc_id, text in latest.items()]
        for _, body in bodies:
            self._holding.update(set(body))
        self._size += len(bodies)
        self._db.executemany("INSERT INTO docs(rowid, body) VALUES (?, ?)",
                             [(doc_id, " ".join(body)) for doc_id, body in bodies])

    def remove(self, doc_id: int) -> None:
        row = self._db.execute("SELECT body FROM docs WHERE rowid = ?", (doc_id,)).fetchone()
        if row is None:
            return
        self._holding.subtract(set(row[0].split()))
        self._size -= 1
        self._db.execute("DELETE FROM docs WHERE rowid = ?", (doc_id,))

    def search(self, text: str, k: int) -> list[tuple[int, float]]:
        terms = self._telling(query_terms(text))
        if not terms or k <= 0:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        # bm25() is lower-is-better (negative): negated, a score where more is more relevant
        return [(row[0], -row[1]) for row in self._db.execute(
            "SELECT rowid, bm25(docs) FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?", (match, k))]

    def _telling(self, terms: list[str]) -> list[str]:
        """The terms but those too common to tell documents apart; the rarest one when all of them are."""
        most = max(self.COMMON_SHARE * self._size, self.COMMON_FLOOR)
        kept = [t for t in terms if self._holding[t] <= most]
        return kept or sorted(terms, key=self._holding.__getitem__)[:1]

    def close(self) -> None:
        self._db.close()
