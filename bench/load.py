"""Load: N concurrent chat sessions through the server vs. the same clients on the upstream directly.

Starts a fake OpenAI-compatible upstream (bench/fake_upstream.py: SSE at a set tokens/s and time to
first token), then runs the same seeded workload twice in this run: clients streaming from the
upstream directly, then clients talking to `python -m server` (LLM_BACKEND=openai → that upstream,
embedded stores) over the websocket (and a share over /v1/chat/completions). Optionally again with
search on (a SearXNG-format API and result pages on loopback), then idle connections (RSS per
connection) and a client that stops reading (RSS over time). Overhead ratios are printed last.

    .venv/bin/python bench/load.py [--sessions 1000] [--turns 5] [--rate 50] [--search] [--idle 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import ServerProcess, free_port, wait_http

SMALL_TALK = ["How was your day?", "I just got back from a long walk.", "What should I cook tonight?",
              "My cat knocked over a plant again.", "I'm so tired today.", "Tell me something nice.",
              "I think I'll watch a movie later.", "Do you like rainy days?"]
NEEDS_SEARCH = ["How do you perform a deadlift properly?", "Who was Su Shi and when did he live?",
                "What is the boiling point of water at high altitude?"]


@dataclass
class Stats:
    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    turns: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def message(rng: random.Random, search_share: float) -> str:
    return rng.choice(NEEDS_SEARCH) if rng.random() < search_share else rng.choice(SMALL_TALK)


async def sse_turn(http: aiohttp.ClientSession, url: str, body: dict, headers: dict, stats: Stats,
                   reply: list[str] | None = None) -> None:
    """One streaming chat completion; time to the first content chunk and between chunks (`reply` collects it)."""
    sent = time.perf_counter()
    last = None
    async with http.post(url, json=body, headers=headers) as response:
        if response.status != 200:
            stats.errors.append(f"http {response.status}")
            return
        async for line in response.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = orjson.loads(line[6:])
            if "error" in chunk:
                stats.errors.append(str(chunk["error"].get("code")))
                return
            if chunk.get("usage"):
                stats.tokens += chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                if reply is not None:
                    reply.append(chunk["choices"][0]["delta"]["content"])
                now = time.perf_counter()
                if last is None:
                    stats.ttft.append(now - sent)
                else:
                    stats.itl.append(now - last)
                last = now
    stats.turns += 1


async def ws_session(http, url: str, session: str, texts: list[str], thinks: list[float], stats: Stats) -> None:
    ws = await http.ws_connect(url, max_msg_size=0)
    frames: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        # always reading, as a browser does: pings get their pongs while the user is thinking
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.put_nowait((time.perf_counter(), orjson.loads(msg.data)))
        frames.put_nowait((time.perf_counter(), {"type": "closed"}))

    reader = asyncio.create_task(read())
    try:
        for text, think in zip(texts, thinks, strict=True):
            await asyncio.sleep(think)
            sent = time.perf_counter()
            last = None
            await ws.send_str(json.dumps({"type": "chat", "session": session, "text": text}))
            while True:
                now, frame = await asyncio.wait_for(frames.get(), 120)
                kind = frame["type"]
                if kind == "token":
                    if last is None:
                        stats.ttft.append(now - sent)
                    else:
                        stats.itl.append(now - last)
                    last = now
                elif kind == "end":
                    stats.tokens += frame["usage"]["completion_tokens"]
                    stats.turns += 1
                    break
                elif kind == "error":
                    stats.errors.append(frame["code"])
                    break
                elif kind == "closed":
                    stats.errors.append(f"closed {ws.close_code}")
                    return
    finally:
        await ws.close()
        reader.cancel()


async def http_session(http, url: str, session: str, texts, thinks, stats: Stats, model: str,
                       history: bool = False) -> None:
    """A named session, one message per request; with `history`, as a chat UI: the whole conversation every
    time (a system prompt, the earlier turns, the replies as received) and a `user` field, no session id."""
    messages = [{"role": "system", "content": "You are a helpful assistant."}] if history else []
    for text, think in zip(texts, thinks, strict=True):
        await asyncio.sleep(think)
        messages.append({"role": "user", "content": text})
        body = {"model": model, "messages": messages if history else messages[-1:], "stream": True,
                "stream_options": {"include_usage": True}, **({"user": session} if history else {})}
        reply: list[str] = []
        await sse_turn(http, url, body, {} if history else {"X-Session-Id": session}, stats, reply)
        messages.append({"role": "assistant", "content": "".join(reply)})


def workload(args) -> list[tuple[list[str], list[float]]]:
    """The same messages and think times for every path: seeded per session."""
    plans = []
    for i in range(args.sessions):
        rng = random.Random(args.seed * 100_003 + i)
        texts = [message(rng, args.search_share) for _ in range(args.turns)]
        thinks = [rng.uniform(0, args.ramp)] + [rng.expovariate(1 / args.think) for _ in range(args.turns - 1)]
        plans.append((texts, thinks))
    return plans


async def run_direct(args, upstream: str) -> Stats:
    stats = Stats()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        async def one(plan):
            for text, think in zip(*plan, strict=True):
                await asyncio.sleep(think)
                body = {"model": "fake", "messages": [{"role": "user", "content": text}], "stream": True,
                        "stream_options": {"include_usage": True}, "max_tokens": args.tokens}
                try:
                    await sse_turn(http, f"{upstream}/chat/completions", body, {}, stats)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    stats.errors.append(type(exc).__name__)

        stats.started = time.perf_counter()
        await asyncio.gather(*(one(plan) for plan in workload(args)))
        stats.ended = time.perf_counter()
    return stats


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


async def run_server(args, server: ServerProcess, upstream_pid: int) -> tuple[Stats, dict]:
    stats = Stats()
    proc = psutil.Process(server.proc.pid)
    lanes: dict[str, list[psutil.Process]] = {"turn embedding": [], "flush embedding": []}
    for worker in proc.children(recursive=True):  # process workers; the flush lane's runs niced
        argv = worker.cmdline()
        niced = "--nice" in argv and argv[argv.index("--nice") + 1] != "0"
        lanes["flush embedding" if niced else "turn embedding"].append(worker)
    groups = {"server": [proc], **lanes, "upstream": [psutil.Process(upstream_pid)], "load clients": [psutil.Process()]}
    cpu_before = {name: cpu_seconds(ps) for name, ps in groups.items()}
    rss = [proc.memory_info().rss]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as http:
        plans = workload(args)
        http_every = round(1 / args.http_share) if args.http_share > 0 else 0

        async def one(i, plan):
            try:
                if http_every and i % http_every == 0:
                    await http_session(http, f"{server.url}/v1/chat/completions", f"load-{i}", *plan, stats, "fake",
                                       args.http_history)
                else:
                    await ws_session(http, server.ws_url, f"load-{i}", *plan, stats)
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.errors.append(type(exc).__name__)

        async def sample():
            while True:
                await asyncio.sleep(0.5)
                rss.append(proc.memory_info().rss)

        sampler = asyncio.create_task(sample())
        stats.started = time.perf_counter()
        await asyncio.gather(*(one(i, plan) for i, plan in enumerate(plans)))
        stats.ended = time.perf_counter()
        sampler.cancel()
    phases = phase_stats(server.url)
    cpu = {name: (cpu_seconds(ps) - cpu_before[name]) / stats.seconds for name, ps in groups.items()}
    return stats, {"cpu": cpu, "rss_peak_mib": max(rss) / 2**20, "rss_start_mib": rss[0] / 2**20,
                   "phases": phases}


def phase_stats(url: str) -> dict[str, tuple[float, float, float]]:
    """(mean, p99 bucket bound, count) seconds per pipeline step before generation, for the whole server-side
    overhead before the generator is called, and for the event loop's lag, from /metrics."""
    wanted = {"chat_turn_phase_seconds": "phase", "chat_server_overhead_seconds": "phase",
              "chat_event_loop_lag_seconds": None, "chat_gc_pause_seconds": "generation"}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        label = wanted.get(family.name, "")
        if label == "":
            continue
        for sample in family.samples:
            key = sample.labels.get(label, "") if label else "loop lag"
            if family.name == "chat_gc_pause_seconds":
                key = f"gc gen{key}"
            if family.name == "chat_server_overhead_seconds":
                if key != "before_generation":
                    continue
                key = "all before generation"
            if sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_count"):
                counts[key] = sample.value
            elif sample.name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))

    def p99(key: str) -> float:
        return next(le for le, cumulative in sorted(buckets[key]) if cumulative >= 0.99 * counts[key])

    return {k: (sums[k] / counts[k], p99(k), counts[k]) for k in sums if counts.get(k)}


async def idle_connections(server: ServerProcess, count: int) -> dict:
    proc = psutil.Process(server.proc.pid)
    before = proc.memory_info().rss
    sockets = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(200)

        async def open_one():
            async with gate:
                sockets.append(await http.ws_connect(server.ws_url, heartbeat=None))

        started = time.perf_counter()
        await asyncio.gather(*(open_one() for _ in range(count)))
        opened = time.perf_counter() - started
        await asyncio.sleep(3)
        held = proc.memory_info().rss
        health = httpx.get(f"{server.url}/health").json()
        await asyncio.gather(*(ws.close() for ws in sockets))
    return {"count": count, "open_seconds": opened, "rss_before_mib": before / 2**20, "rss_held_mib": held / 2**20,
            "kib_per_connection": (held - before) / 1024 / count, "server_counted": health["connections"]}


async def slow_reader(workdir: Path, seconds: float = 12) -> dict:
    """A client that never reads while a flooding upstream streams to it."""
    port = free_port()
    flood = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_upstream.py")), "--port", str(port),
                              "--rate", "20000", "--ttft", "0", "--tokens", "400000", "--token-chars", "500"])
    server = ServerProcess(workdir / "slow", server_env(workdir / "slow", f"http://127.0.0.1:{port}/v1",
                                                        MAX_NEW_TOKENS="400000", CONTEXT_TOKENS="1000000",
                                                        SEND_TIMEOUT="3"))
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        server.start()
        proc = psutil.Process(server.proc.pid)
        samples = []
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(server.ws_url)
            await ws.send_json({"type": "chat", "session": "slow", "text": "tell me everything"})
            for _ in range(int(seconds * 2)):
                await asyncio.sleep(0.5)
                samples.append(proc.memory_info().rss / 2**20)
            turn = httpx.get(f"{server.url}/sessions/slow/history").json()["turns"][0]
            await ws.close()
    finally:
        server.stop()
        flood.terminate()
        flood.wait(10)
    return {"rss_mib": [round(s) for s in samples], "status": turn["status"], "reply_chars": len(turn["response"])}


def server_env(workdir: Path, upstream: str, **extra) -> dict[str, str]:
    return {"LLM_BACKEND": "openai", "OPENAI_BASE_URL": upstream, "OPENAI_API_KEY": "sk-bench-unused",
            "MODEL": "fake", "DATA_DIR": str(workdir / "data"), "CONTEXT_TOKENS": "8192", "MAX_NEW_TOKENS": "200",
            "TURNS_PER_MINUTE": "100000", "LOG_LEVEL": "WARNING", "MAX_ACTIVE_TURNS": "100000",
            "EMBED_WORKERS": "process", **extra}


def row(name: str, s: Stats) -> str:
    ms = 1000
    return (f"{name:<22}{pct(s.ttft, 50) * ms:8.1f} {pct(s.ttft, 99) * ms:8.1f} {pct(s.itl, 50) * ms:8.1f} "
            f"{pct(s.itl, 99) * ms:8.1f} {s.tokens / s.seconds:9.0f} {s.turns / s.seconds:7.1f} {len(s.errors):6d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0, help="upstream tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply")
    parser.add_argument("--ttft", type=float, default=0.2, help="upstream time to first token (s)")
    parser.add_argument("--think", type=float, default=10.0, help="mean think time between turns (s)")
    parser.add_argument("--ramp", type=float, default=30.0, help="sessions start within this many seconds")
    parser.add_argument("--http-share", type=float, default=0.1, help="share of sessions on /v1/chat/completions")
    parser.add_argument("--http-history", action="store_true",
                        help="those sessions send the whole conversation each time, as chat UIs do")
    parser.add_argument("--search", action="store_true", help="also run with search on (loopback provider)")
    parser.add_argument("--search-share", type=float, default=0.2, help="share of messages that need search")
    parser.add_argument("--idle", type=int, default=10_000, help="idle websocket connections to hold (0: skip)")
    parser.add_argument("--no-slow-reader", action="store_true")
    parser.add_argument("--flush-every", type=int, default=5, help="the server's FLUSH_EVERY")
    parser.add_argument("--embed-workers", choices=["process", "thread"], default="process",
                        help="the server's EMBED_WORKERS")
    parser.add_argument("--embedder", choices=["auto", "static", "minilm"], default=None,
                        help="the server's EMBEDDER (default: the server's default)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        upstream_url = f"http://127.0.0.1:{port}/v1"
        upstream = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_upstream.py")), "--port",
                                     str(port), "--rate", str(args.rate), "--ttft", str(args.ttft), "--tokens",
                                     str(args.tokens)])
        results: dict[str, object] = {}
        try:
            wait_http(f"{upstream_url}/models")
            print(f"{args.sessions} sessions × {args.turns} turns, upstream {args.rate:g} tokens/s per stream, "
                  f"{args.tokens} tokens per reply, TTFT {args.ttft * 1000:g} ms, think {args.think:g} s, "
                  f"{os.cpu_count()} cores", flush=True)
            results["direct"] = asyncio.run(run_direct(args, upstream_url))
            server = ServerProcess(workdir / "off", server_env(workdir / "off", upstream_url,
                                                               MAX_NEW_TOKENS=str(args.tokens),
                                                               FLUSH_EVERY=str(args.flush_every),
                                                               EMBED_WORKERS=args.embed_workers,
                                                               **({"EMBEDDER": args.embedder} if args.embedder else {}))
                            ).start()
            try:
                results["server"], results["server_proc"] = asyncio.run(run_server(args, server, upstream.pid))
                if args.idle:
                    results["idle"] = asyncio.run(idle_connections(server, args.idle))
            finally:
                server.stop()
            if args.search:
                from tests.search.fakeweb import FakeWeb

                web = FakeWeb().start()
                try:
                    cfg = web.settings_for("searxng")
                    env = server_env(workdir / "on", upstream_url, MAX_NEW_TOKENS=str(args.tokens),
                                     FLUSH_EVERY=str(args.flush_every), EMBED_WORKERS=args.embed_workers,
                                     SEARCH_PROVIDER="searxng", SEARCH_URL=cfg["search_url"],
                                     SEARCH_FETCH_ALLOW=cfg["search_fetch_allow"], SEARCH_SUMMARIZER="extractive")
                    server = ServerProcess(workdir / "on", env).start()
                    try:
                        results["search"], results["search_proc"] = asyncio.run(run_server(args, server,
                                                                                           upstream.pid))
                        results["search_calls"] = len(web.api_calls)
                    finally:
                        server.stop()
                finally:
                    web.stop()
        finally:
            upstream.terminate()
            upstream.wait(10)
        if not args.no_slow_reader:
            results["slow"] = asyncio.run(slow_reader(workdir))

    direct, server = results["direct"], results["server"]
    print(f"\n{'path':<22}{'TTFT p50':>8} {'p99':>8} {'ITL p50':>8} {'p99':>8} {'tokens/s':>9} {'turns/s':>7} "
          f"{'errors':>6}   (ms)")
    print(row("direct (upstream)", direct))
    print(row("through the server", server))
    proc = results["server_proc"]
    print("cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in proc["cpu"].items())
          + f"; server RSS {proc['rss_start_mib']:.0f} → peak {proc['rss_peak_mib']:.0f} MiB")
    print("server-side ms (mean / p99 bucket bound): "
          + ", ".join(f"{k} {mean * 1000:.1f} / ≤{p99 * 1000:g}" + (f" ×{n:.0f}" if k.startswith("gc") else "")
                      for k, (mean, p99, n) in proc["phases"].items()))
    if "search" in results:
        print(row("server, search on", results["search"]))
        sp = results["search_proc"]
        print("search on, cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in sp["cpu"].items())
              + f"; server RSS peak {sp['rss_peak_mib']:.0f} MiB; {results['search_calls']} provider calls")
    for name in ("server", "search"):
        if name in results and results[name].errors:
            counts: dict[str, int] = {}
            for e in results[name].errors:
                counts[e] = counts.get(e, 0) + 1
            print(f"errors ({name}): {counts}")
    if "idle" in results:
        idle = results["idle"]
        print(f"idle: {idle['count']} websocket connections opened in {idle['open_seconds']:.1f}s, server counted "
              f"{idle['server_counted']}; RSS {idle['rss_before_mib']:.0f} → {idle['rss_held_mib']:.0f} MiB = "
              f"{idle['kib_per_connection']:.1f} KiB per connection (target ≤ 30)")
    if "slow" in results:
        slow = results["slow"]
        print(f"slow reader: server RSS every 0.5 s (MiB) {slow['rss_mib']}; turn {slow['status']} after "
              f"{slow['reply_chars']} characters")
    ms = 1000
    print("\noverhead (server path vs direct path, same workload, same run):")
    print(f"  server-added TTFT p99: {(pct(server.ttft, 99) - pct(direct.ttft, 99)) * ms:.1f} ms (target ≤ 40)")
    print(f"  server-added TTFT p50: {(pct(server.ttft, 50) - pct(direct.ttft, 50)) * ms:.1f} ms")
    print(f"  server-added inter-token latency p99: {(pct(server.itl, 99) - pct(direct.itl, 99)) * ms:.1f} ms "
          "(target ≤ 5)")
    print(f"  tokens/s delivered: {server.tokens / server.seconds / (direct.tokens / direct.seconds):.3f}× the direct "
          "path (target ≥ 0.95)")
    print(f"  errors: {len(server.errors)} through the server, {len(direct.errors)} direct (target 0)")
    if "search" in results:
        s = results["search"]
        print(f"  search on: server-added TTFT p99 {(pct(s.ttft, 99) - pct(direct.ttft, 99)) * ms:.1f} ms, "
              f"tokens/s {s.tokens / s.seconds / (direct.tokens / direct.seconds):.3f}×, {len(s.errors)} errors")


if __name__ == "__main__":
    main()
