"""Long texts cut into pieces that fit a token budget, and long messages remembered in such pieces."""

import pytest

from server.estimate import approximate_tokens, split_to_fit
from server.protocols import MEMORY_PIECE_TOKENS, TurnRecord

ENGLISH = "I moved to Porto in May. The flat has a view of the river! Do you like it? " * 12
CHINESE = "我女儿在波尔图上学。她每天坐电车去学校！" * 20


@pytest.mark.parametrize("text", [ENGLISH, CHINESE, ENGLISH + CHINESE, "a" * 1000, "word " * 300])
def test_pieces_fit_the_budget_and_give_the_text_back(text):
    pieces = split_to_fit(text, 60)
    assert "".join(pieces) == text
    assert len(pieces) > 1 and all(approximate_tokens(piece) <= 60 for piece in pieces)


@pytest.mark.parametrize("text", [ENGLISH, CHINESE])
def test_pieces_are_cut_between_sentences(text):
    assert all(piece.rstrip()[-1] in ".!?。！？" for piece in split_to_fit(text, 60))


def test_a_text_within_the_budget_is_one_piece_and_nothing_gives_none():
    assert split_to_fit("Where do I live now?", 60) == ["Where do I live now?"]
    assert split_to_fit("", 60) == []


def test_a_long_message_becomes_several_memories_each_led_by_its_speaker():
    turn = TurnRecord("t1", "s", 1, "Help me with the visa form.", ENGLISH * 3, "complete", 0.0, "Lena", "Su Shi")
    texts = turn.memory_texts
    assert texts[0] == "Lena: Help me with the visa form."
    assert len(texts) > 3 and all(t.startswith("Su Shi: ") for t in texts[1:])
    assert all(approximate_tokens(t) <= MEMORY_PIECE_TOKENS + 5 for t in texts)
    assert " ".join(t.removeprefix("Su Shi: ") for t in texts[1:]) == (ENGLISH * 3).strip()
