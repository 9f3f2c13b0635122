"""The vllm backend: clear refusal without vllm, `auto` selection (vllm only on a GPU), the GPU check without
vllm, and (only where CUDA and vllm are present) real streaming, usage and abort through vLLM's engine.

The same backend on vLLM's real engine without a GPU (vLLM's CPU build, in .venv-vllm): tests/vllm/."""

import contextlib
import subprocess
import sys

import pytest

from server.config import Backend, Settings
from server.llm.factory import resolve_backend
from server.protocols import GenerationParams, Message, Usage
from tests.support.paths import REPO
from tests.support.servers import ServerProcess


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


needs_gpu = pytest.mark.skipif(not (has_gpu() and has_vllm()), reason="needs CUDA and vllm")
without_vllm = pytest.mark.skipif(has_vllm(), reason="checks the behaviour where vllm is not installed")


@pytest.mark.parametrize(("env", "cuda", "vllm", "expected"), [
    ({}, True, True, Backend.VLLM),
    ({}, True, False, Backend.TRANSFORMERS),
    ({}, False, True, Backend.TRANSFORMERS),
    ({"openai_api_key": "sk-x"}, False, False, Backend.OPENAI),
    ({"openai_base_url": "http://127.0.0.1:8000/v1"}, False, True, Backend.OPENAI),
    ({"openai_api_key": "sk-x", "model": "LOCAL"}, False, False, Backend.TRANSFORMERS),
    ({"openai_api_key": "sk-x"}, True, True, Backend.VLLM),
    ({"llm_backend": "openai"}, True, True, Backend.OPENAI),
    ({"llm_backend": "vllm"}, False, False, Backend.VLLM),
], ids=["gpu+vllm", "gpu-no-vllm", "vllm-no-gpu", "key", "base-url", "key-but-local-model", "gpu-beats-key",
        "explicit-openai", "explicit-vllm"])
def test_auto_picks_vllm_on_a_gpu_then_a_remote_endpoint_then_transformers(tmp_path, env, cuda, vllm, expected):
    values = {"model": "Qwen/Qwen2.5-0.5B-Instruct", **env}
    if values["model"] == "LOCAL":
        values["model"] = str(tmp_path)
    settings = Settings(_env_file=None, **values)
    assert resolve_backend(settings, has_vllm=lambda: vllm, has_cuda=lambda: cuda) == expected


@without_vllm
def test_the_vllm_backend_without_vllm_refuses_to_start_and_says_why(tiny_model_dir, tmp_path):
    server = ServerProcess(tmp_path, {"LLM_BACKEND": "vllm", "MODEL": str(tiny_model_dir),
                                      "DATA_DIR": str(tmp_path / "data")}).start(wait=False)
    assert server.wait_exit(120) == 1
    logs = server.logs()
    assert "error: LLM_BACKEND=vllm needs the vllm package, which is not installed" in logs
    assert "scripts/setup.sh vllm" in logs, "the message names vLLM's CPU build"
    assert "LLM_BACKEND=transformers" in logs, "the message says what to use instead"
    assert "Traceback" not in logs


@without_vllm
def test_the_gpu_check_without_vllm_exits_0_saying_there_is_nothing_to_measure():
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu_check: nothing to measure here. LLM_BACKEND=vllm needs the vllm package")


@pytest.mark.gpu
@needs_gpu
async def test_vllm_streams_deltas_reports_usage_and_aborts_a_cancelled_request(tiny_model_dir):
    import asyncio

    from server.llm.vllm_backend import EngineConfig, VLLMGenerator

    generator = VLLMGenerator(EngineConfig(str(tiny_model_dir), gpu_memory_utilization=0.3, enforce_eager=True))
    await generator.start()
    try:
        messages = [Message("system", "You are a poet."), Message("user", "The moon over the river")]
        usage = Usage()
        stream = generator.stream(messages, GenerationParams(16, 1.0, 1.0), usage)
        async with contextlib.aclosing(stream):
            pieces = [delta async for delta in stream]
        assert pieces and all(isinstance(p, str) and p for p in pieces)
        assert usage.prompt_tokens == len(generator.render(messages))
        assert 0 < usage.completion_tokens <= 16

        stream = generator.stream([Message("user", "Write a very long poem")], GenerationParams(400, 1.0, 1.0),
                                  Usage())
        async with contextlib.aclosing(stream):
            await anext(stream)
        processor = generator.engine.output_processor
        for _ in range(100):
            if processor.get_num_unfinished_requests() == 0:
                break
            await asyncio.sleep(0.05)
        assert processor.get_num_unfinished_requests() == 0, "the cancelled request was aborted in the engine"
    finally:
        await generator.close()


def test_a_lora_dir_is_checked_and_its_rank_rounded_up_to_one_vllm_can_serve(tmp_path):
    import json

    from server.llm.errors import ModelLoadError
    from server.llm.vllm_backend import EngineConfig

    assert EngineConfig("m").lora_rank() is None
    with pytest.raises(ModelLoadError, match="not a PEFT LoRA adapter directory"):
        EngineConfig("m", lora_dir=tmp_path).lora_rank()
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 12, "peft_type": "LORA"}))
    assert EngineConfig("m", lora_dir=tmp_path).lora_rank() == 16
