"""vLLM's real engine behind our server, on vLLM's CPU build (`.venv-vllm`, `scripts/setup.sh vllm`).

One server process (`python -m server`, LLM_BACKEND=vllm) serves the whole folder: starting vLLM's engine
(two spawned processes that each import vllm) is most of these tests' time. It serves a tiny local model
with a LoRA adapter made by the trainer's own `apply_lora` (LORA_DIR), greedy, so replies are reproducible
with transformers in this process.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.protocols import Message
from tests.support.servers import ServerProcess, wait_healthy

PERSONA = "You are Su Shi, a poet of the Song dynasty."
MAX_NEW_TOKENS = 200
CONTEXT = 512  # the tiny model's whole window


@dataclass
class VLLMServer:
    process: ServerProcess
    model_dir: Path  # the base model (random weights)
    merged_dir: Path  # the same model with the adapter merged in: what the server must reproduce
    adapter_dir: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ws_url(self) -> str:
        return self.process.ws_url

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def engine(self) -> dict:
        return self.health()["engine"]

    def wait_engine_idle(self, aborted: int | None = None, timeout: float = 10) -> dict:
        """The engine's state once it holds no request (and has aborted `aborted` requests in all, when given),
        or the last state seen after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            engine = self.engine()
            if (engine["running"] == 0 and aborted in (None, engine["aborted"])) or time.monotonic() > deadline:
                return engine
            time.sleep(0.05)


def build_model(out: Path) -> Path:
    """The suite's micro Llama, made to say only whole characters and never to stop: the tied embedding rows
    of the end-of-sequence token, the other special tokens and the tokens that are a piece of a UTF-8
    character are zero, so their logits are 0 while the best of the other random logits is well above it.
    Every greedy reply runs to its token limit (cancel and batching tests get a stream long enough to act
    on) and decodes the same whether streamed or whole (replies compare as text)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.support.models import build_tiny_model

    build_tiny_model(out, poems=500)
    tokenizer = AutoTokenizer.from_pretrained(out)
    special = set(tokenizer.all_special_ids)
    muted = [i for i in range(len(tokenizer))
             if i in special or "\ufffd" in tokenizer.decode([i]) or not tokenizer.decode([i])]
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight[muted] = 0
    model.save_pretrained(out)
    return out


def build_adapter(model_dir: Path, adapter_dir: Path, merged_dir: Path) -> None:
    """A PEFT LoRA adapter as the trainer makes one (`trainer.modeling.apply_lora`, all linear layers), with
    random B matrices (a fresh adapter's are zero, a no-op) so that it visibly changes what the model says."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.export import merged_model
    from trainer.modeling import apply_lora

    torch.manual_seed(0)  # peft draws the A matrices from torch's global generator
    model = apply_lora(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), r=8, alpha=16,
                       dropout=0.0, targets="all-linear")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    model.save_pretrained(adapter_dir)
    merged_model(model).save_pretrained(merged_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(merged_dir)


def greedy_reply(model_dir: Path, user_text: str, max_new_tokens: int) -> str:
    """What the served model must answer to a stateless API call with only `user_text` (the prompt is the
    persona as system message, then the message), computed with transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from server.llm.tokens import render_chat_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = render_chat_ids(tokenizer, [Message("system", PERSONA), Message("user", user_text)])
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


@pytest.fixture(scope="package")
def vllm_server(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed here: these tests run in .venv-vllm (scripts/test.sh runs them)")
    work = tmp_path_factory.mktemp("vllm")
    model_dir = build_model(work / "model")
    build_adapter(model_dir, work / "adapter", work / "merged")
    (work / "persona.md").write_text(PERSONA + "\n", encoding="utf-8")
    process = ServerProcess(work, {
        "LLM_BACKEND": "vllm", "MODEL": str(model_dir), "LORA_DIR": str(work / "adapter"),
        "DATA_DIR": str(work / "data"), "PERSONA_FILE": str(work / "persona.md"),
        "VLLM_DTYPE": "float32", "VLLM_MAX_MODEL_LEN": str(CONTEXT), "VLLM_ENFORCE_EAGER": "true",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB (vLLM's own setting); else it reserves a share of all RAM
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
        # vLLM's settings for CI machines: no warm-up pass; one unbound OpenMP thread, so that the engine shares
        # the cores with the main test run instead of pinning a thread to each of them
        "VLLM_CPU_CI_ENV": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1",
        "TEMPERATURE": "0", "MAX_NEW_TOKENS": str(MAX_NEW_TOKENS), "FLUSH_EVERY": "1000",
    }).start(wait=False)
    try:
        wait_healthy(process.url, timeout=540, proc=process.proc)
    except BaseException:
        process.stop()
        raise RuntimeError(f"the vllm server did not start; its log:\n{process.logs()[-6000:]}") from None
    server = VLLMServer(process, model_dir, work / "merged", work / "adapter")
    yield server
    process.stop()
