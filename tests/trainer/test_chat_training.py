"""Acceptance: training on chats (a messages JSONL, a saved Hugging Face dataset, the server's own stored
conversations) and serving the result with the server's transformers backend, which formats a chat exactly as
training did."""

from __future__ import annotations

import json

import pytest

from trainer.__main__ import main
from trainer.chat import encode_conversation
from trainer.data import IGNORE
from trainer.errors import TrainerError
from trainer.loop import train
from trainer.records import load_records
from trainer.report import read_metrics

SYSTEM = "你是苏东坡。"


def _chats(poems) -> list[list[dict[str, str]]]:
    chats = []
    for a, b in zip(poems[0::2], poems[1::2], strict=False):
        chats.append([{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": f"写一首诗，题为《{a.title}》"},
                      {"role": "assistant", "content": a.text[:60]},
                      {"role": "user", "content": f"再写一首，题为《{b.title}》"},
                      {"role": "assistant", "content": b.text[:60]}])
    return chats


@pytest.fixture(scope="module")
def chats_file(poems, tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in _chats(poems)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_model(chats_file, micro_dir, tmp_path_factory):
    """`python -m trainer --data chats.jsonl`: one short CLI run shared by the checks below."""
    out = tmp_path_factory.mktemp("chat-run")
    code = main(["--model", str(micro_dir), "--data", str(chats_file), "--out", str(out), "--max-steps", "3",
                 "--batch-size", "4", "--max-length", "160", "--lr", "3e-3", "--eval-split", "0.2",
                 "--eval-samples", "1", "--sample-tokens", "4", "--no-progress"])
    assert code == 0
    return out


def test_cli_trains_on_a_messages_jsonl(chat_model):
    records = read_metrics(chat_model / "metrics.jsonl")
    assert [r["step"] for r in records if r["type"] == "train"][-1] == 3
    evals = [r for r in records if r["type"] == "eval"]
    assert evals[-1]["samples"][0]["format"] == "messages"


async def test_the_server_serves_the_trained_dir_with_the_chat_format_it_was_trained_on(chat_model, poems):
    from transformers import AutoTokenizer

    from server.llm.tokens import render_chat_ids
    from server.llm.transformers_backend import TransformersGenerator
    from server.protocols import GenerationParams, Message, Usage

    chat = _chats(poems)[0]
    tokenizer = AutoTokenizer.from_pretrained(chat_model)
    example = encode_conversation(tokenizer, chat, 512)
    for last in (2, 4):  # the prompt before each reply, as the server renders that history
        prompt = render_chat_ids(tokenizer, [Message(m["role"], m["content"]) for m in chat[:last]])
        assert example.input_ids[:len(prompt)] == prompt
        assert example.targets[len(prompt) - 2] == IGNORE and example.targets[len(prompt) - 1] != IGNORE

    generator = TransformersGenerator(str(chat_model), device="cpu", concurrency=1, max_queued=2)
    await generator.start()
    try:
        usage = Usage()
        messages = [Message("system", SYSTEM), Message("user", chat[1]["content"])]
        params = GenerationParams(max_new_tokens=6, temperature=0.0, top_p=1.0)
        reply = "".join([d async for d in generator.stream(messages, params, usage)])
    finally:
        await generator.close()
    assert usage.prompt_tokens == len(render_chat_ids(tokenizer, messages)) and usage.completion_tokens > 0
    assert reply.strip()


def test_a_saved_dataset_dir_with_separate_eval_data_and_a_custom_template_trains(make_config, poems, chats_file,
                                                                                   tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    Dataset.from_list([{"conversation": c} for c in _chats(poems)]).save_to_disk(str(tmp_path / "saved"))
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}{% endfor %}"
                        "{% if add_generation_prompt %}[assistant]{% endif %}", encoding="utf-8")
    events = []
    result = train(make_config(data=str(tmp_path / "saved"), messages_field="conversation",
                               eval_data=str(chats_file), chat_template=str(template), max_steps=2, batch_size=4,
                               max_length=160), on_event=events.append)
    assert events[0]["data_kind"] == "messages"
    assert events[0]["train_examples"] == len(_chats(poems)) == events[0]["eval_examples"]  # nothing split off
    assert result.eval_loss is not None
    saved = AutoTokenizer.from_pretrained(result.out_dir)
    assert saved.chat_template == template.read_text(encoding="utf-8")  # served as it was trained


def test_eval_data_of_another_kind_is_refused(make_config, chats_file):
    with pytest.raises(TrainerError, match="--eval-data holds poems records but --data holds messages"):
        train(make_config(data=str(chats_file), eval_data=make_config().data))


async def test_the_servers_stored_chats_export_as_training_data(tmp_path, capsys, make_config):
    from server.store.sqlite_turns import SqliteTurnStore

    store = SqliteTurnStore(tmp_path / "data" / "chat.sqlite3")
    await store.start()
    try:
        for session, namespace, turns in [
            ("s1", "user:local", [("写一首诗", "春江水暖鸭先知", "complete"), ("再来", "", "interrupted"),
                                  ("好", "竹外桃花三两枝", "complete")]),
            ("s2", "user:bob", [("hi", "hello", "complete")]),
            ("s3", "user:local", [("问", None, "pending")]),
        ]:
            for user_text, response, status in turns:
                record = await store.begin_turn(session, namespace, user_text)
                if status != "pending":
                    await store.finish_turn(record.id, response, status)
    finally:
        await store.close()

    out = tmp_path / "chats.jsonl"
    assert main(["--from-server-db", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert "wrote 1 chats of user 'local'" in capsys.readouterr().err
    assert load_records(str(out)).items == [[
        {"role": "user", "content": "写一首诗"}, {"role": "assistant", "content": "春江水暖鸭先知"},
        {"role": "user", "content": "好"}, {"role": "assistant", "content": "竹外桃花三两枝"}]]
    assert main(["--from-server-db", str(tmp_path / "data"), "--out", str(out), "--user", "nobody"]) == 2
    assert "no completed turns of user 'nobody'" in capsys.readouterr().err
