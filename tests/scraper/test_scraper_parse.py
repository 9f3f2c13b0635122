import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scraper.parse import MalformedPage, is_cross_reference, normalize_text, parse_page
from tests.scraper.mirror import PageSpec, render_work, wiki_path

BASE = "http://127.0.0.1:9"
THREE_POEMS = PageSpec(
    title="仙遊潭五首 (蘇軾)",
    text="翠壁下無路，何年雷雨穿。\n光搖巖上寺，深到影中天。\n\n"
    "清潭百尺皎無泥，山木陰陰谷鳥啼。\n蜀客曾遊明月峽，秦人今在武陵溪。\n\n"
    "猶有愛山心未至，不將雙腳踏飛梯。〈（嘗有夜雨對床之言，故云爾。）〉",
    stub=False,
)
PROSE = PageSpec(
    title="與滕達道二十四首（之二十三）",
    text="某再啟。別諭，具感知愛之深，一一佩刻。董田已遣人去問，宜興親情若果爾，當乘舟徑往成之。然公欲某到吳興，則恐難為。\n"
    "到南都，欲一狀申禮曹。凡刊行文字，皆先毀板，如所教也。犯時獨行太[山畏][山畾]，回天不忌真藥石。\u3000二物皆東川所出。",
    stub=False,
)
# Footnotes (three, one a bare [3] anchor), a hidden tooltip, an inline link, the licence as a <p>.
APPARATUS = {"notes": 0.0, "n-notes": 0.99, "tooltip": 0.0, "tip-style": 0.1, "inline-link": 0.0, "licence": 0.9}


def url_of(title: str) -> str:
    return BASE + wiki_path(title)


@pytest.mark.parametrize(
    "shape", [0.1, 0.5, 0.9], ids=["several-div-poem", "one-div-poem-p-per-stanza", "one-p-blank-br-lines"]
)
def test_every_poem_and_stanza_on_a_page_is_kept(shape):
    html = render_work(THREE_POEMS, BASE, choices={**APPARATUS, "shape": shape, "headed": 0.0})
    if shape == 0.1:
        assert html.count('class="poem"') == 3 and "mw-editsection" in html
    page = parse_page(html, url_of(THREE_POEMS.title))
    assert page.title == THREE_POEMS.title
    assert page.text == THREE_POEMS.text
    assert page.stub is None
    assert page.canonical == "http://127.0.0.1:9" + wiki_path(THREE_POEMS.title)


def test_footnotes_tooltips_header_and_licence_are_not_text():
    for tip_style in (0.1, 0.9):  # the hidden .tooltiptext and the title-attribute kind
        html = render_work(PROSE, BASE, choices={**APPARATUS, "tip-style": tip_style})
        assert 'class="reference"' in html and "[3]" in html and "一作：" in html and "licenseContainer" in html
        page = parse_page(html, url_of(PROSE.title))
        assert page.text == PROSE.text
        assert "一作" not in page.text and "公有领域" not in page.text and "本作品收錄" not in page.text


def test_a_redirect_is_parsed_as_its_target():
    html = render_work(THREE_POEMS, BASE, redirected_from="仙遊潭", choices={"shape": 0.9})
    page = parse_page(html, url_of("仙遊潭"))
    assert page.title == THREE_POEMS.title
    assert page.canonical.endswith(wiki_path(THREE_POEMS.title))
    assert page.text == THREE_POEMS.text


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (PageSpec("次韻聞復上人（此詩卷二十二已收，收時題作「次韻聰上人見寄」）", "", True), "cross-reference"),
        (PageSpec("穆生去楚王戊", "", True), "no text"),
        (
            PageSpec("再贈常州報恩長老", "〈（此詩卷十五已收，為「贈常州報恩長老二首」之第二首。）〉", True),
            "editorial note",
        ),
    ],
)
def test_cross_reference_stubs_are_recognised_not_emitted(spec, reason):
    page = parse_page(render_work(spec, BASE, choices={"licence": 0.9}), url_of(spec.title))
    assert page.stub is not None and reason in page.stub
    assert page.text == ""


def test_a_short_prose_work_mentioning_another_is_not_a_stub():
    spec = PageSpec(
        "與蒲廷淵",
        "河中永洛出棗，道家所貴，事見《真誥》。唐有道士侯道華，嘗得無核者三，食之後，竟竊鄧太主藥上升。",
        False,
    )
    page = parse_page(render_work(spec, BASE, choices={"inline-link": 0.0}), url_of(spec.title))
    assert page.stub is None and page.text == spec.text


def test_rendered_corpus_pages_round_trip(catalog):
    specs = random.Random(7).sample(sorted(catalog.pages.values(), key=lambda s: s.title), 300)
    for spec in specs:
        page = parse_page(render_work(spec, BASE), url_of(spec.title))
        assert (page.title, page.text, page.stub is not None) == (spec.title, "" if spec.stub else spec.text, spec.stub)


def test_a_truncated_page_is_malformed_so_it_is_fetched_again():
    html = render_work(THREE_POEMS, BASE)
    with pytest.raises(MalformedPage, match="truncated"):
        parse_page(html[: len(html) // 2], url_of(THREE_POEMS.title))


@pytest.mark.parametrize(
    "html",
    [
        "<html><body><p>503 Service Temporarily Unavailable</p></body></html>",
        '<html><body><h1 id="firstHeading"><span class="mw-page-title-main">X</span></h1></body></html>',
        '<html><body><h1 id="firstHeading"></h1><div class="mw-parser-output"></div></body></html>',
    ],
    ids=["error-page", "no-content", "no-title"],
)
def test_pages_that_are_not_articles_are_malformed(html):
    with pytest.raises(MalformedPage):
        parse_page(html, url_of("X"))


@given(st.text(alphabet=st.sampled_from("ab \u3000\n\r\t"), max_size=40))
def test_normalize_text_is_idempotent_and_keeps_ideographic_spaces_inside_lines(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert "\n\n\n" not in once and not once.startswith("\n") and not once.endswith("\n")
    assert once.count("\u3000") <= text.count("\u3000")


# One-line pages that only say where the work really is: editorial notes, in traditional or simplified
# characters, with or without a link, as a <poem> or as a plain paragraph.
CROSS_REFERENCES = [
    "此詩已收入他卷。",
    "此诗已收入他卷。",
    "此詞重出，見卷十二「念奴嬌」。",
    "参见《和子由渑池怀旧》。",
    "見卷三十一。",
    "詳見前卷。",
    "已收入卷五，題作「再用前韻」。",
    "此首已见前。",
    "按：此篇已載卷二十，文字小異。",
    "本詩與卷十六「再用前韻」重出。",
]
# Nothing decorates the line: no footnote, tooltip or inline link, one <poem> block.
PLAIN = {"notes": 0.99, "tooltip": 0.99, "inline-link": 0.99, "shape": 0.9}


def _one_line_page(line: str, shape: str) -> str:
    html = render_work(PageSpec("和子由四首", line, False), BASE, choices=PLAIN)
    assert html.count('<div class="poem">') == 1
    if shape == "paragraph":
        html = html.replace('<div class="poem">\n<p>', "<p>").replace("\n</p>\n</div>", "\n</p>")
    return html


@pytest.mark.parametrize("shape", ["poem", "paragraph"])
@pytest.mark.parametrize("line", CROSS_REFERENCES)
def test_a_page_that_is_one_cross_reference_line_is_a_stub(line, shape):
    page = parse_page(_one_line_page(line, shape), url_of("和子由四首"))
    assert page.stub == "cross-reference"
    assert page.text == ""


@pytest.mark.parametrize(
    "line",
    [
        "此詩有味君勿傳，空使時人怒生癭。",  # 和錢安道寄惠建茶
        "壽州已見白石塔，短棹未轉黃茅岡。",
        "農功各已收，歲事得相佐。",
        "丈夫重出處，不退要當前。",
        "見說吳中好風景，卷簾前看月中人。",
        "已見天吳出浪頭。",
        # Opens like a note (見上…), but four equal clauses are a quatrain, not an editor's sentence.
        "見上高樓望遠川，風吹雲散月當天。山前流水依然在，不見當年送客船。",
    ],
)
def test_short_poems_that_mention_seeing_or_this_poem_are_not_stubs(line):
    for shape in ("poem", "paragraph"):
        page = parse_page(_one_line_page(line, shape), url_of("和子由四首"))
        assert page.stub is None and page.text == line


def test_no_real_poem_of_the_corpus_is_a_cross_reference(catalog):
    real = [spec for spec in catalog.pages.values() if not spec.stub and not spec.synthetic]
    assert len(real) > 6000
    assert [spec.title for spec in real if is_cross_reference(spec.text)] == []
    # The whole path too, for every page short enough to be mistaken for a note.
    short = [spec for spec in real if "\n" not in spec.text and len(spec.text) <= 80]
    assert len(short) > 500
    for spec in short:
        page = parse_page(render_work(spec, BASE), url_of(spec.title))
        assert page.stub is None, (spec.title, spec.text)
