"""From poems to token sequences: the two prompt formats, the held-out split, truncation and the loss mask.

Every example is stored already shifted: `targets[i]` is the token position `i` must predict, or IGNORE.
Only poem (completion) tokens are targets, so the prompt is context and never learned. Because targets
never point across an example's end, examples can be padded or packed side by side without any re-shifting.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from scraper.corpus import Poem

IGNORE = -100

RAW_PROMPT = "以下诗句是苏轼，又名苏东坡，题为《{title}》：\n"
CHAT_INSTRUCTION = "模仿苏东坡（又名苏轼）的风格写一首诗，题为《{title}》"

# Used only when a tokenizer brings no chat template of its own (from-scratch models, base models such as
# GPT-2). It is stored with the exported tokenizer so that the server formats a chat exactly as training did.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '用户：' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '助手：' + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ message['content'] + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '助手：' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class Example:
    input_ids: list[int]
    targets: list[int]
    poem_index: int
    fmt: str
    n_targets: int
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class EncodeStats:
    examples: int = 0
    truncated: int = 0
    skipped_prompt_too_long: int = 0
    by_format: dict[str, int] = field(default_factory=dict)


def split_poems(poems: Sequence[Poem], eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of training and held-out poems; both formats of a poem land on the same side."""
    order = list(range(len(poems)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(poems) * eval_fraction)
    if eval_fraction > 0 and len(poems) > 1:
        n_eval = max(1, n_eval)
    n_eval = min(n_eval, len(poems) - 1)
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def scratch_tokenizer_texts(poems: Sequence[Poem], indices: Sequence[int]) -> list[str]:
    """What a from-scratch tokenizer learns its vocabulary from: each training poem with its raw prompt, and
    the chat instruction."""
    texts = []
    for i in indices:
        p = poems[i]
        texts.append(RAW_PROMPT.format(title=p.title) + p.text)
        texts.append(CHAT_INSTRUCTION.format(title=p.title))
    return texts


def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer the plain fallback template if it has none; True if it had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return False


def prompt_text(tokenizer, title: str, fmt: str) -> str:
    if fmt == "raw":
        return RAW_PROMPT.format(title=title)
    messages = [{"role": "user", "content": CHAT_INSTRUCTION.format(title=title)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         chat_template=chat_template_of(tokenizer))


def chat_template_of(tokenizer) -> str | None:
    # None lets transformers pick among the tokenizer's own templates.
    return None if getattr(tokenizer, "chat_template", None) else FALLBACK_CHAT_TEMPLATE


def _chat_completion_text(tokenizer, title: str, poem: str, prompt: str) -> str:
    messages = [
        {"role": "user", "content": CHAT_INSTRUCTION.format(title=title)},
        {"role": "assistant", "content": poem},
    ]
    full = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=chat_template_of(tokenizer))
    if full.startswith(prompt):
        # The template's own end-of-turn marker is part of the completion: the model must learn to stop.
        return full[len(prompt):].rstrip("\n")
    # Some templates render history differently from a generation prompt (e.g. dropping reasoning tags);
    # the prompt at serving time is the generation prompt, so train on exactly that.
    return poem + (tokenizer.eos_token or "")


def make_example(prompt_ids: list[int], completion_ids: list[int], max_length: int, poem_index: int = 0,
                 fmt: str = "raw") -> Example | None:
    """Join prompt and completion, cutting the completion's end to fit; None if not one poem token fits."""
    room = max_length - len(prompt_ids)
    if room < 1 or not completion_ids:
        return None
    truncated = len(completion_ids) > room
    completion_ids = completion_ids[:room]
    ids = [*prompt_ids, *completion_ids]
    n_prompt = len(prompt_ids)
    targets = [ids[i + 1] if i + 1 >= n_prompt else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
    return Example(input_ids=ids, targets=targets, poem_index=poem_index, fmt=fmt,
                   n_targets=len(completion_ids), truncated=truncated)


def encode_poems(tokenizer, poems: Sequence[Poem], indices: Sequence[int], formats: Sequence[str],
                 max_length: int) -> tuple[list[Example], EncodeStats]:
    stats = EncodeStats()
    examples: list[Example] = []
    indices = list(indices)
    if not indices:
        return examples, stats
    for fmt in formats:
        prompts = [prompt_text(tokenizer, poems[i].title, fmt) for i in indices]
        # The raw prompt gets whatever special tokens the tokenizer adds by default (BOS for Llama-likes), as
        # it will when the server tokenizes a prompt; a rendered chat template already holds its own.
        prompt_ids = tokenizer(prompts, add_special_tokens=(fmt == "raw"), verbose=False)["input_ids"]
        if fmt == "raw":
            eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
            texts = [poems[i].text for i in indices]
            encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
            completion_ids = [ids + eos for ids in encoded]
        else:
            texts = [_chat_completion_text(tokenizer, poems[i].title, poems[i].text, prompt)
                     for i, prompt in zip(indices, prompts, strict=True)]
            completion_ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        for i, p_ids, c_ids in zip(indices, prompt_ids, completion_ids, strict=True):
            example = make_example(p_ids, c_ids, max_length, i, fmt)
            if example is None:
                stats.skipped_prompt_too_long += 1
                continue
            examples.append(example)
            stats.truncated += example.truncated
            stats.by_format[fmt] = stats.by_format.get(fmt, 0) + 1
    stats.examples = len(examples)
    return examples, stats

