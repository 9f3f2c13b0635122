"""The embedded transformers backend: what runs on the event loop and what runs in its workers."""

import threading

import pytest

from server.protocols import GenerationParams, Message, Usage

# A real (if plain) Jinja chat template, so the tokenizer's own template path is exercised too.
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


def record_threads(monkeypatch, tokenizer, names: list[str]) -> list[tuple[str, int]]:
    """Wrap the real tokenizer's methods so each call notes the thread it ran on, then calls through."""
    calls: list[tuple[str, int]] = []
    for name in names:
        real = getattr(tokenizer, name)

        def wrapper(*args, _name=name, _real=real, **kwargs):
            calls.append((_name, threading.get_ident()))
            return _real(*args, **kwargs)

        monkeypatch.setattr(tokenizer, name, wrapper)
    return calls


@pytest.mark.parametrize(("template", "method"), [(None, "encode"), (CHAT_TEMPLATE, "apply_chat_template")],
                         ids=["plain-transcript", "chat-template"])
async def test_the_prompt_is_rendered_and_tokenised_off_the_event_loop(tiny_generator, monkeypatch, template, method):
    generator = tiny_generator
    monkeypatch.setattr(generator.tokenizer, "chat_template", template)
    calls = record_threads(monkeypatch, generator.tokenizer, ["encode", "apply_chat_template"])
    usage = Usage()
    params = GenerationParams(max_new_tokens=3, temperature=0.0, top_p=1.0)
    _ = [d async for d in generator.stream([Message("user", "How was your day?")], params, usage)]
    loop_thread = threading.get_ident()
    assert method in {name for name, _ in calls}, "the prompt went through the tokenizer"
    assert all(thread != loop_thread for _, thread in calls), f"tokenizer ran on the event loop: {calls}"
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0, "the turn still generated"
