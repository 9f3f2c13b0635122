"""Extract a work (title and text) from a rendered MediaWiki article page.

Text comes from every `div.poem` on the page (a page can hold several poems: 五首 are five
`div.poem`), else from the `<p>` elements of `div.mw-parser-output` (prose). Inside a poem a
`<br>` ends a line and a new `<p>` starts a stanza (blank line); in prose every `<p>` is one
line. Footnote markers, editorial furniture and hidden tooltip text are removed first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.urls import normalize_url

# Everything here is page furniture or apparatus, never part of the work's text.
_FURNITURE = ", ".join(
    (
        "#headerContainer",  # {{Header}}: title, author, previous/next navigation
        ".ws-noexport",
        ".noprint",
        ".mw-editsection",  # [编辑] links next to headings
        "sup.reference",  # footnote markers [1]
        ".mw-references-wrap",
        "ol.references",
        ".reference-text",
        ".licenseContainer",
        ".licenseFrame",
        ".licenseBanner",
        ".navbox",
        "#toc",
        ".toc",
        ".rellink",
        ".mw-empty-elt",
        ".tooltiptext",  # the hidden half of a variant-reading tooltip
        "[style*='display:none']",
        "[style*='display: none']",
        "style",
        "script",
        "link",
        "meta",
    )
)
_BLOCK = frozenset(
    {"div", "li", "dd", "dt", "dl", "ul", "ol", "table", "tr", "center", "blockquote", "h1", "h2", "h3", "h4"}
)
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")  # not \s: U+3000 is part of the text
_FOOTNOTE_MARK = re.compile(r"\[\d{1,3}\]")
_BLANKS = re.compile(r"\n{3,}")
# A whole page that is one editorial note, e.g. 〈（此詩卷十六已收，題：再用前韻。）〉.
_NOTE_ONLY = re.compile(r"〈?[（(][^（）()]*[）)]〉?")
_XREF = re.compile(r"已收|參見|参见|詳見|详见|見「|见「|見《|见《|重出|即卷")
_STUB_MAX_CHARS = 60
# A cross-reference note needs no link to be one: "此詩已收入他卷。", "見卷三十一。", "参见《…》。".
# Keywords alone are not enough (poems say 已見, 此詩, 重出 too), so the note must *open* as an
# editorial sentence: about this work (此詩…) or an instruction to look elsewhere (見卷…).
_WHERE = r"(?:[本前上下後后他別别另第「《〈“卷集]|[一二三四五六七八九十百]+卷)"  # 見前, 見卷三, 見「…」
_SEE = rf"(?:[參参詳详另互又亦已並并]?[見见]|即)(?:[於于在])?{_WHERE}"
_FILED = r"(?:[已既另又並并][收載载錄录](?:[入於于在錄录])?|收[入於于在錄录])"
_POINTER = rf"(?:{_SEE}|{_FILED}|重出|複出|复出)"
_THIS_WORK = r"[此本是右該该](?:詩|诗|詞|词|篇|首|文|作|章|闋|阕|帖|賦|赋|題|题|曲|則|则|條|条)"
_CROSS_REFERENCE = re.compile(
    rf"(?:(?:編者|编者)?[按案注註][:：]\s*)?"  # an optional editor's "note:"
    rf"(?:{_THIS_WORK}[^，。；,;：:]{{0,20}}?{_POINTER}|{_SEE}|{_FILED}.{{0,4}}?[卷集「《前上他別别]|重出|複出|复出)"
)
_BRACKETS = "〈〉（）()[]【】 \u3000"
_CLAUSE_END = re.compile(r"[，。；？！、,.;?!]")
_PARA = "\x00"  # stanza break marker while rendering, turned into a blank line


class MalformedPage(ValueError):
    """The document is not a complete MediaWiki article (truncated, or an error page)."""


@dataclass(frozen=True, slots=True)
class ParsedPage:
    title: str
    text: str  # empty for stubs
    canonical: str  # normalised URL of the page that holds the text (a redirect's target)
    stub: str | None = None  # why this page is a stub rather than a work


def normalize_text(text: str) -> str:
    """Lines stripped, at most one blank line between stanzas, none at either end."""
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n")


def _render(node: LexborNode, out: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            out.append(_HTML_SPACE.sub(" ", child.text_content or ""))
        elif tag == "br":
            out.append("\n")
        elif tag == "p":
            out.append(_PARA)
            _render(child, out)
            out.append(_PARA)
        elif tag in _BLOCK:
            out.append("\n")
            _render(child, out)
            out.append("\n")
        elif tag != "-comment":
            _render(child, out)


def _text_of(node: LexborNode, *, paragraph: str) -> str:
    out: list[str] = []
    _render(node, out)
    return normalize_text("".join(out).replace(_PARA, paragraph))


def _inside_poem(node: LexborNode, root: LexborNode) -> bool:
    parent = node.parent
    while parent is not None and parent is not root:
        if parent.tag == "div" and "poem" in (parent.attributes.get("class") or "").split():
            return True
        parent = parent.parent
    return False


def _title(tree: LexborHTMLParser) -> str:
    heading = tree.css_first("h1#firstHeading")
    if heading is None:
        raise MalformedPage("no h1#firstHeading: not a MediaWiki article page")
    main = heading.css_first("span.mw-page-title-main") or heading
    title = _HTML_SPACE.sub(" ", main.text()).strip()
    if not title:
        raise MalformedPage("empty page title")
    return title


def _looks_like_verse(line: str) -> bool:
    # Four or more clauses of one length is a quatrain (or longer), even one that opens with 見前…;
    # an editor's note never scans.
    clauses = [clause for clause in _CLAUSE_END.split(line) if clause]
    return len(clauses) >= 4 and len({len(clause) for clause in clauses}) == 1


def is_cross_reference(text: str) -> bool:
    """Whether `text` is nothing but a short editorial note saying the work is found elsewhere."""
    lines = [line.strip(_BRACKETS) for line in text.split("\n") if line.strip()]
    if not lines or sum(map(len, lines)) > _STUB_MAX_CHARS:
        return False
    return all(_CROSS_REFERENCE.match(line) and not _looks_like_verse(line) for line in lines)


def _stub_reason(text: str, paragraphs: list[LexborNode]) -> str | None:
    if not text:
        return "no text"
    if _NOTE_ONLY.fullmatch(text.replace("\n", "")):
        return "only an editorial note"
    if is_cross_reference(text):
        return "cross-reference"
    # A prose page whose one short line points, by a link in that very line, at where the work is.
    if (
        "\n" not in text
        and len(text) <= _STUB_MAX_CHARS
        and _XREF.search(text)
        and any("/wiki/" in (a.attributes.get("href") or "") for p in paragraphs for a in p.css("a"))
    ):
        return "cross-reference"
    return None


def check_complete(html: str) -> None:
    # A body cut short keeps its HTTP framing intact when the server closes early without a
    # Content-Length; the missing end tag is the only sign left.
    if "</html>" not in html[-4096:].lower():
        raise MalformedPage("document ends before </html> (truncated body)")


def parse_page(html: str, url: str) -> ParsedPage:
    check_complete(html)
    tree = LexborHTMLParser(html)
    title = _title(tree)
    root = tree.css_first("#mw-content-text .mw-parser-output") or tree.css_first(".mw-parser-output")
    if root is None:
        raise MalformedPage("no div.mw-parser-output: not a MediaWiki article page")
    canonical_node = tree.css_first("link[rel='canonical']")
    canonical_href = canonical_node.attributes.get("href") if canonical_node is not None else None
    try:
        canonical = normalize_url(canonical_href or url, url)
    except ValueError:
        canonical = normalize_url(url)

    for node in root.css(_FURNITURE):
        node.decompose()
    # A <poem> quoted inside another is part of the outer one's text, not a poem of its own.
    poems = [poem for poem in root.css("div.poem") if not _inside_poem(poem, root)]
    paragraphs: list[LexborNode] = []
    if poems:
        blocks = [_text_of(poem, paragraph="\n\n") for poem in poems]
        text = "\n\n".join(block for block in blocks if block)
    else:
        paragraphs = root.css("p")
        lines = [_text_of(p, paragraph="") for p in paragraphs]
        text = "\n".join(line for line in lines if line)
    text = normalize_text(_FOOTNOTE_MARK.sub("", text))
    stub = _stub_reason(text, paragraphs)
    return ParsedPage(title=title, text="" if stub else text, canonical=canonical, stub=stub)
