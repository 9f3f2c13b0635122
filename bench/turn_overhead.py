"""Server-side overhead per turn, against the cost of one embedding call measured in the same run.

Overhead = (frame received → first generator call) + (last token → `end` sent), from the pipeline's
own timing marks, at 1 and at 50 concurrent sessions, against a real server on 127.0.0.1 serving a
tiny local model. Baseline: the same server's embedder alone (one call; 50 concurrent calls).

    .venv/bin/python bench/turn_overhead.py [--sessions 50] [--turns 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from server.app import Hooks
from server.config import Settings
from server.keys import CHAT
from tests.support.client import connect
from tests.support.models import build_tiny_model
from tests.support.servers import ServerThread

MESSAGES = ["How was your day?", "I went climbing with my sister today.", "What should I cook tonight?",
            "My cat knocked over a plant again.", "Tell me something about Su Shi."]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(v: float) -> str:
    return f"{v * 1000:8.2f}"


async def run_sessions(ws_url: str, sessions: int, turns: int, tag: str) -> None:
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> None:
            client = await connect(http, ws_url)
            for t in range(turns):
                turn = await client.turn(f"{tag}-{i}", MESSAGES[(i + t) % len(MESSAGES)])
                if turn.end is None:
                    raise RuntimeError(f"turn failed: {turn.error}")
            await client.ws.close()

        await asyncio.gather(*(one(i) for i in range(sessions)))


def embedding_baseline(server: ServerThread, concurrency: int, rounds: int) -> list[float]:
    embedder = server.app[CHAT].embedder

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
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        results = []
        settings = Settings(_env_file=None, model=str(model), data_dir=Path(tmp) / "data", llm_backend="transformers",
                            max_new_tokens=8, context_tokens=2048, log_level="WARNING", flush_every=5)
        server = ServerThread(settings, Hooks(on_turn=results.append)).start()
        try:
            # warm-up: first calls pay for lazy initialisation on both the model and the embedder
            asyncio.run(run_sessions(server.ws_url, 2, 2, "warm"))
            embedding_baseline(server, 1, 5)
            rows = {}
            for sessions in (1, args.sessions):
                results.clear()
                turns = 20 if sessions == 1 else args.turns
                asyncio.run(run_sessions(server.ws_url, sessions, turns, f"s{sessions}"))
                before = [r.timing.before_generation for r in results]
                after = [r.timing.after_generation for r in results if r.timing.after_generation is not None]
                rows[sessions] = (before, after)
            embed_one = embedding_baseline(server, 1, 30)
            embed_many = embedding_baseline(server, args.sessions, 4)
        finally:
            server.stop()

    print(f"\nserver overhead per turn (ms), tiny model, {args.sessions} sessions × {args.turns} turns")
    print(f"{'':34}{'p50':>8} {'p99':>8}   n")
    for sessions, (before, after) in rows.items():
        total = [b + a for b, a in zip(before, after, strict=False)]
        for label, values in (("receive→generator", before), ("last token→end", after), ("total", total)):
            print(f"{sessions:>3} session(s)  {label:<20}{ms(pct(values, 50))} {ms(pct(values, 99))}  {len(values)}")
    print(f"embedding alone, 1 call            {ms(pct(embed_one, 50))} {ms(pct(embed_one, 99))}  {len(embed_one)}")
    print(f"embedding alone, {args.sessions} concurrent     {ms(pct(embed_many, 50))} {ms(pct(embed_many, 99))}"
          f"  {len(embed_many)}")
    before_n, after_n = rows[args.sessions]
    total_p99 = pct([b + a for b, a in zip(before_n, after_n, strict=False)], 99)
    one_call = statistics.median(embed_one)
    print(f"\nratio: p99 overhead at {args.sessions} sessions / one embedding call (p50) = "
          f"{total_p99 / one_call:.2f}x   (target < 3x)")
    print(f"ratio: p99 overhead at {args.sessions} sessions / p99 embedding at the same concurrency = "
          f"{total_p99 / pct(embed_many, 99):.2f}x")
    print(f"ratio: p99 overhead at 1 session / one embedding call (p50) = "
          f"{pct([b + a for b, a in zip(*rows[1], strict=False)], 99) / one_call:.2f}x")


if __name__ == "__main__":
    main()
