import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scraper.urls import canonical_title, is_red_link, is_view_url, is_work_namespace, normalize_url, title_of

BASE = "https://zh.wikisource.org/wiki/%E6%9D%B1%E5%9D%A1%E5%85%A8%E9%9B%86"
KEY = "https://zh.wikisource.org/wiki/%E7%9F%B3%E9%BC%BB%E5%9F%8E_(%E8%98%87%E8%BB%BE)"


@pytest.mark.parametrize(
    "href",
    [
        "/wiki/%E7%9F%B3%E9%BC%BB%E5%9F%8E_(%E8%98%87%E8%BB%BE)",
        "/wiki/%e7%9f%b3%e9%bc%bb%e5%9f%8e_(%e8%98%87%e8%bb%be)",
        "/wiki/石鼻城_(蘇軾)",
        "/wiki/石鼻城 (蘇軾)",
        "/wiki/%E7%9F%B3%E9%BC%BB%E5%9F%8E%20(%E8%98%87%E8%BB%BE)",
        "/wiki/石鼻城_(蘇軾)#其一",
        "/w/index.php?title=石鼻城_(蘇軾)",
        "/w/index.php?title=%E7%9F%B3%E9%BC%BB%E5%9F%8E_(%E8%98%87%E8%BB%BE)&redirect=no",
        "https://ZH.wikisource.org:443/wiki/石鼻城_(蘇軾)",
        "https://zh.m.wikisource.org/wiki/石鼻城_(蘇軾)",
        "/zh-hant/石鼻城_(蘇軾)",
    ],
)
def test_every_spelling_of_a_page_link_has_the_same_key(href):
    assert normalize_url(href, BASE) == KEY


def test_red_link_key_is_the_page_it_would_create():
    href = "/w/index.php?title=%E8%A3%9C%E9%81%BA&action=edit&redlink=1"
    assert is_red_link(href)
    assert normalize_url(href, BASE) == "https://zh.wikisource.org/wiki/%E8%A3%9C%E9%81%BA"
    assert not is_view_url("https://zh.wikisource.org" + href)


def test_edit_and_history_links_are_not_views():
    assert not is_view_url("https://zh.wikisource.org/w/index.php?title=X&action=history")
    assert not is_view_url("https://zh.wikisource.org/w/index.php?title=X&oldid=5")
    assert is_view_url("https://zh.wikisource.org/w/index.php?title=X")
    assert is_view_url(KEY)


def test_namespaced_titles_are_not_works_but_fullwidth_colons_are():
    assert not is_work_namespace("Author:蘇軾")
    assert not is_work_namespace("Category:北宋")
    assert not is_work_namespace("作者:蘇軾")
    assert is_work_namespace("書：某")
    assert is_work_namespace("Re:Zero")


def test_title_of_reads_article_paths_and_index_php():
    assert title_of(KEY) == "石鼻城 (蘇軾)"
    assert title_of("https://h.org/w/index.php?title=a_b") == "A b"
    assert title_of("https://h.org/static/x.png") is None


@pytest.mark.parametrize("bad", ["", "   ", "mailto:a@b.c", "ftp://h/x", "http:///nohost"])
def test_unusable_urls_raise_a_clear_error(bad):
    with pytest.raises(ValueError):
        normalize_url(bad, None)


titles = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="#?%[]{}|<>\\^`\"'"),
    min_size=1,
    max_size=20,
# a title that canonicalises to nothing (only spaces, underscores, NBSP...) names no page
).filter(lambda t: canonical_title(t) and not t.startswith("/") and "//" not in t and t.strip(" _") not in (".", ".."))


@given(titles)
def test_normalising_is_idempotent_and_ignores_encoding(title):
    key = normalize_url(f"/wiki/{title}", BASE)
    assert normalize_url(key) == key
    assert normalize_url(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), key)) == key
    assert title_of(key) == canonical_title(title)
