"""--data beyond poems: chats (multi-turn, loss on every assistant turn), prompt-completion pairs, plain text,
Hugging Face datasets; read and encoded with exact loss masks."""

from __future__ import annotations

import json

import pytest

from trainer.chat import encode_conversation
from trainer.data import IGNORE
from trainer.encode import encode_records
from trainer.errors import TrainerError
from trainer.records import Fields, load_records

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "be", "brief", "hi", "hello",
         "there", "how", "are", "you", "fine", "bye", "write", "a", "poem", "spring", "rain"]
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}")
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"}, {"role": "user", "content": "how are you"},
        {"role": "assistant", "content": "fine"}, {"role": "user", "content": "bye"}]


@pytest.fixture(scope="module")
def words():
    """A tokenizer with one token per word, so every token position below can be written down by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")
    fast.chat_template = TEMPLATE
    return fast


def ids(text: str) -> list[int]:
    return [WORDS.index(w) for w in text.split()]


def test_a_multi_turn_chat_trains_on_every_assistant_turn_and_nothing_else(words):
    example = encode_conversation(words, CHAT, max_length=100)
    #   0 <|system|> 1 be 2 brief 3 </s> 4 <|user|> 5 hi 6 </s> 7 <|assistant|> 8 hello 9 there 10 </s>
    #  11 <|user|> 12 how 13 are 14 you 15 </s> 16 <|assistant|> 17 fine 18 </s>   (the last user turn has no reply)
    assert example.input_ids == ids("<|system|> be brief </s> <|user|> hi </s> <|assistant|> hello there </s> "
                                    "<|user|> how are you </s> <|assistant|> fine </s>")
    want = [IGNORE] * 19
    # position i predicts token i + 1: the replies' words and their end-of-turn, which teaches the model to stop
    want[7], want[8], want[9] = ids("hello there </s>")
    want[16], want[17] = ids("fine </s>")
    assert example.targets == want
    assert example.n_targets == 5 and example.fmt == "messages"


def test_an_assistant_turn_with_weight_zero_is_context_only(words):
    chat = [*CHAT[:2], {**CHAT[2], "weight": 0}, *CHAT[3:5]]
    example = encode_conversation(words, chat, max_length=100)
    assert [i for i, t in enumerate(example.targets) if t != IGNORE] == [16, 17]


def test_a_long_chat_loses_its_end_and_one_with_no_reply_left_is_skipped(words):
    cut = encode_conversation(words, CHAT, max_length=10)
    assert cut.truncated and cut.input_ids == ids("<|system|> be brief </s> <|user|> hi </s> <|assistant|> hello "
                                                  "there")
    assert [t for t in cut.targets if t != IGNORE] == ids("hello there")
    assert encode_conversation(words, CHAT, max_length=8) is None


def test_the_prompt_of_each_reply_is_the_servers_generation_prompt(words):
    """The text before each reply is exactly what apply_chat_template(add_generation_prompt=True) makes of the
    history, which is what the server sends the model."""
    example = encode_conversation(words, CHAT, max_length=100)
    for last in (2, 4):
        prompt = words.apply_chat_template(CHAT[:last], tokenize=False, add_generation_prompt=True)
        prompt_ids = words(prompt, add_special_tokens=False)["input_ids"]
        assert example.input_ids[:len(prompt_ids)] == prompt_ids
        assert example.targets[len(prompt_ids) - 2] == IGNORE and example.targets[len(prompt_ids) - 1] != IGNORE


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_prompt_completion_pairs_train_on_the_completion_and_eos(words, tmp_path):
    data = _write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "write a poem", "completion": "spring rain"}])
    records = load_records(str(data))
    assert records.kind == "prompt"
    [example], _ = encode_records(words, records, [0], ["raw"], 100)
    assert example.input_ids == ids("write a poem spring rain </s>")
    assert example.targets == [IGNORE, IGNORE, *ids("spring rain </s>"), IGNORE]


def test_conversational_prompt_completion_trains_on_the_completion_only(tmp_path):
    row = {"prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": "write a poem"}],
           "completion": [{"role": "assistant", "content": "spring rain"}]}
    records = load_records(str(_write_jsonl(tmp_path / "conv.jsonl", [row])))
    assert records.kind == "messages"
    assert [m.get("weight", 1) for m in records.items[0] if m["role"] == "assistant"] == [0, 1]


def test_text_records_train_on_every_token(words, tmp_path):
    data = _write_jsonl(tmp_path / "text.jsonl", [{"body": "spring rain", "title": "x"}])
    records = load_records(str(data), Fields(text="body", text_given=True))
    assert records.kind == "text"
    [example], _ = encode_records(words, records, [0], ["raw"], 100)
    assert example.input_ids == ids("spring rain </s>") and example.targets == [*ids("rain </s>"), IGNORE]


def test_sharegpt_conversations_are_read_as_messages(tmp_path):
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    records = load_records(str(_write_jsonl(tmp_path / "sharegpt.jsonl", [row])))
    assert records.items == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]


def test_a_saved_dataset_parquet_and_a_messages_field_are_read(tmp_path):
    from datasets import Dataset

    rows = [{"chat": CHAT[:3], "id": 1}, {"chat": CHAT[:5], "id": 2}]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    saved = load_records(str(tmp_path / "saved"), Fields(messages="chat"))
    assert saved.kind == "messages" and len(saved) == 2 and saved.items[1][4]["content"] == "fine"
    Dataset.from_list([{"prompt": "hi", "completion": "hello"}] * 3).to_parquet(str(tmp_path / "pairs.parquet"))
    assert load_records(str(tmp_path / "pairs.parquet")).items == [("hi", "hello")] * 3


def test_poem_corpus_still_reads_as_poems(corpus_file, poems):
    records = load_records(str(corpus_file))
    assert records.kind == "poems" and records.items == poems


@pytest.mark.parametrize(("rows", "message"), [
    ([{"foo": 1}], r"cannot tell the records' format from their fields \['foo'\]"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "record 1 is not a messages record.*no assistant"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], "role 'robot'"),
])
def test_unreadable_records_are_clear_errors(tmp_path, rows, message):
    with pytest.raises(TrainerError, match=message):
        load_records(str(_write_jsonl(tmp_path / "bad.jsonl", rows)))


def test_a_broken_line_names_its_number(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"messages": []}\n{not json\n', encoding="utf-8")
    with pytest.raises(TrainerError, match=r"broken.jsonl:2: not a JSON object"):
        load_records(str(path))
