"""The original chatbot's stack, the baseline of bench/turn_overhead.py: LangChain's memory classes served one
request at a time, as its Gradio app served them.

Per session: a `ConversationBufferMemory` (the short-term buffer, in every prompt) and a
`VectorStoreRetrieverMemory` over a LangChain FAISS vector store (the top 2 past pairs for each message),
embedded by the same MiniLM (the packaged all-MiniLM-L6-v2, through LangChain's `HuggingFaceEmbeddings`: the
one in langchain-community, since langchain-huggingface's needs an older huggingface-hub than the server's);
every 5 turns the buffer is flushed into the vector store, a pair per document. The LLM is LangChain's
`FakeListLLM`, which answers at once: what is measured is the stack around it. One request runs at a time (a
single worker thread: the Gradio queue's default concurrency of one), so concurrent sessions wait their turn.

Runs in a child process of the bench (its imports and MiniLM's threads stay out of the measured server).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

PERSONA = "You are Su Shi, the Song dynasty poet, chatting with a friend."
TEMPLATE = "{persona}\n\nRelevant pieces of previous conversation:\n{history}\n\nCurrent conversation:\n{buffer}\n" \
           "Human: {input}\nAI:"


class OriginalChat:
    """One session of the original app: its buffer, its vector-store memory, its prompt and its LLM call."""

    def __init__(self, embeddings, llm, flush_every: int = 5, k: int = 2):
        with warnings.catch_warnings():  # the deprecation notices of the classes the original used
            warnings.simplefilter("ignore")
            self._open(embeddings, llm, flush_every, k)

    def _open(self, embeddings, llm, flush_every: int, k: int) -> None:
        from langchain_classic.memory import ConversationBufferMemory, VectorStoreRetrieverMemory
        from langchain_community.vectorstores import FAISS
        from langchain_core.prompts import PromptTemplate

        # LangChain's FAISS store cannot start empty: it starts with one placeholder, so that every turn searches
        store = FAISS.from_texts(["(no memories yet)"], embeddings)
        self.long_term = VectorStoreRetrieverMemory(retriever=store.as_retriever(search_kwargs={"k": k}))
        self.buffer = ConversationBufferMemory(human_prefix="Human", ai_prefix="AI")
        self.prompt = PromptTemplate.from_template(TEMPLATE)
        self.llm = llm
        self.flush_every = flush_every
        self.turns = 0

    def turn(self, text: str) -> float:
        """One request; returns the seconds spent in the LLM (to subtract: the rest is the stack's)."""
        history = self.long_term.load_memory_variables({"input": text})["history"]
        buffer = self.buffer.load_memory_variables({})["history"]
        prompt = self.prompt.format(persona=PERSONA, history=history, buffer=buffer, input=text)
        started = time.perf_counter()
        reply = self.llm.invoke(prompt)
        llm_seconds = time.perf_counter() - started
        self.buffer.save_context({"input": text}, {"output": reply})
        self.turns += 1
        if self.turns % self.flush_every == 0:
            self._flush()
        return llm_seconds

    def _flush(self) -> None:
        messages = self.buffer.chat_memory.messages
        for user, reply in ((messages[i].content, messages[i + 1].content) for i in range(0, len(messages) - 1, 2)):
            self.long_term.save_context({"input": user}, {"output": reply})
        self.buffer.clear()


def _stack():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_core.language_models.fake import FakeListLLM

    from server.memory.embedder import default_model_path

    warnings.filterwarnings("ignore")  # deprecation notices of the classes the original used (after LangChain's)

    embeddings = HuggingFaceEmbeddings(model_name=str(default_model_path()), model_kwargs={"device": "cpu"},
                                       encode_kwargs={"normalize_embeddings": True})
    return embeddings, FakeListLLM(responses=["A fine question; let me think about it over tea."])


def measure(runs: dict[str, tuple[int, int, float]], messages: list[str]) -> dict[str, list[float]]:
    """For each run (sessions, turns each, mean think time), the seconds each turn's request spent in the stack
    (waiting for the one worker, then its memory work; the LLM's instant reply excluded)."""
    embeddings, llm = _stack()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradio-queue")
    OriginalChat(embeddings, llm, flush_every=1).turn("warm-up")  # MiniLM's first call pays for initialisation
    out = {}
    for label, (sessions, turns, think) in runs.items():
        chats = [OriginalChat(embeddings, llm) for _ in range(sessions)]  # opened before their first message
        out[label] = asyncio.run(_drive(worker, chats, turns, think, messages))
    worker.shutdown()
    return out


async def _drive(worker, chats: list[OriginalChat], turns: int, think: float, messages: list[str]) -> list[float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(len(chats))
    added: list[float] = []

    async def one(i: int) -> None:
        chat = chats[i]
        for t in range(turns):
            if think:
                await asyncio.sleep(rng.expovariate(1 / think))
            started = time.perf_counter()
            llm_seconds = await loop.run_in_executor(worker, chat.turn, messages[(i + t) % len(messages)])
            added.append(time.perf_counter() - started - llm_seconds)

    await asyncio.gather(*(one(i) for i in range(len(chats))))
    return added
