"""How turns look in the chatbot: text shown as sent, search and memories as collapsible blocks."""

from web.client import PastTurn, Searched
from web.render import TurnView, history_messages, turn_messages


def test_user_and_model_text_are_shown_as_text_never_as_markup():
    messages = turn_messages(TurnView("is <b>bold</b> & fine?", reply="<script>alert(1)</script>\x00 ok\n  two"))
    assert messages == [{"role": "user", "content": "is &lt;b&gt;bold&lt;/b&gt; &amp; fine?"},
                        {"role": "assistant", "content": "&lt;script&gt;alert(1)&lt;/script&gt; ok\n  two"}]


def test_a_turn_that_searched_shows_the_query_summary_and_source_links_in_a_collapsible_block():
    search = Searched("deadlift form", "Keep the bar <close>.", ("https://a.example/x?y=1&z=2", "javascript:alert(1)"))
    block = turn_messages(TurnView("How do I deadlift?", search=search, reply="Like this."))[1]
    assert block["metadata"]["title"] == "🔎 Searched the web: “deadlift form”"
    assert "Keep the bar &lt;close&gt;." in block["content"]
    assert '<a href="https://a.example/x?y=1&amp;z=2" target="_blank"' in block["content"]
    assert "javascript:alert(1)" in block["content"] and 'href="javascript' not in block["content"]


def test_a_skipped_search_says_why():
    block = turn_messages(TurnView("q", search=Searched("weather paris", skipped="timeout")))[1]
    assert block["metadata"]["title"] == "🔎 Web search skipped (timeout): “weather paris”"


def test_the_memories_a_reply_used_are_listed_by_id_after_it():
    messages = turn_messages(TurnView("What does my cat like?", reply="Fish.", memories=(3, 7)))
    assert [m.get("metadata", {}).get("title") for m in messages] == [None, None, "🧠 Memories used: #3, #7"]


def test_a_stopped_or_failed_turn_says_so_and_keeps_the_partial_reply():
    stopped = turn_messages(TurnView("long one", reply="The first hal", stopped=True))
    assert stopped[1]["content"] == "The first hal" and stopped[2]["metadata"]["title"] == "⏹ Stopped"
    failed = turn_messages(TurnView("hm", error="the model failed while answering"))
    assert failed[-1] == {"role": "assistant", "content": "⚠️ The model failed while answering"}


def test_a_stored_history_shows_each_turn_with_its_status():
    messages = history_messages([PastTurn("1", "hi", "hello", "complete"), PastTurn("2", "go on", "and", "interrupted"),
                                 PastTurn("3", "again", "", "failed"), PastTurn("4", "now", "", "pending")])
    assert [(m["role"], m.get("metadata", {}).get("title") or m["content"]) for m in messages] == [
        ("user", "hi"), ("assistant", "hello"),
        ("user", "go on"), ("assistant", "and"), ("assistant", "⏹ Stopped"),
        ("user", "again"), ("assistant", "⚠️ The server failed while answering this message"),
        ("user", "now"), ("assistant", "⏳ Still being written")]
