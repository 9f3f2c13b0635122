"""How turns look in the chatbot: the user's text as typed, replies as markdown with linked `[n]` markers,
sources numbered with titles and hosts, recalled memories with their text and date."""

from web.render import Show, TurnView, as_typed, history_messages, turn_messages
from web.wire import PastTurn, Recalled, Searched

SEARCH = Searched("deadlift form", "Keep the bar <close> [1].", ("https://a.example/x?y=1&z=2", "javascript:alert(1)"),
                  titles=("How to *deadlift*", ""))


def test_the_users_text_is_escaped_so_markdown_and_html_in_it_show_as_typed():
    shown = as_typed("# title\n  *x* <b>y</b> [a](b) 1. z")
    assert "<b>" not in shown and "&lt;b&gt;" in shown
    assert shown.startswith("\\# title\n&nbsp;&nbsp;\\*x\\*") and "\\[a\\]\\(b\\) 1\\. z" in shown


def test_reply_markers_link_to_the_numbered_sources_and_only_to_web_addresses():
    messages = turn_messages(TurnView("How?", search=SEARCH, reply="Like this [1], not [2] or [3]."))
    reply = messages[2]["content"]
    assert reply == "Like this [\\[1\\]](<https://a.example/x?y=1&z=2>), not [2] or [3]."
    sources = messages[3]["content"]
    assert sources.startswith("**Sources**")
    assert "\\[1\\] [How to \\*deadlift\\*](<https://a.example/x?y=1&z=2>) · a\\.example" in sources
    assert "\\[2\\] javascript\\:alert\\(1\\)" in sources and "(<javascript" not in sources


def test_a_search_summary_is_text_from_web_pages_and_never_markup():
    block = turn_messages(TurnView("How?", search=SEARCH, reply="ok"))[1]
    assert block["metadata"]["title"] == "🔎 Searched the web: “deadlift form”"
    assert "&lt;close&gt;" in block["content"] and "<close>" not in block["content"]


def test_a_skipped_search_says_why_and_lists_no_sources():
    messages = turn_messages(TurnView("q", search=Searched("weather paris", skipped="timeout"), reply="hm"))
    assert messages[1]["metadata"]["title"] == "🔎 Web search skipped (timeout): “weather paris”"
    assert not any(m["content"].startswith("**Sources**") for m in messages)


def test_recalled_memories_show_their_text_and_date_in_a_collapsed_block():
    memories = (Recalled(3, "User: my cat <likes> fish", 1764547200.0), Recalled(7, "x", "2024-02-03T04:05:06Z"))
    block = turn_messages(TurnView("What does my cat like?", reply="Fish.", memories=memories))[-1]
    assert block["metadata"] == {"title": "🧠 Recalled 2 memories from earlier chats", "status": "done"}
    assert block["content"] == "- **2025-12-01** · User\\: my cat &lt;likes&gt; fish\n- **2024-02-03** · x"


def test_settings_hide_memories_and_sources():
    view = TurnView("q", search=SEARCH, reply="r [1]", memories=(Recalled(1, "m"),))
    assert len(turn_messages(view, Show(memories=False, sources=False))) == 2


def test_a_stored_history_shows_each_turn_with_its_status_search_and_memories():
    messages = history_messages([
        PastTurn("1", "hi", "hello", "complete", (Recalled(1, "m", 0.0),), SEARCH),
        PastTurn("2", "go on", "and", "interrupted"), PastTurn("3", "again", "", "failed"),
        PastTurn("4", "now", "", "pending")])
    assert [(m["role"], m.get("metadata", {}).get("title") or m["content"][:11]) for m in messages] == [
        ("user", "hi"), ("assistant", "🔎 Searched the web: “deadlift form”"), ("assistant", "hello"),
        ("assistant", "**Sources**"), ("assistant", "🧠 Recalled 1 memory from earlier chats"),
        ("user", "go on"), ("assistant", "and"), ("assistant", "⏹ Stopped"),
        ("user", "again"), ("assistant", "⚠️ The serv"),
        ("user", "now"), ("assistant", "⏳ Still being written")]
