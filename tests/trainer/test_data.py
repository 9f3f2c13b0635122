from __future__ import annotations

import copy

from scraper.corpus import Poem
from trainer.data import (
    FALLBACK_CHAT_TEMPLATE,
    IGNORE,
    RAW_PROMPT,
    encode_poems,
    ensure_chat_template,
    make_example,
    prompt_text,
    split_poems,
)

POEM = Poem(title="江城子", text="十年生死兩茫茫，\n不思量，自難忘。")


def _poem_tokens(example):
    return [t for t in example.targets if t != IGNORE]


def test_raw_prompt_is_the_original_wording():
    assert RAW_PROMPT.format(title="江城子") == "以下诗句是苏轼，又名苏东坡，题为《江城子》：\n"


def test_loss_targets_are_exactly_the_poem_tokens_and_eos(micro):
    _, tok = micro
    [example], _ = encode_poems(tok, [POEM], [0], ["raw"], max_length=512)
    prompt_ids = tok(RAW_PROMPT.format(title=POEM.title))["input_ids"]
    assert example.input_ids[:len(prompt_ids)] == prompt_ids
    poem_ids = tok(POEM.text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert _poem_tokens(example) == poem_ids
    assert example.n_targets == len(poem_ids)
    # Shifted once: the last prompt position predicts the first poem token; no prompt token is a target.
    assert all(t == IGNORE for t in example.targets[:len(prompt_ids) - 1])
    assert example.targets[len(prompt_ids) - 1] == poem_ids[0]
    assert example.targets[-1] == IGNORE


def test_long_poem_loses_its_end_never_the_prompt(micro):
    _, tok = micro
    [full], _ = encode_poems(tok, [POEM], [0], ["raw"], max_length=512)
    n_prompt = len(full) - full.n_targets
    [cut], stats = encode_poems(tok, [POEM], [0], ["raw"], max_length=n_prompt + 3)
    assert cut.truncated and stats.truncated == 1
    assert len(cut) == n_prompt + 3
    assert cut.input_ids[:n_prompt] == full.input_ids[:n_prompt]
    assert _poem_tokens(cut) == _poem_tokens(full)[:3]
    assert tok.eos_token_id not in _poem_tokens(cut)  # a cut poem must not teach the model to stop there


def test_prompt_that_does_not_fit_is_skipped_not_cut():
    assert make_example(prompt_ids=[1, 2, 3, 4], completion_ids=[5, 6], max_length=4) is None
    example = make_example(prompt_ids=[1, 2, 3, 4], completion_ids=[5, 6], max_length=5)
    assert example.input_ids == [1, 2, 3, 4, 5] and example.targets == [IGNORE, IGNORE, IGNORE, 5, IGNORE]


def test_chat_format_uses_the_tokenizers_own_template(micro):
    _, tok = micro
    tok = copy.deepcopy(tok)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert ensure_chat_template(tok) is True
    prompt = prompt_text(tok, POEM.title, "chat")
    assert prompt == "<|user|>模仿苏东坡（又名苏轼）的风格写一首诗，题为《江城子》</s><|assistant|>"
    [example], _ = encode_poems(tok, [POEM], [0], ["chat"], max_length=512)
    completion = tok.decode(_poem_tokens(example))
    assert completion == POEM.text + "</s>"  # the template's end-of-turn is learned, so the model stops


def test_chat_format_without_a_template_gets_the_plain_fallback(micro):
    _, tok = micro
    tok = copy.deepcopy(tok)
    tok.chat_template = None
    assert ensure_chat_template(tok) is False
    assert tok.chat_template == FALLBACK_CHAT_TEMPLATE
    assert prompt_text(tok, POEM.title, "chat") == "用户：模仿苏东坡（又名苏轼）的风格写一首诗，题为《江城子》\n助手："
    [example], _ = encode_poems(tok, [POEM], [0], ["chat"], max_length=512)
    assert _poem_tokens(example)[-1] == tok.eos_token_id


def test_held_out_split_is_by_poem_and_reproducible(micro, poems):
    _, tok = micro
    train, held = split_poems(poems, 0.1, seed=3)
    assert split_poems(poems, 0.1, seed=3) == (train, held)
    assert split_poems(poems, 0.1, seed=4) != (train, held)
    assert len(held) == 4 and not set(train) & set(held) and len(train) + len(held) == len(poems)
    examples, _ = encode_poems(tok, poems, held, ["raw", "chat"], max_length=128)
    assert {e.poem_index for e in examples} == set(held)
    assert {e.fmt for e in examples} == {"raw", "chat"}
