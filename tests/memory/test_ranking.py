"""What a message recalls: its content words (English and Chinese), the small-talk floor, fusion, the budget,
and the prompt's order and dates."""

import numpy as np
import pytest

from server.estimate import approximate_tokens
from server.memory.ranking import RankingPolicy, fuse, within_budget, worth_recalling
from server.prompt import PromptBuilder, PromptParts, memory_order
from server.protocols import Document, Hit, LogEntry
from server.store.faiss_index import FaissVectorStore, NamespaceIndex
from server.store.lexical import LexicalIndex, query_terms

SMALL_TALK = ["ok", "thanks!", "haha", "你好", "lol ok", "Good morning!", "how are you?", "谢谢！", "晚安晚安",
              "好的好的", "hmm", "yep, sure", "哈哈哈哈", "稍等一下", "brb"]


@pytest.mark.parametrize("message", SMALL_TALK)
def test_small_talk_has_no_content_word_so_it_recalls_nothing(message):
    assert query_terms(message) == [] and not worth_recalling(message)


@pytest.mark.parametrize("message", ["Sounds good, see you later!", "great job!! 🎉", "makes sense", "I see",
                                     "no worries", "love it", "haha that\u2019s so true", "太好了！", "好的，明天见！",
                                     "没问题", "Much appreciated 🙏", "okie dokie"])
def test_small_talk_phrases_with_a_content_word_recall_nothing(message):
    assert not worth_recalling(message)


@pytest.mark.parametrize("message", ["What is my job?", "What do I love?", "what did I see last week?",
                                     "Is it true that I moved?", "我太太叫什么名字？",
                                     "Great job at the bakery, when did I start?"])
def test_questions_that_share_a_word_with_small_talk_still_recall(message):
    assert worth_recalling(message)


@pytest.mark.parametrize(("message", "terms"), [
    ("Where do I live now?", ["live"]),
    ("What's my dog's name?", ["dog", "name"]),
    ("我的孩子叫什么名字？", ["孩子", "子叫", "名字"]),  # cut at 我/的/什/么: no bigram across a function character
    ("我住在哪里？", ["住"]),  # a one-character piece is itself
    ("我对什么过敏？", ["过敏"]),
    ("苏轼", ["苏轼"]),
])
def test_content_words_in_english_and_chinese(message, terms):
    assert query_terms(message) == terms


def test_bm25_finds_chinese_by_character_pairs_and_english_by_stemmed_words():
    index = LexicalIndex()
    index.add([(1, "User: 我女儿在波尔图上学"), (2, "User: I moved to Paris in May"), (3, "User: 我喜欢喝茶")])
    assert [doc for doc, _ in index.search("她在哪里上学？", 5)] == [1]
    assert [doc for doc, _ in index.search("When was I moving?", 5)] == [2]
    index.remove(1)
    assert index.search("上学", 5) == []


def test_a_large_index_leaves_out_of_a_query_the_words_most_of_its_memories_hold_a_small_one_keeps_all():
    index = LexicalIndex()
    index.add([(i, f"John: day {i} was fine") for i in range(1, 2101)] + [(9999, "John: I bought a guitar")])
    assert [doc for doc, _ in index.search("John's guitar", 50)] == [9999]  # "john" in every memory: left out
    assert len(index.search("what did John do", 5)) == 5  # all of its words common: the rarest still searched
    for i in range(1, 2051):
        index.remove(i)
    assert len(index.search("John's guitar", 100)) == 51  # 51 memories left: every word counts again
    index.add([(9999, "John: I sold the guitar")])  # an edit: counted once
    assert [doc for doc, _ in index.search("sold", 5)] == [9999] and len(index.search("John", 100)) == 51


def hit(doc_id: int, score: float, created: float | None = None, text: str = "x") -> Hit:
    return Hit(Document(doc_id, "user:a", text, created=created), score)


def test_fusion_weighs_words_more_for_a_chinese_message_than_for_an_english_one():
    dense, words = [hit(1, 0.9), hit(2, 0.8)], [hit(2, 9.0), hit(1, 1.0)]
    policy = RankingPolicy(lexical_weight_latin=0.3, lexical_weight_cjk=4.0)
    assert [h.doc.id for h in fuse(dense, words, "which city is it", policy)] == [1, 2]
    assert [h.doc.id for h in fuse(dense, words, "是哪个城市", policy)] == [2, 1]


def test_the_budget_takes_memories_in_rank_order_while_they_fit_and_skips_one_that_does_not():
    ranked = [hit(1, 3, text="a" * 35), hit(2, 2, text="b" * 700), hit(3, 1, text="c" * 35)]
    assert [h.doc.id for h in within_budget(ranked, 25, approximate_tokens)] == [1, 3]
    assert [h.doc.id for h in within_budget(ranked, 25, approximate_tokens, limit=1)] == [1]


def test_the_prompt_lists_memories_oldest_first_with_their_dates():
    paris = hit(7, 0.2, created=1_717_200_000.0, text="User: I moved to Paris.")  # 2024-06-01
    berlin = hit(3, 0.9, created=1_704_110_400.0, text="User: I live in Berlin.")  # 2024-01-01
    assert memory_order([paris, berlin]) == [berlin, paris]
    built = PromptBuilder(approximate_tokens, 2048, 64).build(PromptParts("You are Su Shi.", "Where do I live now?",
                                                                          memories=[paris, berlin]))
    system = built.messages[0].content
    older, newer = "- [2024-01-01] User: I live in Berlin.", "- [2024-06-01] User: I moved to Paris."
    assert system.index(older) < system.index(newer)


def test_an_index_rebuilt_from_its_snapshot_still_finds_by_words_and_keeps_dates_and_turns():
    index = NamespaceIndex(4)
    vector = np.eye(4, dtype=np.float32)[0]
    index.apply([LogEntry(1, "add", Document(5, "user:a", "User: my whippet Pixel", vector, "s", 123.0, "t1"))])
    again = NamespaceIndex.from_bytes(index.to_bytes(), "user:a")
    [found] = again.search_text("Pixel the whippet", 3)
    assert (found.doc.id, found.doc.created, found.doc.turn, found.doc.session) == (5, 123.0, "t1", "s")
    assert again.search(vector, 1)[0].doc.text == "User: my whippet Pixel"


async def test_a_words_only_index_beside_server_side_knn_finds_by_words_and_holds_no_vectors():
    vector = np.eye(4, dtype=np.float32)[1]
    log = [LogEntry(1, "add", Document(9, "user:a", "User: my whippet Pixel", vector, "s", 5.0, "t9"))]

    async def read_log(namespace, cursor):
        return [] if cursor else log

    words = FaissVectorStore(read_log, 4, vectors=False)
    [found] = await words.search_text("user:a", "where does Pixel sleep", 5)
    assert (found.doc.id, found.doc.turn) == (9, "t9")
    assert (await words.refresh("user:a")).index.ntotal == 0
