"""Examples of every kind of record (records.py): poems in their prompt formats, conversations, prompt-completion
pairs and plain text; and the prompts evaluation samples continue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trainer.chat import encode_conversation, generation_prompt
from trainer.data import EncodeStats, Example, chat_template_of, encode_poems, make_example, prompt_text
from trainer.errors import TrainerError
from trainer.records import Records


@dataclass(frozen=True, slots=True)
class SamplePrompt:
    """A prompt an evaluation continues, and how to label the sample."""
    label: str
    fmt: str
    text: str
    add_special_tokens: bool


def encode_records(tokenizer, records: Records, indices: Sequence[int], formats: Sequence[str],
                   max_length: int) -> tuple[list[Example], EncodeStats]:
    """Examples of any kind of record (see records.py); poems take every prompt format in `formats`."""
    if records.kind == "poems":
        return encode_poems(tokenizer, records.items, indices, formats, max_length)
    stats = EncodeStats()
    examples: list[Example] = []
    indices = list(indices)
    if records.kind == "messages":
        template = chat_template_of(tokenizer)
        encoded = [_encode_chat(tokenizer, records, i, max_length, template) for i in indices]
    else:
        encoded = _encode_plain(tokenizer, records, indices, max_length)
    for example in encoded:
        if example is None:
            stats.skipped_prompt_too_long += 1
            continue
        examples.append(example)
        stats.truncated += example.truncated
    stats.examples = len(examples)
    stats.by_format[records.kind] = len(examples)
    return examples, stats


def _encode_chat(tokenizer, records: Records, i: int, max_length: int, template: str | None) -> Example | None:
    from jinja2 import TemplateError

    try:
        return encode_conversation(tokenizer, records.items[i], max_length, i, template)
    except TemplateError as exc:  # e.g. a template that insists on alternating user/assistant turns
        raise TrainerError(f"{records.source}: record {i + 1}: the chat template refuses it ({exc})") from exc


def _encode_plain(tokenizer, records: Records, indices: list[int], max_length: int) -> list[Example | None]:
    """Prompt-completion pairs (loss on the completion) and plain text (loss on all of it)."""
    if not indices:
        return []
    eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    if records.kind == "prompt":
        prompts = [records.items[i][0] for i in indices]
        completions = [records.items[i][1] for i in indices]
    else:
        prompts = [""] * len(indices)  # the tokenizer's BOS, if it adds one, is the text's only context
        completions = [records.items[i] for i in indices]
    prompt_ids = tokenizer(prompts, add_special_tokens=True, verbose=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False, verbose=False)["input_ids"]
    return [make_example(p, c + eos, max_length, i, records.kind)
            for i, p, c in zip(indices, prompt_ids, completion_ids, strict=True)]


def sample_prompts(tokenizer, records: Records, indices: Sequence[int], formats: Sequence[str],
                   count: int) -> list[SamplePrompt]:
    """The prompts evaluation samples continue: the first `count` held-out records' (no samples of text)."""
    out = []
    for k, i in enumerate(list(indices)[:count]):
        item = records.items[i]
        if records.kind == "poems":
            fmt = formats[k % len(formats)]
            out.append(SamplePrompt(item.title, fmt, prompt_text(tokenizer, item.title, fmt), fmt == "raw"))
        elif records.kind == "messages":
            prompt = generation_prompt(tokenizer, item, chat_template_of(tokenizer))
            out.append(SamplePrompt(f"record {i}", "messages", prompt, False))
        elif records.kind == "prompt":
            out.append(SamplePrompt(f"record {i}", "prompt", item[0], True))
    return out
