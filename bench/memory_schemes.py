"""Retrieval schemes for bench/memory_recall.py: document schemas, and dense, lexical and fused rankers.

A scheme is anything with
    index(documents: list[Document]) -> None          # one conversation's memories (replaces what it held)
    search(query: str, budget_chars: int | None) -> list[Document]
`search` returns documents best first: with a budget, what the scheme would put in the prompt (never more than
`budget_chars` characters of document text); with None, its ranking (at most DEPTH documents), from which the
bench reads recall at k. The product's own retrieval can be measured by wrapping it in this interface.

Schemes here:
  - dense: cosine over the documents' embeddings (what the server does with FAISS, exact): MiniLM's
    (`Encoder`) or the static model's distilled from it (`StaticEncoder`);
  - bm25: SQLite FTS5's bm25() (stdlib sqlite3, no extra dependency) over text tokenised for both languages:
    lowercased word runs (Porter-stemmed by FTS5) plus CJK character unigrams and bigrams;
  - hybrid: reciprocal rank fusion of the two rankings (k = 60).
Budget filling: documents in rank order, each that still fits is taken, one that does not is skipped.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEPTH = 50
RRF_K = 60
CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN = re.compile(f"([{CJK}]+)|([^\\W_{CJK}]+)")


@dataclass(frozen=True)
class Document:
    text: str  # what would be injected into the prompt (and what the lexical index reads)
    turns: tuple[int, ...]  # the conversation turns it holds
    embed: str = ""  # what the dense index embeds, when not `text`


# Document schemas: one conversation's turns (dicts with user, assistant, session, time) -> documents.

def pair_text(turn: dict) -> str:
    return f"User: {turn['user']}\nResponse: {turn['assistant']}"


def pairs(turns: Sequence[dict], meta: dict) -> list[Document]:
    """The server's schema today: one document per turn."""
    return [Document(pair_text(t), (t["turn"],)) for t in turns]


def utterances(turns: Sequence[dict], meta: dict) -> list[Document]:
    """One document per message: the user's and the assistant's apart."""
    docs = []
    for t in turns:
        docs.append(Document(f"User: {t['user']}", (t["turn"],)))
        docs.append(Document(f"Response: {t['assistant']}", (t["turn"],)))
    return docs


def windows(turns: Sequence[dict], meta: dict, size: int = 3) -> list[Document]:
    """Consecutive turns of one session, `size` at a time (not overlapping)."""
    docs, run = [], []
    for i, t in enumerate(turns):
        run.append(t)
        if len(run) == size or i + 1 == len(turns) or turns[i + 1]["session"] != t["session"]:
            docs.append(Document("\n".join(pair_text(r) for r in run), tuple(r["turn"] for r in run)))
            run = []
    return docs


def dated_pairs(turns: Sequence[dict], meta: dict) -> list[Document]:
    """Pairs that carry the date and the speakers' names; the dense side embeds the plain pair (the header
    changes MiniLM's vector little and would cost a second embedding pass)."""
    return [Document(f"[{t['time'][:10]}] {meta['user_name']}: {t['user']}\n{meta['assistant_name']}: "
                     f"{t['assistant']}", (t["turn"],), embed=pair_text(t)) for t in turns]


def named_pairs(turns: Sequence[dict], meta: dict) -> list[Document]:
    """The server's schema for turns imported with the speakers' names: one document per turn, each line led by
    its speaker (the date goes with the memory, not into its text)."""
    return [Document(f"{meta['user_name']}: {t['user']}\n{meta['assistant_name']}: {t['assistant']}", (t["turn"],))
            for t in turns]


def named_utterances(turns: Sequence[dict], meta: dict) -> list[Document]:
    """The server's schema (TurnRecord.memory_texts): one document per message, led by its speaker's name."""
    docs = []
    for t in turns:
        docs.append(Document(f"{meta['user_name']}: {t['user']}", (t["turn"],)))
        docs.append(Document(f"{meta['assistant_name']}: {t['assistant']}", (t["turn"],)))
    return docs


SCHEMAS: dict[str, Callable[[Sequence[dict], dict], list[Document]]] = {
    "pairs": pairs, "utterances": utterances, "windows3": windows, "dated pairs": dated_pairs,
    "named pairs": named_pairs, "named utterances": named_utterances}


def tokens(text: str) -> list[str]:
    """Lowercased word runs, and for CJK runs every character and every two adjacent characters."""
    out = []
    for cjk, word in TOKEN.findall(text.lower()):
        if word:
            out.append(word)
        else:
            out.extend(cjk)
            out.extend(cjk[i:i + 2] for i in range(len(cjk) - 1))
    return out


def within_budget(ranked: Sequence[Document], budget: int | None) -> list[Document]:
    if budget is None:
        return list(ranked[:DEPTH])
    chosen, left = [], budget
    for doc in ranked:
        if len(doc.text) <= left:
            chosen.append(doc)
            left -= len(doc.text)
    return chosen


class Ranker:
    """A scheme built from `rank(query) -> document indices, best first`."""

    docs: list[Document]

    def index(self, documents: list[Document]) -> None:
        raise NotImplementedError

    def rank(self, query: str) -> list[int]:
        raise NotImplementedError

    def search(self, query: str, budget_chars: int | None = None) -> list[Document]:
        return within_budget([self.docs[i] for i in self.rank(query)], budget_chars)


class Dense(Ranker):
    def __init__(self, encoder):
        self.encoder = encoder

    def index(self, documents: list[Document]) -> None:
        self.docs = documents
        self.matrix = self.encoder.embed([d.embed or d.text for d in documents])

    def rank(self, query: str) -> list[int]:
        scores = self.matrix @ self.encoder.embed([query])[0]
        top = np.argpartition(-scores, min(DEPTH, len(scores) - 1))[:DEPTH]
        return top[np.argsort(-scores[top])].tolist()


class Lexical(Ranker):
    """BM25 through SQLite FTS5 on pre-tokenised text (so the same tokens serve English and Chinese)."""

    def __init__(self, encoder=None):  # needs no embeddings; takes the encoder like the others
        self.db: sqlite3.Connection | None = None

    def index(self, documents: list[Document]) -> None:
        if self.db is not None:
            self.db.close()
        self.docs = documents
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='porter unicode61')")
        self.db.executemany("INSERT INTO docs(rowid, body) VALUES (?, ?)",
                            [(i, " ".join(tokens(d.text))) for i, d in enumerate(documents)])

    def rank(self, query: str) -> list[int]:
        terms = dict.fromkeys(tokens(query))
        if not terms or self.db is None:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        rows = self.db.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?",
                               (match, DEPTH)).fetchall()
        return [row[0] for row in rows]


class Hybrid(Ranker):
    """Reciprocal rank fusion: score = sum over rankings of 1 / (RRF_K + rank)."""

    def __init__(self, encoder):
        self.parts: list[Ranker] = [Dense(encoder), Lexical()]

    def index(self, documents: list[Document]) -> None:
        self.docs = documents
        for part in self.parts:
            part.index(documents)

    def rank(self, query: str) -> list[int]:
        scores: dict[int, float] = {}
        for part in self.parts:
            for r, i in enumerate(part.rank(query)):
                scores[i] = scores.get(i, 0.0) + 1.0 / (RRF_K + r + 1)
        return sorted(scores, key=scores.__getitem__, reverse=True)[:DEPTH]


class Encoder:
    """The server's MiniLM (the packaged all-MiniLM-L6-v2, loaded and run by server.memory.embed_worker),
    with every vector kept by text: documents shared by several schemes are embedded once, and queries can be
    embedded in one batch before the timed searches."""

    def __init__(self, threads: int = 1, precision: str = "auto"):
        from server.memory import embed_worker
        from server.memory.embedder import default_model_path

        self._worker = embed_worker
        self.model, self.info = embed_worker.load_model(str(default_model_path()), None, threads, precision)
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            for text, vector in zip(missing, self._worker.encode(self.model, missing, 64), strict=True):
                self.vectors[text] = vector
        return np.stack([self.vectors[t] for t in texts])

    def time_one(self, texts: Sequence[str]) -> list[float]:
        """Milliseconds to embed each text alone, as a turn embeds its message."""
        times = []
        for text in texts:
            started = time.perf_counter()
            self._worker.encode(self.model, [text], 64)
            times.append((time.perf_counter() - started) * 1000)
        return times


class StaticEncoder(Encoder):
    """The server's static model (EMBEDDER=static: distilled from the same MiniLM by model2vec, built if missing),
    run as the server runs it (server.memory.static_embedder.encode)."""

    def __init__(self):
        from server.memory import static_embedder

        self._static = static_embedder
        path = static_embedder.ensure_model()
        self.model = static_embedder._load(path)
        self.info = {"embedder": static_embedder.model_id(path.name.split("-pca")[0], self.model.embedding),
                     "precision": "fp32"}
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self._static.encode(self.model, missing), strict=True))
        return np.stack([self.vectors[t] for t in texts])

    def time_one(self, texts: Sequence[str]) -> list[float]:
        times = []
        for text in texts:
            started = time.perf_counter()
            self._static.encode(self.model, [text])
            times.append((time.perf_counter() - started) * 1000)
        return times


ENCODERS = {"minilm": Encoder, "static": StaticEncoder}


def load_cached(encoder: Encoder, texts: Sequence[str], path) -> None:
    """Embed `texts` into the encoder, through an .npz cache keyed by the caller (model, precision, texts)."""
    if path is not None and path.exists():
        with contextlib.suppress(OSError, ValueError, KeyError), np.load(path) as saved:
            vectors = saved["vectors"]
            if len(vectors) == len(texts):
                encoder.vectors.update(zip(texts, vectors, strict=True))
                return
    vectors = encoder.embed(texts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=vectors)


def finished(coroutine):
    """The result of a coroutine that never suspends (the server's async code over this in-process index)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the coroutine suspended")


class Product(Ranker):
    """The server's own retrieval, in process: its index (FAISS and BM25 over one namespace's memories, fed by
    log entries as the store would) and its ranking (server.memory.ranking); the budget is its token budget."""

    def __init__(self, encoder, policy=None):
        from server.memory.ranking import RankingPolicy

        self.encoder = encoder
        self.policy = policy or RankingPolicy()

    def index(self, documents: list[Document]) -> None:
        from server.protocols import Document as Memory
        from server.protocols import LogEntry
        from server.store.faiss_index import NamespaceIndex

        self.docs = documents
        vectors = self.encoder.embed([d.embed or d.text for d in documents])
        self.store = NamespaceIndex(vectors.shape[1])
        self.store.apply([LogEntry(i + 1, "add", Memory(i + 1, "bench", d.text, v, None, float(i)))
                          for i, (d, v) in enumerate(zip(documents, vectors, strict=True))])

    def ranked(self, query: str):
        from server.memory.people import naming_people
        from server.memory.ranking import DEPTH, fuse, worth_recalling

        if not worth_recalling(query):
            return []
        vector = self.encoder.embed([query])[0]

        async def search_text(text: str, k: int):
            return self.store.search_text(text, k)
        people = finished(naming_people(query, search_text))
        return fuse(self.store.search(vector, DEPTH), self.store.search_text(query, DEPTH), query, self.policy, people)

    def rank(self, query: str) -> list[int]:
        return [hit.doc.id - 1 for hit in self.ranked(query)]

    def search(self, query: str, budget_chars: int | None = None) -> list[Document]:
        from server.estimate import approximate_tokens
        from server.memory.ranking import within_budget
        from server.prompt import memory_order

        if budget_chars is None:
            return [self.docs[i] for i in self.rank(query)]
        chosen = within_budget(self.ranked(query), self.policy.budget_tokens, approximate_tokens)
        return [self.docs[hit.doc.id - 1] for hit in memory_order(chosen)]
