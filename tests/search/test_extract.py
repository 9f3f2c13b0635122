"""Page text within the token budget the summariser is given (SEARCH_TEXT_TOKENS)."""

from server.estimate import approximate_tokens
from server.search.extract import safe_counter, truncate_tokens

TEXT = ("The deadlift starts over mid-foot. Hinge at the hips and keep the back flat. Brace before the pull. "
        "Drive through the floor and keep the bar close. Lock out the hips at the top. ") * 20


def test_text_within_the_budget_is_kept_whole():
    assert truncate_tokens("Short page.", 100, approximate_tokens) == "Short page."


def test_long_text_is_cut_to_the_budget_at_a_sentence_end():
    cut = truncate_tokens(TEXT, 60, approximate_tokens)
    assert approximate_tokens(cut) <= 62
    assert cut.endswith(". …"), cut[-30:]
    assert TEXT.startswith(cut[:-2])


def test_the_budget_is_counted_with_the_given_tokenizer():
    def per_word(text: str) -> int:
        return len(text.split())

    cut = truncate_tokens(TEXT, 25, per_word)
    assert per_word(cut) <= 26 and len(cut) > 60


def test_a_tokenizer_busy_in_another_thread_falls_back_to_an_estimate():
    def busy(text: str) -> int:
        raise RuntimeError("Already borrowed")

    assert safe_counter(busy)("苏轼 wrote poems") == approximate_tokens("苏轼 wrote poems")
    assert truncate_tokens("", 10, approximate_tokens) == "" and truncate_tokens(TEXT, 0, approximate_tokens) == ""
