"""Throughput and peak memory of our trainer vs TRL's SFTTrainer, same tiny model, data and settings, on CPU.

    python bench/trainer_bench.py [--poems 256] [--batch-size 8] [--max-length 256] [--threads 1] [--repeats 2]

Both train one epoch over the same prompt/completion pairs (raw format: prompt = the original raw prompt,
completion = the poem, loss on the completion only), fp32, AdamW, same batch size and max length, without
and with packing. Each configuration runs in its own fresh process so that its peak RSS is its own.

tokens/s counts real (non-padding) tokens of the epoch over the time from the start of the training loop
to the end of its last step (model loading, tokenization and saving excluded for both). Peak memory is the
worker's peak RSS above its RSS just before training started. Ratios > 1 mean ours is faster / leaner.

The default of one thread is deliberate on a shared 2-core machine: with other work running, OpenMP
threads spin-waiting for descheduled siblings made 2 threads five times slower than 1 for both trainers.
Each configuration runs --repeats times, alternating TRL and ours, and the best run of each is reported,
which damps the noise of a machine whose load changes while the benchmark runs.

What differs by design, not by setting: ours batches examples of similar length (TRL's default sampler is
random; TRL with its length-grouped sampler is reported as well), runs the LM head only on target positions
(TRL computes logits, entropy and token accuracy at every position), and packs into rows of at most
--max-length, where TRL's padding-free packing flattens each batch into one row (attention then spans the
whole batch under SDPA on CPU).
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
# "trl-grouped" is TRL with its length-grouped sampler: not its default, but the fairest like-for-like with our
# length-grouped batches, so it is reported too (without packing, where grouping matters).
WORKERS = ("trl", "trl-grouped", "ours")
CORPUS = REPO.parent / "shared" / "corpus" / "poems.html"
sys.path.insert(0, str(REPO))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(workdir: Path, n_poems: int) -> tuple[Path, Path]:
    from transformers.utils import logging as hf_logging

    from scraper.corpus import read_corpus, write_corpus
    from trainer.scratch import create_scratch_model

    hf_logging.disable_progress_bar()

    poems = read_corpus(CORPUS)
    write_corpus(poems[:n_poems], workdir / "data")
    model_dir = workdir / "model"
    # The tokenizer sees the whole corpus so that token lengths are realistic; the model is 'tiny'.
    create_scratch_model([p.title + "\n" + p.text for p in poems], "tiny", model_dir, seed=0)
    return workdir / "data" / "poems.jsonl", model_dir


def run_ours(args, data: Path, model_dir: Path, out: Path) -> dict:
    from trainer.config import TrainConfig
    from trainer.loop import train

    config = TrainConfig(model=str(model_dir), data=str(data), out=str(out), formats=("raw",),
                         batch_size=args.batch_size, max_length=args.max_length, epochs=1, lr=1e-3,
                         warmup_steps=0, eval_split=0.0, save_every=10**9, log_every=10**9, progress=False,
                         packing=args.packing, device="cpu", seed=0)
    marks: dict[str, float] = {}
    tokens = 0

    def on_event(event):
        nonlocal tokens
        if event["type"] == "start":
            marks["start"] = time.perf_counter()
            marks["rss"] = _rss_mb()
        elif event["type"] == "step":
            marks["end"] = time.perf_counter()
            tokens += event["tokens"]

    train(config, on_event=on_event)
    return {"tokens": tokens, "seconds": marks["end"] - marks["start"], "rss_before": marks["rss"]}


def run_trl(args, data: Path, model_dir: Path, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from scraper.corpus import read_corpus
    from trainer.data import RAW_PROMPT

    poems = read_corpus(data)
    dataset = Dataset.from_list([{"prompt": RAW_PROMPT.format(title=p.title), "completion": p.text} for p in poems])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                       learning_rate=1e-3, warmup_steps=0, max_length=args.max_length, packing=args.packing,
                       completion_only_loss=True, save_strategy="no", eval_strategy="no", report_to="none",
                       logging_steps=10**9, use_cpu=True, bf16=False, fp16=False, seed=0, disable_tqdm=True,
                       dataloader_num_workers=0, max_grad_norm=1.0, lr_scheduler_type="cosine",
                       train_sampling_strategy="group_by_length" if args.worker == "trl-grouped" else "random")
    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["start"] = time.perf_counter()
            marks["rss"] = _rss_mb()

        def on_step_end(self, *a, **k):
            marks["end"] = time.perf_counter()

    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[Clock()])
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    trainer.train()
    return {"tokens": tokens, "seconds": marks["end"] - marks["start"], "rss_before": marks["rss"]}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{args.worker}-"))
    runner = run_ours if args.worker == "ours" else run_trl
    result = runner(args, Path(args.data), Path(args.model_dir), out)
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    result["peak_rss_mb"] = _peak_rss_mb()
    result["peak_delta_mb"] = result["peak_rss_mb"] - result["rss_before"]
    print("RESULT " + json.dumps(result))


def _run_worker(args, who: str, packing: bool, data: Path, model_dir: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", who, "--data", str(data), "--model-dir", str(model_dir),
           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
           "--threads", str(args.threads)] + (["--packing"] if packing else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{who} (packing={packing}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--poems", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--packing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        data, model_dir = prepare(Path(tmp), args.poems)
        print(f"tiny model, {args.poems} poems (raw format), batch {args.batch_size}, max length {args.max_length}, "
              f"{args.threads} thread(s), fp32 CPU, 1 epoch, best of {args.repeats}\n")
        results: dict[tuple[str, bool], dict] = {}
        for packing in (False, True):
            workers = ("trl", "ours") if packing else WORKERS
            for _ in range(args.repeats):
                for who in workers:
                    r = _run_worker(args, who, packing, data, model_dir)
                    best = results.get((who, packing))
                    if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
                        results[(who, packing)] = r
            for who in workers:
                r = results[(who, packing)]
                print(f"{who:11s} packing={packing!s:5s} {r['tokens']:7d} tokens in {r['seconds']:6.1f}s "
                      f"{r['tokens_per_s']:8.0f} tok/s  peak RSS {r['peak_rss_mb']:6.0f} MB "
                      f"(+{r['peak_delta_mb']:.0f} MB in training)")
        print()

        def ratio(ours_key, trl_key, label):
            ours, trl = results[ours_key], results[trl_key]
            print(f"{label}: tokens/s {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x, "
                  f"training peak memory {trl['peak_delta_mb'] / max(ours['peak_delta_mb'], 1):.2f}x smaller")

        ratio(("ours", False), ("trl", False), "without packing, ours vs TRL            ")
        ratio(("ours", False), ("trl-grouped", False), "without packing, ours vs TRL grouped    ")
        ratio(("ours", True), ("trl", True), "with packing, ours vs TRL with packing  ")
        ratio(("ours", True), ("trl", False), "with packing, ours vs TRL without       ")
        print("targets: >= 1.0x without packing, >= 1.3x with packing")


if __name__ == "__main__":
    main()
