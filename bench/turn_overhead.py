"""Server-side overhead per turn, against the original chatbot's stack measured in the same run.

Overhead = (frame received → first generator call) + (last token → `end` sent), from the pipeline's
own timing marks, at 1 and at 50 concurrent sessions, against a real server on 127.0.0.1 serving a
generator that answers at once (no search; EMBEDDER: --embedder, default the server's). The
generator: --generator upstream (default), the OpenAI backend streaming from bench/fake_upstream.py in another
process with no time to first token, as the original's instant fake LLM; or --generator tiny, a tiny local
transformers model in-process (its generation then competes with the server's own work for the cores).
The server runs in this process (its timing marks are read through `Hooks`) with the serving
process's settings (uvloop, GIL switch interval, collector policy); the clients run in a child
process, as remote clients would, so that their work does not compete with the server's for the GIL.

Baselines, same run: the original chatbot's stack (bench/original_stack.py: LangChain's buffer and FAISS
vector-store memories over the same MiniLM, an instant fake LLM, flushed every 5 turns, one request at a time
as its Gradio app served them; its figure is each request's time in the stack, queueing included, the LLM
excluded), in a child process after the server has stopped; and the server's own embedder alone.

    .venv/bin/python bench/turn_overhead.py [--sessions 50] [--turns 4] [--embedder static|minilm] [--generator tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import original_stack

from server.__main__ import tune_collector
from server.app import Hooks
from server.config import Settings
from server.keys import CHAT
from tests.support.client import connect
from tests.support.models import build_tiny_model
from tests.support.servers import ServerThread, free_port, wait_http

MESSAGES = ["How was your day?", "I went climbing with my sister today.", "What should I cook tonight?",
            "My cat knocked over a plant again.", "Tell me something about Su Shi."]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(v: float) -> str:
    return f"{v * 1000:8.2f}"


async def run_sessions(ws_url: str, sessions: int, turns: int, tag: str, think: float = 0.0) -> None:
    """`think` = 0: every session sends its next turn the moment the last one ends (lockstep bursts);
    otherwise each waits an exponentially distributed think time with that mean, as people do."""
    rng = random.Random(sessions)
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> None:
            client = await connect(http, ws_url)
            for t in range(turns):
                if think:
                    await asyncio.sleep(rng.expovariate(1 / think))
                turn = await client.turn(f"{tag}-{i}", MESSAGES[(i + t) % len(MESSAGES)])
                if turn.end is None:
                    raise RuntimeError(f"turn failed: {turn.error}")
            await client.ws.close()

        await asyncio.gather(*(one(i) for i in range(sessions)))


def drive(ws_url: str, sessions: int, turns: int, tag: str, think: float) -> None:
    asyncio.run(run_sessions(ws_url, sessions, turns, tag, think))


def embedding_baseline(server: ServerThread, concurrency: int, rounds: int) -> list[float]:
    embedder = server.app[CHAT].services.embedder

    async def timed(text: str) -> float:
        start = time.perf_counter()
        await embedder.embed([text])
        return time.perf_counter() - start

    async def batch() -> list[float]:
        out = []
        for r in range(rounds):
            out += await asyncio.gather(*(timed(f"{MESSAGES[i % 5]} #{r}-{i}") for i in range(concurrency)))
        return out

    return server.call(batch(), timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", choices=("upstream", "tiny"), default="upstream",
                        help="an instant OpenAI-compatible upstream (default) or a tiny local model in-process")
    parser.add_argument("--embedder", choices=("auto", "static", "minilm"), default=None,
                        help="the server's EMBEDDER (default: the server's default)")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--think", type=float, default=2.0,
                        help="mean think time (s) between a session's turns in the paced run")
    args = parser.parse_args()

    upstream = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.generator == "tiny":
            generator = {"model": str(build_tiny_model(Path(tmp) / "model")), "llm_backend": "transformers"}
        else:
            port = free_port()
            upstream = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_upstream.py")), "--port",
                                         str(port), "--rate", "1000", "--ttft", "0", "--tokens", "8"])
            wait_http(f"http://127.0.0.1:{port}/v1/models")
            generator = {"model": "fake", "llm_backend": "openai", "openai_base_url": f"http://127.0.0.1:{port}/v1",
                         "openai_api_key": "sk-bench-unused"}
        results = []
        settings = Settings(_env_file=None, **generator, data_dir=Path(tmp) / "data", max_new_tokens=8,
                            context_tokens=2048, log_level="WARNING", flush_every=5,
                            turns_per_minute=100_000, max_active_turns=100_000,
                            **({"embedder": args.embedder} if args.embedder else {}))
        sys.setswitchinterval(settings.gil_switch_interval)
        server = ServerThread(settings, Hooks(on_turn=results.append), uvloop=True).start()
        clients = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            # warm-up: first calls pay for lazy initialisation on both the model and the embedder
            clients.submit(drive, server.ws_url, 2, 2, "warm", 0.0).result()
            embedding_baseline(server, 1, 5)
            tune_collector()
            rows, phases = {}, {}
            runs = {"1 session": (1, 20, 0.0), f"{args.sessions} in lockstep": (args.sessions, args.turns, 0.0),
                    f"{args.sessions} paced": (args.sessions, args.turns, args.think)}
            for label, (sessions, turns, think) in runs.items():
                results.clear()
                clients.submit(drive, server.ws_url, sessions, turns, label.replace(" ", "-"), think).result()
                before = [r.timing.before_generation for r in results]
                after = [r.timing.after_generation for r in results if r.timing.after_generation is not None]
                rows[label] = (before, after)
                phases[label] = {name: statistics.mean(r.timing.phases.get(name, 0.0) for r in results)
                                 for name in results[0].timing.phases}
            embed_one = embedding_baseline(server, 1, 30)
            embed_many = embedding_baseline(server, args.sessions, 4)
            embedder = server.app[CHAT].services.embedder.describe()
        finally:
            server.stop()
            if upstream is not None:
                upstream.terminate()
                upstream.wait(10)
        try:
            original = clients.submit(original_stack.measure, runs, MESSAGES).result()
        finally:
            clients.shutdown()

    print(f"\nserver overhead per turn (ms), generator {args.generator}, embedder {embedder['id']}; "
          f"{args.sessions} sessions × {args.turns} turns, lockstep (no think time) and paced "
          f"(think ~ Exp(mean {args.think:g} s))")
    print(f"{'':40}{'p50':>8} {'p99':>8}   n")
    p99 = {}
    for label, (before, after) in rows.items():
        total = [b + a for b, a in zip(before, after, strict=False)]
        p99[label] = pct(total, 99)
        for part, values in (("receive→generator", before), ("last token→end", after), ("total", total)):
            print(f"{label:<19}{part:<21}{ms(pct(values, 50))} {ms(pct(values, 99))}  {len(values)}")
    print(f"{'embedding alone, 1 call':<40}{ms(pct(embed_one, 50))} {ms(pct(embed_one, 99))}  {len(embed_one)}")
    print(f"{f'embedding alone, {args.sessions} concurrent':<40}{ms(pct(embed_many, 50))} {ms(pct(embed_many, 99))}"
          f"  {len(embed_many)}")
    print("\nmean ms per step before generation:")
    for label, steps in phases.items():
        print(f"  {label:<17}" + ", ".join(f"{name} {v * 1000:.1f}" for name, v in steps.items()))
    one_call = statistics.median(embed_one)
    print()
    for label in rows:
        print(f"ratio: p99 overhead, {label} / one embedding call (p50) = {p99[label] / one_call:.2f}x")
    lockstep = f"{args.sessions} in lockstep"
    print(f"ratio: p99 overhead, {lockstep} / p99 of {args.sessions} concurrent embedding calls alone = "
          f"{p99[lockstep] / pct(embed_many, 99):.2f}x")
    print("\nthe original stack (LangChain memories over MiniLM, one request at a time), ms per turn in the stack:")
    print(f"{'':40}{'p50':>8} {'p99':>8}   n     ratio p50  ratio p99 (server / original)")
    targets = {"1 session": 0.1, lockstep: 0.05}
    for label, (before, after) in rows.items():
        total = [b + a for b, a in zip(before, after, strict=False)]
        theirs = original[label]
        target = f"   (target <= {targets[label]:g}x)" if label in targets else ""
        print(f"{label:<40}{ms(pct(theirs, 50))} {ms(pct(theirs, 99))}  {len(theirs):<5}"
              f"{pct(total, 50) / pct(theirs, 50):>9.3f}x {pct(total, 99) / pct(theirs, 99):>9.3f}x{target}")

if __name__ == "__main__":
    main()
