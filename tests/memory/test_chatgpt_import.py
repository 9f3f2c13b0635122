"""A ChatGPT data export read as chats: the branch the user last saw, user messages opening turns, assistant
messages answering them, everything else left out; imported over HTTP once, retrievable at once."""

import json

import httpx
import pytest

from server.memory.chatgpt import ExportError, parse_chatgpt_export
from tests.server.conftest import make_settings
from tests.support.servers import ServerThread


def node(node_id, parent, role, text, when=None, children=(), content_type="text", hidden=False):
    message = {"id": node_id, "author": {"role": role}, "create_time": when,
               "content": {"content_type": content_type, "parts": [text] if text is not None else []},
               "metadata": {"is_visually_hidden_from_conversation": True} if hidden else {}}
    return node_id, {"id": node_id, "message": message, "parent": parent, "children": list(children)}


def export() -> list[dict]:
    mapping = dict([
        ("root", {"id": "root", "message": None, "parent": None, "children": ["sys"]}),
        node("sys", "root", "system", "", hidden=True, children=["u1"]),
        node("u1", "sys", "user", "I am planning a trip to Kyoto in April.", 1_700_000_000, ["a1"]),
        node("a1", "u1", "assistant", "Cherry blossoms peak then.", 1_700_000_010, ["u2", "u2-edited"]),
        node("u2", "a1", "user", "An abandoned draft question", 1_700_000_020, ["a2-old"]),
        node("a2-old", "u2", "assistant", "An answer nobody saw", 1_700_000_030),
        node("u2-edited", "a1", "user", "My budget is 2000 euros.", 1_700_000_040, ["tool"]),
        node("tool", "u2-edited", "tool", "search results", 1_700_000_041, ["code"]),
        node("code", "tool", "assistant", "print(2000 / 7)", 1_700_000_042, ["a2"], content_type="code"),
        node("a2", "code", "assistant", "That is about 285 euros a day.", 1_700_000_050, ["img"]),
        node("img", "a2", "user", None, 1_700_000_060),
    ])
    mapping["img"]["message"]["content"] = {"content_type": "multimodal_text",
                                            "parts": [{"asset_pointer": "file-service://x"}, "What is in this photo?"]}
    return [{"title": "Kyoto trip", "create_time": 1_700_000_000, "conversation_id": "conv-kyoto",
             "current_node": "img", "mapping": mapping},
            {"title": "Empty", "conversation_id": "conv-empty", "current_node": "root",
             "mapping": {"root": {"id": "root", "message": None, "parent": None, "children": []}}}]


def test_the_branch_last_seen_becomes_turns_and_tools_code_images_and_hidden_messages_are_left_out():
    [chat] = parse_chatgpt_export(json.dumps(export()).encode())
    assert (chat.session, chat.title) == ("chatgpt-conv-kyoto", "Kyoto trip")
    assert [(t.user_text, t.response, t.created) for t in chat.turns] == [
        ("I am planning a trip to Kyoto in April.", "Cherry blossoms peak then.", 1_700_000_000.0),
        ("My budget is 2000 euros.", "That is about 285 euros a day.", 1_700_000_040.0),
        ("What is in this photo?", "", 1_700_000_060.0)]


@pytest.mark.parametrize("body", [b"not json", b"{}", b'[{"title": "no mapping"}]', b"[1, 2]"])
def test_what_is_not_a_conversations_json_is_refused(body):
    with pytest.raises(ExportError):
        parse_chatgpt_export(body)


def test_an_export_imported_over_http_is_listed_and_retrievable_and_a_second_import_adds_nothing(tiny_model_dir,
                                                                                                tmp_path):
    server = ServerThread(make_settings(tiny_model_dir, tmp_path, memory_top_k=None)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            body = json.dumps(export()).encode()
            first = http.post("/import/chatgpt", content=body)
            assert first.status_code == 200, first.text
            assert first.json() == {"sessions": [{"session": "chatgpt-conv-kyoto", "title": "Kyoto trip", "turns": 3}],
                                    "skipped": 0}
            assert http.post("/import/chatgpt", content=body).json() == {"sessions": [], "skipped": 1}
            assert [t["user"] for t in http.get("/sessions/chatgpt-conv-kyoto/history").json()["turns"]] == [
                "I am planning a trip to Kyoto in April.", "My budget is 2000 euros.", "What is in this photo?"]
            found = http.get("/memories", params={"query": "What was my travel budget?"}).json()["memories"]
            budget = next(m for m in found if "2000 euros" in m["text"])
            assert budget["session"] == "chatgpt-conv-kyoto" and budget["created"].startswith("2023-11-14")
            assert http.post("/import/chatgpt", content=b"[1]").json()["error"]["code"] == "invalid_request"
    finally:
        server.stop()


def test_an_import_cut_short_is_finished_by_importing_the_same_export_again(tiny_model_dir, tmp_path, monkeypatch):
    from server import failpoints

    server = ServerThread(make_settings(tiny_model_dir, tmp_path, memory_top_k=None)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            body = json.dumps(export()).encode()
            monkeypatch.setitem(failpoints._ARMED, "flush.before_commit", "raise")  # the embedder or store failing
            cut_short = http.post("/import/chatgpt", content=body)
            assert cut_short.status_code == 503 and cut_short.json()["error"]["code"] == "import_pending"

            def budget_memories():
                found = http.get("/memories", params={"query": "What was my travel budget?"}).json()["memories"]
                return [m["text"] for m in found if "2000 euros" in m["text"]]
            assert budget_memories() == []

            monkeypatch.delitem(failpoints._ARMED, "flush.before_commit")
            assert http.post("/import/chatgpt", content=body).json() == {"sessions": [], "skipped": 1}
            assert budget_memories() == ["User: My budget is 2000 euros."]
            assert len(http.get("/sessions/chatgpt-conv-kyoto/history").json()["turns"]) == 3  # stored once
    finally:
        server.stop()
