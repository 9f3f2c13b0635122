"""Check of the vllm backend on vLLM's real engine: our backend's tokens/s against vLLM's own AsyncLLM, same run.

It runs wherever vLLM runs: on an NVIDIA GPU (`pip install '.[gpu]'`) or on vLLM's CPU build
(`scripts/setup.sh vllm`, then `.venv-vllm/bin/python bench/gpu_check.py`). It
1. builds a tiny local model directory (Llama, head dim 64, random weights, tokenizer trained on the poems
   corpus when it is present, else on generated text; its end-of-sequence token muted so that every greedy
   stream runs to its token limit) — no download; a bigger one on a GPU than on a CPU;
2. starts the real server application (aiohttp on 127.0.0.1) with LLM_BACKEND=vllm, streams concurrent
   websocket turns end to end and checks their frames, and checks that a cancelled stream of the server's
   own Generator is aborted in the engine;
3. at each concurrency (default 1 and 16) alternates timed rounds: K concurrent greedy streams through the
   server's Generator, then the same prompt token ids with the same sampling parameters (greedy, DELTA
   outputs) on vLLM's AsyncLLM driven directly — the very engine instance the server built, so that the
   ratio is our backend's cost alone, not the difference between two engines (on 2 CPU cores, a second
   engine's idle worker busy-polls on the core the first one computes on); the ratio is the median of the
   rounds' paired ratios;
4. prints tokens/s of both and their ratio at each concurrency, and exits 1 loudly if a check fails or a
   ratio is below --min-ratio.

Without vllm (or with vLLM's GPU build on a machine without a GPU) it says so and exits 0.

    python bench/gpu_check.py                             # GPU: 1 and 16 streams x 256 tokens, 15 rounds
    .venv-vllm/bin/python bench/gpu_check.py              # the same on vLLM's CPU build
    python bench/gpu_check.py --concurrency 1,16,64 --max-tokens 512 --cuda-graphs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

# before anything imports transformers or vllm (all imported lazily below): nothing may reach the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the embedder may touch CUDA before the engine starts; spawn is what vLLM would switch to anyway
os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# head dim 64 (hidden / heads), which every vLLM attention backend accepts; a smaller model on a CPU
MODEL_SHAPES = {"gpu": dict(hidden=256, layers=4, heads=4, kv_heads=4, intermediate=768, vocab=4000, context=2048),
                "cpu": dict(hidden=128, layers=2, heads=2, kv_heads=2, intermediate=384, vocab=4000, context=1024)}
QUESTIONS = ["Write a poem about the moon over the Yangtze.", "What did Su Shi cook in Huangzhou?",
             "Describe the west lake in spring rain.", "How was your day?", "Tell me about red cliff.",
             "What is a good name for a ginger cat?", "Why do poets write about wine?", "Sing me a farewell song."]


class CheckFailed(RuntimeError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Run:
    label: str
    tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    per_stream: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        ttft = f"{statistics.median(self.ttft) * 1000:8.1f}" if self.ttft else "       -"
        return f"  {self.label:<40} {self.tokens:>8} {self.seconds:>9.3f} {self.rate:>11.0f} {ttft}"


def best(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: r.rate)


# ----------------------------------------------------------------------------------- the model


def training_texts() -> list[str]:
    for corpus in (REPO / "shared" / "corpus" / "poems.html", REPO.parent / "shared" / "corpus" / "poems.html"):
        if corpus.is_file():
            from scraper.corpus import read_corpus

            return [f"{p.title}\n{p.text}" for p in read_corpus(corpus)[:3000]] + QUESTIONS * 20
    rng = random.Random(0)
    syllables = ["su", "shi", "dong", "po", "yue", "jiang", "shan", "feng", "yu", "hua", "jiu", "chun", "qiu",
                 "moon", "river", "wine", "cliff", "lake", "rain", "song", "the", "a", "of", "in", "and"]
    lines = [" ".join("".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(rng.randint(4, 14)))
             for _ in range(6000)]
    return lines + QUESTIONS * 20


def build_model(out: Path, shape: dict) -> Path:
    """The check model; its end-of-sequence token's (tied) embedding row is zero, so its logit is 0 while the
    best of the other random logits is above it: greedy streams run to their token limit on both sides."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.scratch import ScratchSize, create_scratch_model

    create_scratch_model(training_texts(), ScratchSize(**shape), out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    check(model.config.hidden_size // model.config.num_attention_heads == 64, "the check model must have head dim 64")
    with torch.no_grad():
        model.get_input_embeddings().weight[model.config.eos_token_id].zero_()
    model.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------------- phases


def settings_for(model_dir: Path, data_dir: Path, args):
    from server.config import Settings

    return Settings(_env_file=None, model=str(model_dir), llm_backend="vllm", data_dir=data_dir,
                    max_new_tokens=args.max_tokens, temperature=0.0, top_p=1.0, flush_every=10_000,
                    vllm_gpu_memory_utilization=args.gpu_memory, vllm_max_model_len=args.shape["context"],
                    vllm_enforce_eager=not args.cuda_graphs, embed_workers="thread", log_format="console",
                    log_level="WARNING")


async def websocket_turns(url: str, k: int) -> Run:
    import aiohttp

    async def one(http, i: int) -> tuple[int, float]:
        started = time.perf_counter()
        first = None
        async with http.ws_connect(f"{url}/ws") as ws:
            await ws.send_json({"type": "chat", "session": f"gpu-{i}-{time.time_ns()}", "text": QUESTIONS[i % 8]})
            frames = []
            while True:
                frame = json.loads((await ws.receive(timeout=300)).data)
                frames.append(frame)
                if frame["type"] == "token" and first is None:
                    first = time.perf_counter() - started
                if frame["type"] in ("end", "error"):
                    break
        kinds = [f["type"] for f in frames]
        check(kinds[0] == "start" and kinds[-1] == "end", f"websocket turn {i} did not end cleanly: {frames[-1]}")
        tokens = "".join(f["text"] for f in frames if f["type"] == "token")
        check(frames[-1]["text"] == tokens, f"websocket turn {i}: end text is not the tokens joined")
        check(frames[-1]["usage"]["completion_tokens"] > 0, f"websocket turn {i} generated nothing")
        return frames[-1]["usage"]["completion_tokens"], first or 0.0

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(http, i) for i in range(k)))
        seconds = time.perf_counter() - started
    return Run(f"server end to end ({k} websocket turns)", sum(r[0] for r in results), seconds,
               [r[1] for r in results], [r[0] for r in results])


async def generator_streams(generator, conversations, params, label: str) -> Run:
    from server.protocols import Usage

    async def one(messages) -> tuple[int, float]:
        usage = Usage()
        started = time.perf_counter()
        first = None
        stream = generator.stream(messages, params, usage)
        async with contextlib.aclosing(stream):
            async for _ in stream:
                if first is None:
                    first = time.perf_counter() - started
        return usage.completion_tokens, first or 0.0

    started = time.perf_counter()
    results = await asyncio.gather(*(one(m) for m in conversations))
    return Run(label, sum(r[0] for r in results), time.perf_counter() - started, [r[1] for r in results],
               [r[0] for r in results])


def unfinished(engine) -> int | None:
    processor = getattr(engine, "output_processor", None)
    count = getattr(processor, "get_num_unfinished_requests", None)
    return count() if callable(count) else None


async def cancelled_stream_is_aborted(generator, messages, params) -> str:
    from server.protocols import Usage

    stream = generator.stream(messages, params, Usage())
    async with contextlib.aclosing(stream):
        for _ in range(3):
            if await anext(stream, None) is None:
                return "not checked: the reply ended within 3 deltas"
    for _ in range(100):
        left = unfinished(generator.engine)
        if left is None:
            return "not checkable with this vLLM version"
        if left == 0:
            return "ok (request aborted in the engine)"
        await asyncio.sleep(0.05)
    raise CheckFailed(f"a cancelled stream left {unfinished(generator.engine)} unfinished request(s) in the engine")


async def direct_streams(engine, prompt_ids: list[list[int]], sampling, label: str) -> Run:
    """vLLM's AsyncLLM driven directly: the same prompt token ids and sampling parameters as our backend's."""

    async def one(ids: list[int]) -> tuple[int, float]:
        tokens, first, begun = 0, None, time.perf_counter()
        async for output in engine.generate({"prompt_token_ids": ids}, sampling, f"direct-{uuid.uuid4().hex}"):
            tokens += len(output.outputs[0].token_ids)
            if first is None and output.outputs[0].text:
                first = time.perf_counter() - begun
        return tokens, first or 0.0

    started = time.perf_counter()
    results = await asyncio.gather(*(one(ids) for ids in prompt_ids))
    return Run(label, sum(r[0] for r in results), time.perf_counter() - started, [r[1] for r in results],
               [r[0] for r in results])


@dataclass
class Level:
    k: int
    ours: list[Run]
    direct: list[Run]

    @property
    def ratio(self) -> float:
        """The median over rounds of ours / direct, each pair of rounds run back to back: a burst of the machine's
        other work then falls on one pair, not on one side."""
        pairs = zip(self.ours, self.direct, strict=True)
        return statistics.median([o.rate / d.rate if d.rate else 0.0 for o, d in pairs])

    @property
    def best_ratio(self) -> float:
        direct = best(self.direct).rate
        return best(self.ours).rate / direct if direct else 0.0


async def compare(generator, args) -> list[Level]:
    """At each concurrency, timed rounds alternate between our backend and its AsyncLLM driven directly (which
    goes first swaps every round), so that a change in the machine's load falls on both sides alike."""
    from server.llm.vllm_backend import sampling_params
    from server.protocols import GenerationParams, Message

    engine = generator.engine
    params = GenerationParams(args.max_tokens, 0.0, 1.0)
    sampling = sampling_params(params, args.max_tokens)
    levels = []
    for k in args.concurrency:
        conversations = [[Message("system", "You are a poet."), Message("user", QUESTIONS[i % 8] + f" ({i})")]
                         for i in range(k)]
        prompt_ids = [generator.render(m) for m in conversations]
        check(all(len(ids) + args.max_tokens <= args.shape["context"] for ids in prompt_ids), "prompts too long")
        await generator_streams(generator, conversations, params, "warm-up")
        await direct_streams(engine, prompt_ids, sampling, "warm-up")
        level = Level(k, [], [])
        ours = functools.partial(generator_streams, generator, conversations, params, "our backend (Generator.stream)")
        direct = functools.partial(direct_streams, engine, prompt_ids, sampling, "vLLM AsyncLLM.generate (direct)")
        for n in range(args.rounds):
            sides = [("ours", ours), ("direct", direct)]
            for side, run in sides if n % 2 == 0 else reversed(sides):
                getattr(level, side).append(await run())
        levels.append(level)
    return levels


async def serve_and_compare(model_dir: Path, work: Path, args) -> tuple[list[Level], Run, str]:
    from aiohttp import web

    from server.app import build_app
    from server.keys import CHAT
    from server.protocols import GenerationParams, Message

    app = build_app(settings_for(model_dir, work / "data", args))
    runner = web.AppRunner(app, handler_cancellation=True)
    started = time.perf_counter()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    print(f"  server with LLM_BACKEND=vllm ready in {time.perf_counter() - started:.1f}s at {url}", flush=True)
    try:
        generator = app[CHAT].services.generator
        check(generator.name == "vllm", f"the server chose the {generator.name} backend, not vllm")
        await websocket_turns(url, 2)  # warm-up, and the first look at real frames
        e2e = await websocket_turns(url, max(args.concurrency))
        abort = await cancelled_stream_is_aborted(generator, [Message("user", QUESTIONS[0])],
                                                  GenerationParams(args.shape["context"] // 2, 0.0, 1.0))
        return await compare(generator, args), e2e, abort
    finally:
        await runner.cleanup()  # closes the generator: engine.shutdown()


def device_line(platform: str) -> str:
    import torch
    import vllm

    if platform == "cpu":
        device = f"vLLM's CPU build ({len(os.sched_getaffinity(0))} cores)"
    else:
        _, total = torch.cuda.mem_get_info()
        device = f"{torch.cuda.get_device_name(0)} ({total / 2**30:.0f} GiB)"
    return f"gpu_check: {device}, vllm {vllm.__version__}, torch {torch.__version__}"


def report(levels: list[Level], e2e: Run, abort: str, args) -> None:
    print()
    print(f"  {'':<40} {'tokens':>8} {'seconds':>9} {'tokens/s':>11} {'TTFT ms':>8}   (best of {args.rounds})")
    for level in levels:
        print(f"  {level.k} concurrent stream(s):")
        print(best(level.direct).line())
        print(best(level.ours).line())
        print(f"    all rounds, tokens/s: direct {[round(r.rate) for r in level.direct]}, "
              f"ours {[round(r.rate) for r in level.ours]}")
        check(best(level.ours).per_stream == best(level.direct).per_stream,
              f"at {level.k}: the two sides generated different token counts")
    print(e2e.line())
    print(f"  cancelled stream: {abort}")
    for level in levels:
        print(f"  RATIO our backend / vLLM direct at {level.k:>3} concurrent: {level.ratio:.3f} (median of "
              f"{len(level.ours)} paired rounds; best round against best round: {level.best_ratio:.3f})")


async def main_async(args, platform: str) -> int:
    print(device_line(platform))
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        model_dir = build_model(work / "model", args.shape)
        print(f"  tiny model ({args.shape}) built in {time.perf_counter() - started:.1f}s at {model_dir}", flush=True)
        mode = "CUDA graphs" if args.cuda_graphs else "eager"
        print(f"  {args.concurrency} concurrent streams x {args.max_tokens} tokens, greedy, {args.rounds} rounds, "
              f"{mode}", flush=True)
        levels, e2e, abort = await serve_and_compare(model_dir, work, args)
    report(levels, e2e, abort, args)
    for level in levels:
        check(best(level.ours).tokens > 0 and best(level.direct).tokens > 0, "a run generated no tokens")
        check(level.ratio >= args.min_ratio, f"at {level.k} concurrent our backend reached {level.ratio:.2f} of "
                                             f"vLLM's own throughput (the floor is {args.min_ratio})")
    print("gpu_check: PASS")
    return 0


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,16", help="concurrent streams to compare at (default 1,16)")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per stream (default 256)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per side (default 15)")
    parser.add_argument("--gpu-memory", type=float, default=0.4,
                        help="VLLM_GPU_MEMORY_UTILIZATION (default 0.4; on vLLM's CPU build the KV cache is "
                             "VLLM_CPU_KVCACHE_SPACE GiB instead, default 1)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="capture CUDA graphs (slower start, faster decode); default: eager")
    parser.add_argument("--min-ratio", type=float, default=0.9,
                        help="fail when our tokens/s is below this fraction of AsyncLLM's (default 0.9)")
    parser.add_argument("--keep", help="build the model and data here and keep them (default: a temp dir)")
    args = parser.parse_args(argv)
    args.concurrency = sorted({int(k) for k in args.concurrency.split(",")})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from server.llm.vllm_backend import vllm_platform

    platform, reason = vllm_platform()
    if platform is None:
        print(f"gpu_check: nothing to measure here. {reason}")
        return 0
    args.shape = MODEL_SHAPES["cpu" if platform == "cpu" else "gpu"]
    if platform == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; else vLLM reserves a share of all RAM
    try:
        return asyncio.run(main_async(args, platform))
    except CheckFailed as exc:
        print(f"gpu_check: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
