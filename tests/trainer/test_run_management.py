"""What finetuners expect around a run: resumes that cannot silently change course, the LR schedule counted in
optimizer steps, keep-best and early stopping, an unmerged adapter, base weights in half precision, gradient
checkpointing, TensorBoard, YAML configs, progress on stderr, and packing refused where it would leak."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from trainer.__main__ import main
from trainer.config import parse_args
from trainer.errors import TrainerError
from trainer.loop import train
from trainer.report import read_metrics


def _events(config):
    events = []
    result = train(config, on_event=events.append)
    return result, events


def test_resuming_with_another_batch_size_is_refused_and_says_which(make_config):
    train(make_config(max_steps=2))
    with pytest.raises(TrainerError, match=r"cannot resume: .*--batch-size 8 \(now 16\)"):
        train(make_config(max_steps=4, batch_size=16, resume="latest"))
    with pytest.raises(TrainerError, match=r"--grad-accum 1 \(now 2\), --packing off \(now on\)"):
        train(make_config(max_steps=4, grad_accum=2, packing=True, resume="latest"))


def test_resuming_with_another_seed_is_refused_even_when_the_split_is_the_same(make_config):
    # Without a held-out split every seed trains on the same examples, but in another order.
    train(make_config(max_steps=2, eval_split=0.0))
    with pytest.raises(TrainerError, match=r"--seed 42 \(now 7\)"):
        train(make_config(max_steps=4, eval_split=0.0, seed=7, resume="latest"))
    assert train(make_config(max_steps=3, eval_split=0.0, resume="latest")).steps == 3


def test_lr_schedule_counts_optimizer_steps_not_micro_batches(make_config):
    # 4 micro-batches per step: a schedule stepped per micro-batch would reach its end four times too soon.
    result, events = _events(make_config(grad_accum=4, max_steps=6, schedule="linear", warmup_steps=2,
                                         lr=1e-3, eval_split=0.0))
    lrs = [r["lr"] for r in read_metrics(result.out_dir / "metrics.jsonl") if r["type"] == "train"]
    assert lrs == pytest.approx([0.0, 5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4])
    # Without --max-steps an epoch is (training examples // batch size) optimizer steps, whatever --grad-accum.
    result, events = _events(make_config(out=str(Path(result.out_dir).parent / "epoch"), max_steps=None,
                                         grad_accum=4, eval_split=0.0))
    start = events[0]
    assert start["total_steps"] == start["train_examples"] // 8 == result.steps


def test_early_stopping_keeps_and_exports_the_best_checkpoint(make_config, exported_weights):
    # A far too high learning rate: the held-out loss peaks early and never comes back.
    result, events = _events(make_config(lr=0.3, max_steps=30, eval_every=1, early_stopping_patience=2,
                                         keep_checkpoints=1))
    evals = [r["eval_loss"] for r in read_metrics(result.out_dir / "metrics.jsonl") if r["type"] == "eval"][1:]
    best = min(range(len(evals)), key=evals.__getitem__) + 1  # eval i (1-based) ran after step i
    assert result.early_stopped and result.steps == best + 2 < 30
    assert result.best_step == best and events[-1]["best_step"] == best
    kept = sorted(p.name for p in (result.out_dir / "checkpoints").iterdir())
    assert f"step-{best:08d}" in kept  # rotation (--keep-checkpoints 1) never deletes the best
    saved = torch.load(result.out_dir / "checkpoints" / f"step-{best:08d}" / "trainable.pt", weights_only=True)
    exported = exported_weights(result.out_dir)
    assert all(torch.equal(exported[k], saved[k]) for k in exported if k in saved)


def test_save_adapter_writes_a_peft_adapter_equal_to_the_merged_model(make_config, micro_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(make_config(lora=True, lora_r=4, lr=5e-2, max_steps=2, save_adapter=True))
    adapter = result.out_dir / "adapter"
    assert (adapter / "adapter_config.json").is_file()  # what the server's LORA_DIR (vLLM) checks for
    base = AutoModelForCausalLM.from_pretrained(micro_dir, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, adapter).eval()
    merged = AutoModelForCausalLM.from_pretrained(result.out_dir, dtype=torch.float32).eval()
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        want, got = merged(input_ids=ids).logits, with_adapter(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(micro_dir, dtype=torch.float32)(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain, want, atol=1e-4)  # the adapter really changed the model
    with pytest.raises(TrainerError, match="needs --lora"):
        make_config(save_adapter=True).validate()


def test_base_weights_load_in_bf16_for_a_lora_run(make_config):
    result, events = _events(make_config(lora=True, lora_r=4, lr=5e-2, max_steps=2, load_dtype="bf16"))
    assert events[0]["weights_dtype"] == "bfloat16"
    assert torch.isfinite(torch.tensor(result.train_loss))


def test_gradient_checkpointing_recomputes_and_changes_nothing(make_config, tmp_path, exported_weights, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    plain = train(make_config(out=str(tmp_path / "plain"), max_steps=2, eval_split=0.0))
    calls = []
    real = modeling_utils.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", counting)
    ckpt = train(make_config(out=str(tmp_path / "ckpt"), max_steps=2, eval_split=0.0, gradient_checkpointing=True))
    assert len(calls) >= 2 * 2  # every layer of every step's forward went through the checkpoint
    want, got = exported_weights(plain.out_dir), exported_weights(ckpt.out_dir)
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=key)


def _tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Read TensorBoard event files (TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_gets_the_same_metrics_as_the_jsonl(make_config):
    result = train(make_config(max_steps=3, eval_every=2, report_to="tensorboard"))
    scalars = _tensorboard_scalars(result.out_dir / "runs")
    records = read_metrics(result.out_dir / "metrics.jsonl")
    train_loss = [(r["step"], r["loss"]) for r in records if r["type"] == "train"]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in train_loss] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in train_loss], rel=1e-6)
    assert [s for s, _ in scalars["eval/eval_loss"]] == [0, 2, 3]
    assert "train/lr" in scalars


def test_yaml_config_files_are_read(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("model: m\ndata: chats.jsonl\nout: o\nbatch-size: 32\nlora: true\nsave_adapter: true\n"
                   "report-to: tensorboard\n", encoding="utf-8")
    config = parse_args(["--config", str(cfg), "--lr", "1e-5"])
    assert (config.batch_size, config.lora, config.save_adapter, config.report_to, config.lr) == (
        32, True, True, "tensorboard", 1e-5)
    cfg.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(TrainerError, match="cannot parse config"):
        parse_args(["--config", str(cfg)])


def test_progress_and_news_go_to_stderr_and_stdout_stays_empty(capsys, corpus_file, micro_dir, tmp_path):
    code = main(["--model", str(micro_dir), "--data", str(corpus_file), "--out", str(tmp_path / "o"),
                 "--max-steps", "2", "--batch-size", "8", "--max-length", "96", "--eval-every", "1",
                 "--eval-samples", "1", "--sample-tokens", "4", "--eval-split", "0.1", "--progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == ""
    assert "held-out loss" in captured.err and "done: 2 steps" in captured.err


def test_packing_is_refused_on_transformers_4(make_config, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", "4.57.1")
    with pytest.raises(TrainerError, match="--packing needs transformers 5"):
        train(make_config(packing=True, max_steps=1))
    assert train(make_config(max_steps=1)).steps == 1
