from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from trainer.errors import TrainerError
from trainer.loop import train
from trainer.report import read_metrics

REPO = Path(__file__).resolve().parents[2]
STEPS = 12


def _assert_same_weights(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.fixture(scope="module")
def dropout_model_dir(micro, tmp_path_factory):
    """The micro model with attention dropout, so that resuming must restore the global RNG state too."""
    model, tok = micro
    out = tmp_path_factory.mktemp("dropout-model")
    model.config.attention_dropout = 0.1
    try:
        model.save_pretrained(out)
    finally:
        model.config.attention_dropout = 0.0
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def straight_run(corpus_file, dropout_model_dir, tmp_path_factory):
    """The reference: STEPS steps without interruption, with dropout and scheduled sampling drawing random
    numbers all along."""
    from safetensors.torch import load_file

    from trainer.config import TrainConfig

    out = tmp_path_factory.mktemp("straight")
    config = TrainConfig(data=str(corpus_file), out=str(out), model=str(dropout_model_dir), batch_size=8,
                         max_length=96,
                         max_steps=STEPS, lr=1e-3, eval_every=5, save_every=5, log_every=1, eval_samples=1,
                         sample_tokens=8, progress=False, device="cpu", eval_split=0.1, scheduled_sampling=0.3)
    train(config)
    return config, load_file(out / "model.safetensors")


def test_ctrl_c_saves_a_checkpoint_that_resumes_to_identical_parameters(straight_run, tmp_path,
                                                                       exported_weights):
    base, want = straight_run
    config = base.__class__(**{**base.__dict__, "out": str(tmp_path / "run")})

    def press_ctrl_c(event):
        if event["type"] == "step" and event["step"] == STEPS // 2 + 1:
            signal.raise_signal(signal.SIGINT)  # the real handler runs, as for a key press

    first = train(config, on_event=press_ctrl_c)
    assert first.interrupted and first.steps == STEPS // 2 + 1
    assert first.checkpoint.name == f"step-{STEPS // 2 + 1:08d}"
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing exported from a partial run

    events = []
    second = train(config.__class__(**{**config.__dict__, "resume": "latest"}), on_event=events.append)
    assert not second.interrupted and second.steps == STEPS
    assert events[0]["start_step"] == STEPS // 2 + 1
    _assert_same_weights(exported_weights(tmp_path / "run"), want)
    train_steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "train"]
    assert train_steps == list(range(1, STEPS + 1))


def test_killed_process_resumes_from_its_last_checkpoint_to_identical_parameters(straight_run, tmp_path,
                                                                                  exported_weights):
    base, want = straight_run
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "trainer", "--model", base.model, "--data", base.data, "--out", str(out),
            "--batch-size", "8", "--max-length", "96", "--max-steps", str(STEPS), "--lr", "1e-3",
            "--eval-every", "5", "--save-every", "1", "--keep-checkpoints", "3", "--log-every", "1",
            "--eval-samples", "1", "--sample-tokens", "8", "--no-progress", "--device", "cpu",
            "--eval-split", "0.1", "--scheduled-sampling", "0.3", "--threads", "1"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "step-00000003").is_dir():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists(), "the run finished before it could be killed"

    events = []
    config = base.__class__(**{**base.__dict__, "out": str(out), "resume": "latest"})
    result = train(config, on_event=events.append)
    assert 3 <= events[0]["start_step"] < STEPS
    assert result.steps == STEPS
    _assert_same_weights(exported_weights(out), want)


def test_resuming_with_another_model_is_refused(make_config, poems, tmp_path):
    from trainer.scratch import create_scratch_model

    other = tmp_path / "other-model"
    create_scratch_model([p.title + "\n" + p.text for p in poems], "micro", other, seed=1)  # same shapes
    train(make_config(max_steps=2))
    with pytest.raises(TrainerError, match=r"cannot resume: .* is a checkpoint of .*micro-model"):
        train(make_config(model=str(other), max_steps=4, resume="latest"))


def test_fresh_run_into_a_used_output_dir_is_refused_without_resume(make_config):
    train(make_config(max_steps=1))
    with pytest.raises(TrainerError, match=r"already holds checkpoints.*--resume"):
        train(make_config(max_steps=1))
    assert train(make_config(max_steps=1, overwrite=True)).steps == 1


def test_resume_without_any_checkpoint_says_so(make_config):
    with pytest.raises(TrainerError, match="no checkpoint"):
        train(make_config(resume="latest"))


def test_resuming_on_other_examples_is_refused(make_config):
    train(make_config(max_steps=2))
    with pytest.raises(TrainerError, match="trained on other examples"):
        train(make_config(max_steps=4, max_length=64, resume="latest"))
