"""Throughput and peak memory of our trainer vs TRL's SFTTrainer, like for like, on CPU, in three modes:

    python bench/trainer_bench.py [--poems 256] [--batch-size 8] [--max-length 256] [--threads 1] [--repeats 2]

- unpacked: prompt/completion pairs (the raw poem prompt, the poem; loss on the poem), batch 8, padded;
- packed:   the same pairs packed into rows of --max-length. TRL packs the dataset (best-fit decreasing, padding-
  free) and is run as one row per forward pass x --pack-accum accumulation steps; ours takes the same number of
  micro-batches per step with as many examples per micro-batch as fill about one row, so both forward about the
  same tokens at a time (the bench prints the measured tokens per forward pass of each);
- messages: multi-turn chats (system, user, assistant, user, assistant) with loss on the assistant turns; TRL
  with `assistant_only_loss` (so both use a chat template with `{% generation %}` markers), batch 8, padded.

TRL is configured as a careful user would: its length-grouped sampler (`train_sampling_strategy=
"group_by_length"`, as ours groups by length), gradient checkpointing off (its default is on; ours is off unless
asked), fp32, AdamW, cosine schedule, the same learning rate, batch, max length and clipping, no evaluation or
saving, logging once at the end. Each configuration runs in its own fresh process so that its peak RSS is its own.

tokens/s counts real (non-padding) tokens over the time from the start of the training loop to the end of its
last step (model loading, tokenization and saving excluded for both). Peak memory is the worker's peak RSS above
its RSS just before training started. Ratios > 1 mean ours is faster / leaner. Each configuration runs --repeats
times, alternating TRL and ours, and the best run of each is kept, which damps the noise of a shared machine.

The default of one thread is deliberate on a shared 2-core machine: with other work running, OpenMP threads
spin-waiting for descheduled siblings made 2 threads five times slower than 1 for both trainers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "poems.html"
MODES = ("unpacked", "packed", "messages")
SYSTEM = "你是苏东坡。"
# One template for both trainers: TRL's assistant_only_loss needs the {% generation %} markers; ours reads the
# assistant turns from the template's own rendering and ignores them.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}{{ '助手：' }}{% generation %}{{ m['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n' }}{% elif m['role'] == 'user' %}{{ '用户：' + m['content'] + '\n' }}"
    "{% else %}{{ m['content'] + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '助手：' }}{% endif %}"
)
sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(workdir: Path, n_poems: int) -> dict[str, Path]:
    from transformers.utils import logging as hf_logging

    from scraper.corpus import read_corpus, write_corpus
    from trainer.scratch import create_scratch_model

    hf_logging.disable_progress_bar()
    poems = read_corpus(CORPUS)
    write_corpus(poems[:n_poems], workdir / "data")
    chats = []
    for a, b in zip(poems[:n_poems:2], poems[1:n_poems:2], strict=False):
        chats.append({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"写一首诗，题为《{a.title}》"}, {"role": "assistant", "content": a.text},
            {"role": "user", "content": f"再写一首，题为《{b.title}》"}, {"role": "assistant", "content": b.text}]})
    (workdir / "chats.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats),
                                         encoding="utf-8")
    (workdir / "template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    model_dir = workdir / "model"
    # The tokenizer sees the whole corpus so that token lengths are realistic; the model is 'tiny'.
    create_scratch_model([p.title + "\n" + p.text for p in poems] + ["用户：", "助手："], "tiny", model_dir, seed=0)
    return {"poems": workdir / "data" / "poems.jsonl", "chats": workdir / "chats.jsonl",
            "template": workdir / "template.jinja", "model": model_dir}


def _examples_per_row(args, files: dict[str, Path]) -> int:
    """How many of our examples fill about one --max-length row: the packed micro-batch size that forwards the
    tokens TRL's one packed row does."""
    from transformers import AutoTokenizer

    from scraper.corpus import read_corpus
    from trainer.data import encode_poems

    tokenizer = AutoTokenizer.from_pretrained(files["model"])
    poems = read_corpus(files["poems"])
    examples, _ = encode_poems(tokenizer, poems, range(len(poems)), ["raw"], args.max_length)
    mean = sum(len(e) for e in examples) / len(examples)
    return max(1, round(args.max_length / mean))


def run_ours(args, files: dict[str, Path], out: Path) -> dict:
    from trainer.config import TrainConfig
    from trainer.loop import train

    mode = args.mode
    packed = mode == "packed"
    batch = args.pack_accum * args.pack_examples if packed else args.batch_size
    config = TrainConfig(model=str(files["model"]), data=str(files["chats" if mode == "messages" else "poems"]),
                         out=str(out), formats=("raw",), batch_size=batch,
                         grad_accum=args.pack_accum if packed else 1, max_length=args.max_length, epochs=1,
                         lr=1e-3, warmup_steps=0, eval_split=0.0, save_every=10**9, log_every=10**9, progress=False,
                         packing=packed, device="cpu", seed=0,
                         chat_template=str(files["template"]) if mode == "messages" else None)
    marks: dict[str, float] = {}
    tokens = steps = 0

    def on_event(event):
        nonlocal tokens, steps
        if event["type"] == "start":
            marks["start"] = time.perf_counter()
            marks["rss"] = _rss_mb()
        elif event["type"] == "step":
            marks["end"] = time.perf_counter()
            tokens += event["tokens"]
            steps += 1

    train(config, on_event=on_event)
    return {"tokens": tokens, "seconds": marks["end"] - marks["start"], "rss_before": marks["rss"],
            "forwards": steps * config.grad_accum}


def _trl_dataset(mode: str, files: dict[str, Path]):
    from datasets import Dataset

    from scraper.corpus import read_corpus
    from trainer.data import RAW_PROMPT

    if mode == "messages":
        rows = [json.loads(line) for line in files["chats"].read_text(encoding="utf-8").splitlines()]
        return Dataset.from_list(rows)
    poems = read_corpus(files["poems"])
    return Dataset.from_list([{"prompt": RAW_PROMPT.format(title=p.title), "completion": p.text} for p in poems])


def run_trl(args, files: dict[str, Path], out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    mode = args.mode
    packed = mode == "packed"
    tokenizer = AutoTokenizer.from_pretrained(files["model"])
    if mode == "messages":
        tokenizer.chat_template = CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(files["model"], dtype=torch.float32)
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=1 if packed else args.batch_size,
                       gradient_accumulation_steps=args.pack_accum if packed else 1, num_train_epochs=1,
                       learning_rate=1e-3, warmup_steps=0, max_length=args.max_length, packing=packed,
                       completion_only_loss=None if mode == "messages" else True,
                       assistant_only_loss=mode == "messages", gradient_checkpointing=False,
                       train_sampling_strategy="group_by_length", save_strategy="no", eval_strategy="no",
                       report_to="none", logging_steps=10**9, use_cpu=True, bf16=False, fp16=False, seed=0,
                       disable_tqdm=True, dataloader_num_workers=0, max_grad_norm=1.0, lr_scheduler_type="cosine")
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["start"] = time.perf_counter()
            marks["rss"] = _rss_mb()

        def on_step_end(self, *a, **k):
            marks["end"] = time.perf_counter()

    trainer = SFTTrainer(model=model, args=config, train_dataset=_trl_dataset(mode, files),
                         processing_class=tokenizer, callbacks=[Clock()])
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    forwards = trainer.state.global_step * config.gradient_accumulation_steps
    return {"tokens": tokens, "seconds": marks["end"] - marks["start"], "rss_before": marks["rss"],
            "forwards": forwards}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    files = json.loads(args.files)
    files = {k: Path(v) for k, v in files.items()}
    out = Path(tempfile.mkdtemp(prefix=f"bench-{args.worker}-"))
    runner = run_ours if args.worker == "ours" else run_trl
    result = runner(args, files, out)
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    result["tokens_per_forward"] = result["tokens"] / max(result["forwards"], 1)
    result["peak_rss_mb"] = _peak_rss_mb()
    result["peak_delta_mb"] = result["peak_rss_mb"] - result["rss_before"]
    print("RESULT " + json.dumps(result))


def _run_worker(args, who: str, mode: str, files: dict[str, Path]) -> dict:
    cmd = [sys.executable, __file__, "--worker", who, "--mode", mode, "--files",
           json.dumps({k: str(v) for k, v in files.items()}), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--threads", str(args.threads), "--pack-accum",
           str(args.pack_accum), "--pack-examples", str(args.pack_examples)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{who} ({mode}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _report(args, results: dict[tuple[str, str], dict], modes: list[str]) -> None:
    print(f"{'mode':9s} {'trainer':7s} {'tokens':>7s} {'seconds':>8s} {'tok/s':>7s} {'tok/fwd':>8s} "
          f"{'peak RSS':>9s} {'+training':>10s}")
    for mode in modes:
        for who in ("trl", "ours"):
            r = results[(who, mode)]
            print(f"{mode:9s} {who:7s} {r['tokens']:7d} {r['seconds']:8.1f} {r['tokens_per_s']:7.0f} "
                  f"{r['tokens_per_forward']:8.0f} {r['peak_rss_mb']:7.0f}MB {r['peak_delta_mb']:8.0f}MB")
    print()
    misses = []
    for mode in modes:
        ours, trl = results[("ours", mode)], results[("trl", mode)]
        speed = ours["tokens_per_s"] / trl["tokens_per_s"]
        memory = ours["peak_delta_mb"] / max(trl["peak_delta_mb"], 1)
        print(f"{mode:9s} ours vs TRL: tokens/s {speed:.2f}x, training peak memory {memory:.2f}x TRL's")
        if speed < 1.5 or memory > 1.0:
            misses.append(mode)
    print("target: >= 1.50x TRL's tokens/s with peak memory no higher (<= 1.00x), in every mode"
          + (f"; missed in: {', '.join(misses)}" if misses else "; met in every mode"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poems", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pack-accum", type=int, default=4, help="packed: micro-batches (rows) per step")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--worker", choices=("trl", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--pack-examples", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        files = prepare(Path(tmp), args.poems)
        args.pack_examples = _examples_per_row(args, files)
        print(f"tiny model, {args.poems} poems ({args.poems // 2} chats), batch {args.batch_size}, max length "
              f"{args.max_length}; packed: {args.pack_accum} micro-batches per step (TRL: 1 packed row each; ours: "
              f"{args.pack_examples} examples each); {args.threads} thread(s), fp32 CPU, 1 epoch, best of "
              f"{args.repeats}. TRL: SFTTrainer, train_sampling_strategy=group_by_length, gradient_checkpointing="
              f"False, completion_only_loss / assistant_only_loss\n")
        results: dict[tuple[str, str], dict] = {}
        for mode in modes:
            for _ in range(args.repeats):
                for who in ("trl", "ours"):
                    r = _run_worker(args, who, mode, files)
                    best = results.get((who, mode))
                    if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
                        results[(who, mode)] = r
        _report(args, results, modes)


if __name__ == "__main__":
    main()
