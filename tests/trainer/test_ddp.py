from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from trainer.loop import train
from trainer.report import read_metrics

REPO = Path(__file__).resolve().parents[2]


def test_two_gloo_processes_with_half_the_batch_match_one_process(make_config, tmp_path, exported_weights):
    flags = {"batch_size": 8, "max_steps": 3, "lr": 1e-3, "eval_split": 0.1}
    single = make_config(out=str(tmp_path / "single"), **flags)
    train(single)

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "trainer", "--model", single.model, "--data", single.data, "--out", str(out),
           "--batch-size", "8", "--max-steps", "3", "--lr", "1e-3", "--max-length", str(single.max_length),
           "--eval-split", "0.1", "--eval-samples", "0", "--device", "cpu", "--no-progress", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    want, got = exported_weights(tmp_path / "single"), exported_weights(out)
    assert not torch.equal(want["model.norm.weight"], exported_weights(single.model)["model.norm.weight"])
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6, msg=key)
    # Both processes evaluated half the held-out split; the logged loss is the whole split's.
    evals = [r["eval_loss"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "eval"]
    single_evals = [r["eval_loss"] for r in read_metrics(tmp_path / "single" / "metrics.jsonl")
                    if r["type"] == "eval"]
    assert len(evals) == len(single_evals) == 2
    torch.testing.assert_close(torch.tensor(evals), torch.tensor(single_evals), rtol=1e-4, atol=1e-5)

