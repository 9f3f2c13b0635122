"""Conversations to training examples: the chat template renders them, loss falls on every assistant turn.

The rendered conversation is cut into segments at each assistant turn: the text before it is exactly the
generation prompt the template makes for that history (what the server will feed the model), the turn
itself is what the template appends for the reply (its content and end-of-turn marker, so the model learns
to stop). Each segment is tokenized on its own, so a segment boundary is always a token boundary, as it is
at serving time between the prompt and the first generated token; the mask is then exact by construction:
a position is a target exactly when the next token belongs to an assistant turn.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.data import IGNORE, Example
from trainer.errors import TrainerError


def _render(tokenizer, messages: list[dict[str, str]], template: str | None, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         chat_template=template)


def _history_prompt(tokenizer, history: list[dict[str, str]], template: str | None) -> str:
    if history:
        return _render(tokenizer, history, template, True)
    try:  # a conversation that opens with the assistant: some templates cannot render an empty history
        return _render(tokenizer, history, template, True)
    except Exception:
        return ""


def conversation_segments(tokenizer, messages: Sequence[dict[str, str]],
                          template: str | None = None) -> list[tuple[str, bool]]:
    """(text, is a trained assistant turn) pieces whose concatenation is the rendered conversation up to the
    end of its last assistant turn."""
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(clean):
        if message["role"] != "assistant":
            continue
        prompt = _history_prompt(tokenizer, clean[:i], template)
        full = _render(tokenizer, clean[:i + 1], template, False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise TrainerError("the chat template renders a conversation's history differently from the "
                               "generation prompt it makes for it, so the assistant turns cannot be told apart; "
                               "give a template that does not (--chat-template FILE)")
        # The newline after an end-of-turn marker belongs to the next turn's framing, not to the reply.
        reply = full[len(prompt):].rstrip("\n")
        segments.append((prompt[len(done):], False))
        segments.append((reply, messages[i].get("weight", 1) != 0))
        done = prompt + reply
    return segments


def encode_conversation(tokenizer, messages: Sequence[dict[str, str]], max_length: int, index: int = 0,
                        template: str | None = None) -> Example | None:
    """One example with targets on assistant tokens only; the end is cut to fit; None if no target fits."""
    segments = conversation_segments(tokenizer, messages, template)
    pieces = tokenizer([text for text, _ in segments], add_special_tokens=False, verbose=False)["input_ids"]
    ids: list[int] = []
    trained: list[bool] = []
    for (_, is_reply), piece in zip(segments, pieces, strict=True):
        ids += piece
        trained += [is_reply] * len(piece)
    truncated = len(ids) > max_length
    ids, trained = ids[:max_length], trained[:max_length]
    # Position i predicts token i + 1: a target where that token is part of an assistant turn.
    targets = [ids[i + 1] if trained[i + 1] else IGNORE for i in range(len(ids) - 1)] + [IGNORE]
    n_targets = sum(t != IGNORE for t in targets)
    if n_targets == 0:
        return None
    return Example(input_ids=ids, targets=targets, poem_index=index, fmt="messages", n_targets=n_targets,
                   truncated=truncated)


def generation_prompt(tokenizer, messages: Sequence[dict[str, str]], template: str | None = None) -> str:
    """The prompt before the conversation's last assistant turn: what an evaluation sample continues."""
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    last = max(i for i, m in enumerate(clean) if m["role"] == "assistant")
    return _history_prompt(tokenizer, clean[:last], template)
