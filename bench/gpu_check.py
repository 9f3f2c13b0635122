"""GPU check of the vllm backend: tokens/s of our backend against vLLM's own AsyncLLM, in the same run.

On a machine with an NVIDIA GPU and vllm installed (`pip install vllm`, or `pip install '.[gpu]'`):
1. builds a tiny local model directory (Llama, head dim 64, random weights, tokenizer trained on the
   poems corpus when it is present, else on generated text) — no download;
2. starts the real server application (aiohttp on 127.0.0.1) with LLM_BACKEND=vllm, streams a few
   concurrent websocket turns end to end and checks their frames, then drives the server's own
   Generator directly: K concurrent greedy streams of the same prompts, and one cancelled stream
   (its request must be aborted in the engine);
3. shuts the server down and drives vLLM's AsyncLLM directly, built from the same engine settings,
   with the same prompt token ids and sampling parameters (greedy, DELTA outputs);
4. prints tokens/s of both and their ratio, and exits 1 loudly if any check fails.

Without CUDA it says so and exits 0: there is nothing to measure.

    python bench/gpu_check.py                        # 8 concurrent turns x 256 tokens, 3 rounds
    python bench/gpu_check.py --turns 32 --max-tokens 512 --cuda-graphs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# hidden 256 / 4 heads = head dim 64, which every vLLM attention backend accepts
MODEL_SHAPE = dict(hidden=256, layers=4, heads=4, kv_heads=4, intermediate=768, vocab=4000, context=2048)
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


def build_model(out: Path) -> Path:
    from trainer.scratch import ScratchSize, create_scratch_model

    create_scratch_model(training_texts(), ScratchSize(**MODEL_SHAPE), out)
    config = json.loads((out / "config.json").read_text())
    check(config["hidden_size"] // config["num_attention_heads"] == 64, "the check model must have head dim 64")
    return out


# ------------------------------------------------------------------------------------- phases


def settings_for(model_dir: Path, data_dir: Path, args):
    from server.config import Settings

    return Settings(_env_file=None, model=str(model_dir), llm_backend="vllm", data_dir=data_dir,
                    max_new_tokens=args.max_tokens, temperature=0.0, top_p=1.0, flush_every=10_000,
                    vllm_gpu_memory_utilization=args.gpu_memory, vllm_max_model_len=MODEL_SHAPE["context"],
                    vllm_enforce_eager=not args.cuda_graphs, log_format="console", log_level="WARNING")


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


async def ours(model_dir: Path, work: Path, args) -> tuple[list[Run], Run, list[list[int]], str, object]:
    from aiohttp import web

    from server.app import build_app
    from server.keys import CHAT
    from server.protocols import GenerationParams, Message

    settings = settings_for(model_dir, work / "data", args)
    app = build_app(settings)
    runner = web.AppRunner(app, handler_cancellation=True)
    started = time.perf_counter()
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    print(f"  server with LLM_BACKEND=vllm ready in {time.perf_counter() - started:.1f}s at {url}", flush=True)
    try:
        generator = app[CHAT].generator
        check(generator.name == "vllm", f"the server chose the {generator.name} backend, not vllm")
        await websocket_turns(url, 2)  # warm-up, and the first look at real frames
        e2e = await websocket_turns(url, args.turns)
        conversations = [[Message("system", "You are a poet."), Message("user", QUESTIONS[i % 8] + f" ({i})")]
                         for i in range(args.turns)]
        params = GenerationParams(args.max_tokens, 0.0, 1.0)
        await generator_streams(generator, conversations[:2], params, "warm-up")
        runs = [await generator_streams(generator, conversations, params, "our vllm backend (Generator)")
                for _ in range(args.rounds)]
        abort = await cancelled_stream_is_aborted(generator, conversations[0],
                                                  GenerationParams(MODEL_SHAPE["context"] // 2, 0.0, 1.0))
        prompt_ids = [generator.render(m) for m in conversations]
        engine_config = generator.config
    finally:
        await runner.cleanup()  # closes the generator: engine.shutdown()
    return runs, e2e, prompt_ids, abort, engine_config


async def direct(engine_config, prompt_ids: list[list[int]], args) -> list[Run]:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    started = time.perf_counter()
    engine = AsyncLLM.from_engine_args(engine_config.engine_args())
    print(f"  vLLM AsyncLLM ready in {time.perf_counter() - started:.1f}s", flush=True)
    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, top_p=1.0,
                              output_kind=RequestOutputKind.DELTA, skip_special_tokens=True)

    async def one(ids: list[int], request_id: str) -> tuple[int, float]:
        tokens, first, begun = 0, None, time.perf_counter()
        async for output in engine.generate({"prompt_token_ids": ids}, sampling, request_id):
            tokens += len(output.outputs[0].token_ids)
            if first is None and output.outputs[0].text:
                first = time.perf_counter() - begun
        return tokens, first or 0.0

    async def round_(tag: str, label: str) -> Run:
        begun = time.perf_counter()
        results = await asyncio.gather(*(one(ids, f"{tag}-{i}") for i, ids in enumerate(prompt_ids)))
        return Run(label, sum(r[0] for r in results), time.perf_counter() - begun, [r[1] for r in results],
                   [r[0] for r in results])

    try:
        await round_("warm", "warm-up")
        return [await round_(f"r{n}", "vLLM AsyncLLM (direct)") for n in range(args.rounds)]
    finally:
        engine.shutdown()


async def wait_for_gpu_memory(baseline_free: int, timeout: float = 60) -> None:
    """The engine process frees its memory when it exits; the next engine must find it free again."""
    import torch

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        free, _ = torch.cuda.mem_get_info()
        if free >= baseline_free * 0.95:
            return
        await asyncio.sleep(0.5)
    print("  warning: GPU memory was not fully released after the server stopped", flush=True)


async def main_async(args) -> int:
    import torch
    import vllm

    device = torch.cuda.get_device_name(0)
    free, total = torch.cuda.mem_get_info()
    print(f"gpu_check: {device} ({total / 2**30:.0f} GiB), vllm {vllm.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        model_dir = build_model(work / "model")
        print(f"  tiny model ({MODEL_SHAPE}) built in {time.perf_counter() - started:.1f}s at {model_dir}", flush=True)
        mode = "CUDA graphs" if args.cuda_graphs else "eager"
        print(f"  {args.turns} concurrent turns x up to {args.max_tokens} tokens, greedy, {args.rounds} rounds, {mode}")

        ours_runs, e2e, prompt_ids, abort, engine_config = await ours(model_dir, work, args)
        await wait_for_gpu_memory(free)
        direct_runs = await direct(engine_config, prompt_ids, args)

    ours_best, direct_best = best(ours_runs), best(direct_runs)
    ratio = ours_best.rate / direct_best.rate if direct_best.rate else 0.0
    print()
    print(f"  {'':<40} {'tokens':>8} {'seconds':>9} {'tokens/s':>11} {'TTFT ms':>8}   (best of {args.rounds})")
    print(direct_best.line())
    print(ours_best.line())
    print(e2e.line())
    print(f"  all rounds, tokens/s: direct {[round(r.rate) for r in direct_runs]}, "
          f"ours {[round(r.rate) for r in ours_runs]}")
    print(f"  tokens per stream: direct {direct_best.per_stream}, ours {ours_best.per_stream}")
    print(f"  cancelled stream: {abort}")
    print(f"  RATIO our backend / vLLM direct: {ratio:.3f}")
    check(ours_best.tokens > 0 and direct_best.tokens > 0, "a run generated no tokens")
    check(ratio >= args.min_ratio, f"our backend reached {ratio:.2f} of vLLM's own throughput "
                                   f"(the floor is {args.min_ratio})")
    print("gpu_check: PASS")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=8, help="concurrent turns (default 8)")
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens per turn (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per side; the best is reported")
    parser.add_argument("--gpu-memory", type=float, default=0.4,
                        help="VLLM_GPU_MEMORY_UTILIZATION for both engines (default 0.4)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="capture CUDA graphs (slower start, faster decode); default: eager")
    parser.add_argument("--min-ratio", type=float, default=0.5,
                        help="fail when our tokens/s is below this fraction of vLLM's (default 0.5)")
    parser.add_argument("--keep", help="build the model and data here and keep them (default: a temp dir)")
    args = parser.parse_args(argv)

    from server.llm.vllm_backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is not None:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no GPU on this machine (torch.cuda.is_available() is False); nothing to measure. "
                  "Run it on a machine with an NVIDIA GPU and `pip install vllm`.")
            return 0
        print(f"gpu_check: FAILED: {reason}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(main_async(args))
    except CheckFailed as exc:
        print(f"gpu_check: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
