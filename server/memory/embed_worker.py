"""The model side of an embedding lane: load the model, encode batches.

It runs in a thread of the server (EMBED_WORKERS=thread) or as a process of its own
(`python -m server.memory.embed_worker`, EMBED_WORKERS=process) that the embedder drives over the
process's stdin and stdout: length-prefixed frames, one request in flight at a time, no helper
threads on either side. The process exits when its stdin closes, so it never outlives the server
that started it, a SIGKILLed one included.

Precision: on CPUs with native bfloat16 (AVX512-BF16 or AMX) the linear layers keep bf16 weights:
a forward pass over MiniLM reads half the bytes (it is memory-bound for a single message) and
batches run about twice as fast, while layer norms, softmax and pooling stay in float32, so vectors
stay within cosine 0.9999 of the float32 ones. On CPUs the linear weights are packed for oneDNN once
at load (bit-identical results; a short message's pass ~25% faster).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import struct
import sys
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import orjson

HEADER = struct.Struct("!I")
OK, FAILED = b"\0", b"\1"


def resolve_precision(precision: str, device: str) -> str:
    """`auto` → bf16 where the hardware computes it natively, float32 elsewhere."""
    import torch

    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        native = (getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                  or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
        return "bf16" if native else "fp32"
    return "fp32"


def _frozen_linears(module, dtype, packed: bool) -> None:
    """Swap every linear layer for a frozen one that computes in `dtype` (the rest of the model stays
    float32) and, with `packed`, holds its weight pre-packed for oneDNN: plain `F.linear` on a CPU
    re-packs the weight on every call, about a quarter of a short message's encoding time."""
    import torch

    class FrozenLinear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            weight = linear.weight.detach().to(dtype)
            if packed:
                weight = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if packed:
                y = torch.ops.mkldnn._linear_pointwise(x.to(dtype), self.weight, self.bias, "none", [], "")
            else:
                y = torch.nn.functional.linear(x.to(dtype), self.weight, self.bias)
            return y.to(x.dtype)

    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, FrozenLinear(child))
        else:
            _frozen_linears(child, dtype, packed)


def _can_pack(dtype) -> bool:
    """Whether this torch build and CPU run oneDNN's pre-packed linear in `dtype` (bf16 needs AVX-512)."""
    import torch

    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(torch.ones(4, 4, dtype=dtype), 1)
        torch.ops.mkldnn._linear_pointwise(torch.ones(1, 4, dtype=dtype), weight, None, "none", [], "")
    except (RuntimeError, AttributeError):
        return False
    return True


def load_model(model_name: str, device: str | None, threads: int, precision: str = "auto"):
    """Returns (model, info): info has the embedding `dim` and the `precision` in use."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_name, device=device)
    model.eval()
    used = resolve_precision(precision, str(model.device))
    dtype = torch.bfloat16 if used == "bf16" else torch.float32
    packed = model.device.type == "cpu" and _can_pack(dtype)
    if used == "bf16" or packed:
        _frozen_linears(model, dtype, packed)
    model.embed_device = model.device  # `model.device` walks every parameter: too slow to ask per message
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return model, {"dim": int(get_dim()), "precision": used}


def encode(model, texts: Sequence[str], batch_size: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        if len(texts) > batch_size:
            vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
            return np.asarray(vectors, dtype=np.float32)
        # One batch, one forward pass, without encode()'s per-call bookkeeping (it walks every module
        # twice: ~1.5 ms of a short message's ~9). Same vectors, bit for bit.
        from sentence_transformers.util import batch_to_device

        tokenize = getattr(model, "preprocess", None) or model.tokenize
        features = batch_to_device(tokenize(list(texts)), model.embed_device)
        vectors = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy()


def read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def serve(model, batch_size: int, requests: BinaryIO, replies: BinaryIO) -> None:
    """Request: a JSON list of texts. Reply: OK + float32 rows, or FAILED + the error's text."""
    while (request := read_frame(requests)) is not None:
        try:
            reply = OK + encode(model, orjson.loads(request), batch_size).tobytes()
        except Exception as exc:  # the callers get the error; the worker keeps serving
            reply = FAILED + f"{type(exc).__name__}: {exc}".encode()
        write_frame(replies, reply)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="an embedding worker process, driven over stdin/stdout")
    parser.add_argument("--model", required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    # stdout carries frames: anything a library prints goes to stderr instead
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Loaded at normal priority: the server waits for this, and an idle-class process that is still
    # importing torch on a busy machine would hold its start for as long as the machine stays busy.
    model, info = load_model(args.model, args.device, args.threads, args.precision)
    if args.nice:
        os.nice(args.nice)
        with contextlib.suppress(AttributeError, OSError):
            # background work: run only on an otherwise idle core, so that a turn's embedding (and the
            # event loop) never wait behind it; nice alone still lets it take ~10% of a shared core
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    write_frame(replies, OK + orjson.dumps(info))
    serve(model, args.batch, sys.stdin.buffer, replies)
    # End of input: every reply is written and flushed, and nothing else is held. Skipping the interpreter's
    # teardown of torch and the model saves the server's shutdown a second or more per worker.
    os._exit(0)


if __name__ == "__main__":
    main()
