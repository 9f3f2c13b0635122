"""Small Llama-style models from random init, with a byte-level BPE tokenizer trained on the corpus.

This is how a poem model is made with no download at all, and how the test suite gets tiny real
models to serve. Head dim is 64 at every size so vLLM's attention kernels accept the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


@dataclass(frozen=True)
class ScratchSize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    context: int


SIZES: dict[str, ScratchSize] = {
    # 'micro' keeps test start-up fast; 'tiny' is the smallest that learns something in minutes on a CPU.
    "micro": ScratchSize(hidden=64, layers=2, heads=1, kv_heads=1, intermediate=128, vocab=2000, context=512),
    "tiny": ScratchSize(hidden=128, layers=4, heads=2, kv_heads=2, intermediate=384, vocab=6000, context=512),
    "small": ScratchSize(hidden=512, layers=8, heads=8, kv_heads=4, intermediate=1536, vocab=16000, context=1024),
    "base": ScratchSize(hidden=1024, layers=16, heads=16, kv_heads=8, intermediate=2816, vocab=32000, context=2048),
}


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_model(size: ScratchSize, tokenizer, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        head_dim=size.hidden // size.heads,
        intermediate_size=size.intermediate,
        max_position_embeddings=size.context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def create_scratch_model(texts: Iterable[str], size: str | ScratchSize, out_dir: str | Path | None = None,
                         seed: int = 0):
    """Return (model, tokenizer) for `size`; save them as a Hugging Face directory when `out_dir` is given."""
    spec = SIZES[size] if isinstance(size, str) else size
    tokenizer = train_tokenizer(texts, spec.vocab)
    tokenizer.model_max_length = spec.context
    model = build_model(spec, tokenizer, seed=seed)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return model, tokenizer
