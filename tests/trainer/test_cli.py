from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch

from trainer.__main__ import main
from trainer.api import train_async
from trainer.config import parse_args
from trainer.errors import TrainerError
from trainer.loop import train
from trainer.report import read_metrics


def _run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_missing_data_file_is_a_clear_error(capsys, micro_dir, tmp_path):
    code, err = _run_cli(capsys, "--model", micro_dir, "--data", tmp_path / "nope.jsonl", "--out", tmp_path / "o")
    assert code == 2
    assert "data file not found" in err and "nope.jsonl" in err and "Traceback" not in err


def test_empty_data_file_is_a_clear_error(capsys, micro_dir, tmp_path):
    empty = tmp_path / "poems.html"
    empty.write_text("", encoding="utf-8")
    code, err = _run_cli(capsys, "--model", micro_dir, "--data", empty, "--out", tmp_path / "o")
    assert code == 2 and "contains no poems" in err


def test_unreadable_model_id_offline_says_how_to_use_a_local_dir(capsys, corpus_file, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    code, err = _run_cli(capsys, "--model", "nobody/no-such-model", "--data", corpus_file, "--out", tmp_path / "o")
    assert code == 2
    assert "cannot load model 'nobody/no-such-model'" in err
    assert "--model /path/to/dir" in err and "--from-scratch" in err


def test_missing_model_directory_is_a_clear_error(capsys, corpus_file, tmp_path):
    code, err = _run_cli(capsys, "--model", tmp_path / "absent", "--data", corpus_file, "--out", tmp_path / "o")
    assert code == 2 and "model directory not found" in err


def test_config_file_is_read_and_flags_override_it(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "m"\ndata = "d.jsonl"\nout = "o"\nbatch-size = 32\nlr = 3e-4\nformats = ["chat"]\n',
                   encoding="utf-8")
    config = parse_args(["--config", str(cfg), "--lr", "1e-5", "--packing"])
    assert (config.batch_size, config.lr, config.formats, config.packing) == (32, 1e-5, ("chat",), True)
    with pytest.raises(TrainerError, match="unknown setting"):
        cfg.write_text('model = "m"\nbatchsize = 3\n', encoding="utf-8")
        parse_args(["--config", str(cfg), "--data", "d", "--out", "o"])
    with pytest.raises(TrainerError, match="exactly one of"):
        parse_args(["--data", "d", "--out", "o"])


@pytest.fixture(scope="module")
def finished_run(corpus_file, micro_dir, tmp_path_factory):
    """One short CLI run with evaluation and samples, shared by the output checks below."""
    out = tmp_path_factory.mktemp("cli-run")
    code = main(["--model", str(micro_dir), "--data", str(corpus_file), "--out", str(out), "--max-steps", "6",
                 "--batch-size", "8", "--max-length", "96", "--lr", "3e-3", "--eval-every", "3", "--eval-samples",
                 "2", "--sample-tokens", "12", "--log-every", "2", "--save-every", "3", "--no-progress",
                 "--eval-split", "0.1"])
    assert code == 0
    return out


def test_output_dir_loads_with_auto_classes_and_generates(finished_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(finished_run)
    tok = AutoTokenizer.from_pretrained(finished_run)
    assert tok.chat_template  # the chat format the model was trained on travels with it
    prompt = tok.apply_chat_template([{"role": "user", "content": "模仿苏东坡（又名苏轼）的风格写一首诗，题为《春》"}],
                                     tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_metrics_curve_and_samples_are_written(finished_run):
    records = read_metrics(finished_run / "metrics.jsonl")
    train_records = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in train_records] == [2, 4, 6]
    assert all(r["tokens_per_s"] > 0 and r["lr"] >= 0 for r in train_records)
    assert [r["step"] for r in evals] == [0, 3, 6]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert evals[-1]["perplexity"] == pytest.approx(torch.tensor(evals[-1]["eval_loss"]).exp().item(), rel=1e-6)
    assert len(evals[-1]["samples"]) == 2 and {s["format"] for s in evals[-1]["samples"]} == {"raw", "chat"}
    assert (finished_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((finished_run / "train_config.json").read_text())["max_steps"] == 6
    assert sorted(p.name for p in (finished_run / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]


def test_lora_is_merged_into_a_plain_exported_model(make_config, tmp_path, micro_dir, exported_weights):
    result = train(make_config(lora=True, lora_r=4, lr=5e-2, max_steps=3))
    assert not (result.out_dir / "adapter_config.json").exists()
    got, base = exported_weights(result.out_dir), exported_weights(micro_dir)
    assert got.keys() == base.keys()  # no lora_A/lora_B left: a plain model any loader takes
    changed = [k for k in base if not torch.equal(got[k], base[k])]
    assert any("q_proj" in k for k in changed)
    assert "model.embed_tokens.weight" not in changed


def test_train_top_layers_trains_only_the_top_layers(make_config, micro_dir, exported_weights):
    result = train(make_config(train_top_layers=1, max_steps=2))
    got, base = exported_weights(result.out_dir), exported_weights(micro_dir)
    changed = {k for k in base if not torch.equal(got[k], base[k])}
    assert changed and all(k.startswith("model.layers.1.") or k == "model.norm.weight" for k in changed)


async def test_train_async_delivers_events_in_order_on_the_loop(make_config):
    events = []

    async def on_event(event):
        events.append(event["type"])

    result = await train_async(make_config(max_steps=3), on_event)
    await asyncio.sleep(0.05)  # handlers are scheduled on this loop; let the last ones run
    assert result.steps == 3
    assert events[0] == "start" and events[-1] == "done"
    assert events.count("step") == 3 and "checkpoint" in events


async def test_cancelling_train_async_saves_a_resumable_checkpoint(make_config):
    config = make_config(max_steps=200)
    steps = []

    def on_event(event):  # plain callbacks run on the loop too
        if event["type"] == "step":
            steps.append(event["step"])
            if event["step"] == 2:
                task.cancel()

    task = asyncio.ensure_future(train_async(config, on_event))
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = sorted((Path(config.out) / "checkpoints").iterdir())
    assert len(saved) == 1 and 2 <= int(saved[0].name.split("-")[1]) < 200
