"""A loopback Wikisource: the real 東坡全集 index page and poem pages rendered as MediaWiki renders them,
with injected faults. Used by the scraper tests and by bench/scraper_bench.py.

The poem pages are generated from ../shared/corpus/poems.html, matched to their index links through
poem_urls.txt (the order the original crawl visited them). Links the original crawl never wrote out
(the `<small>` volumes) get prose assembled from sentences of the corpus. The mirror knows, from the
data alone, what a correct crawl must produce: `Mirror.expected()`.

Run standalone (the bench does): python -m tests.scraper.mirror --port 0 --fault-rate 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import html
import json
import re
import signal
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import web
from selectolax.lexbor import LexborHTMLParser

from scraper.corpus import Poem, parse_poems_html

CORPUS_DIR = Path(__file__).resolve().parents[3] / "shared" / "corpus"
INDEX_TITLE = "東坡全集"
WIKI_HOST = "https://zh.wikisource.org"
UA_POLICY = re.compile(r"^\S+/\S+ \([^()]*\S[^()]*\) \S+/\S+")
FAULT_KINDS = ("503", "429", "500", "reset", "stall", "truncate", "cut")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) for the given parts: every decision here is reproducible."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def title_key(raw: str) -> str:
    """MediaWiki's title form for a decoded URL title: underscores are spaces."""
    return re.sub(r"[ _]+", " ", raw).strip()


def wiki_path(title: str) -> str:
    return "/wiki/" + quote(title.replace(" ", "_"), safe=";@$!*(),/~:")


def canon_text(text: str) -> str:
    """The text a correct scraper must produce: stripped lines, single blank lines between stanzas."""
    lines = [line.strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class PageSpec:
    title: str  # the page's own title (a redirect's target)
    text: str  # canonical text; "" for a page without text
    stub: bool  # a cross-reference stub: recorded, never emitted
    synthetic: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """One work link occurrence on the index page, in page order."""

    key: str  # title key of the link target
    volume: str
    red: bool
    in_small_run: bool


@dataclass
class Catalog:
    index_html: str
    pages: dict[str, PageSpec]  # by title key: every page the mirror can serve
    redirects: dict[str, str]  # link title key -> target title key
    links: list[Link]
    # Served index pages by the settings that shape them: building one takes a second.
    built: dict[tuple, _Index] = field(default_factory=dict, repr=False, compare=False)

    @property
    def stub_keys(self) -> set[str]:
        return {k for k, spec in self.pages.items() if spec.stub}


def _is_note_only(text: str) -> bool:
    return re.fullmatch(r"〈（[^〉]*）〉", text.replace("\n", "")) is not None


def _walk_index(tree: LexborHTMLParser) -> list[tuple[object, Link]]:
    """The index page's own structure: `<ul>` volume headings, then an `<ol>` of works; some volumes
    are a `<ul><li>` whose `<small>` run holds the works."""
    root = tree.css_first("div.mw-parser-output")
    out: list[tuple[object, Link]] = []
    volume = ""
    for block in root.iter():
        if block.tag == "ul":
            for li in block.css("li"):
                anchors = li.css("a")
                if not anchors:
                    continue
                volume = re.sub(r"\s+", " ", anchors[0].text()).strip()
                for a in li.css("small a"):
                    out.append((a, _link(a, volume, True)))
        elif block.tag == "ol":
            for a in block.css("a"):
                out.append((a, _link(a, volume, False)))
    return out


def _link(a, volume: str, in_small: bool) -> Link:
    href = a.attributes["href"]
    red = "redlink=1" in href
    raw = re.search(r"title=([^&]+)", href).group(1) if red else href.split("/wiki/", 1)[1]
    return Link(key=title_key(unquote(raw)), volume=volume, red=red, in_small_run=in_small)


def _prose_sentences(poems: list[Poem]) -> list[str]:
    sentences = []
    for poem in poems:
        if max((len(line) for line in poem.text.split("\n")), default=0) > 60:
            sentences.extend(s + "。" for s in re.split(r"。", poem.text.replace("\n", "")) if 6 <= len(s) <= 40)
    return sentences


@functools.lru_cache(maxsize=2)
def load_catalog(corpus_dir: Path = CORPUS_DIR) -> Catalog:
    index_html = (corpus_dir / "dongpo_index.html").read_text(encoding="utf-8")
    poems = parse_poems_html((corpus_dir / "poems.html").read_text(encoding="utf-8"))
    visited = [line.strip() for line in (corpus_dir / "poem_urls.txt").read_text().splitlines() if line.strip()]
    links = [link for _, link in _walk_index(LexborHTMLParser(index_html))]

    # poems.html holds one entry per visited blue link, in visit order, until the crawl stopped.
    pages: dict[str, PageSpec] = {}
    redirects: dict[str, str] = {}
    poem_iter = iter(poems)
    for url in visited:
        if "redlink=1" in url:
            continue
        poem = next(poem_iter, None)
        if poem is None:
            break
        key = title_key(unquote(url.split("/wiki/", 1)[1]))
        target = title_key(poem.title)
        text = canon_text(poem.text)
        spec = PageSpec(title=target, text=text, stub=not text or _is_note_only(text))
        if key != target:
            redirects[key] = target
        previous = pages.get(target)
        if previous is not None and previous != spec:
            raise AssertionError(f"two texts for {target!r} in poems.html")
        pages[target] = spec

    # The rest of the index (the <small> volumes) never reached poems.html: give them prose.
    sentences = _prose_sentences(poems)
    for link in links:
        if link.red or link.key in pages or link.key in redirects:
            continue
        count = 2 + int(_unit("len", link.key) * 5)
        start = int(_unit("start", link.key) * (len(sentences) - 12))
        paragraphs = ["".join(sentences[start + i * 2 : start + i * 2 + 2]) for i in range(count)]
        pages[link.key] = PageSpec(title=link.key, text="\n".join(paragraphs), stub=False, synthetic=True)
    return Catalog(index_html=index_html, pages=pages, redirects=redirects, links=links)


# ---------------------------------------------------------------------------------------- rendering

_NOTE = re.compile(r"(〈[^〉]*〉)")


def _decorate(line: str, marks: dict[str, object]) -> str:
    """A line of text as MediaWiki would render it: notes in small print, plus the apparatus in `marks`."""
    parts = []
    for i, piece in enumerate(_NOTE.split(line)):
        if not piece:
            continue
        if i % 2:
            parts.append(f'<span style="font-size:smaller;">{html.escape(piece, quote=False)}</span>')
            continue
        body = html.escape(piece, quote=False)
        if "tooltip" in marks and len(piece) > 2:
            # A variant reading: the dotted character shows the alternative on hover only.
            ch, alt = html.escape(piece[1]), html.escape(str(marks.pop("tooltip")))
            if marks.get("tip-hidden", True):
                hidden = f'<span class="tooltiptext">一作：{alt}</span>'
                tip = f'<span class="tooltip" title="一作：{alt}">{ch}{hidden}</span>'
            else:
                tip = f'<span title="一作：{alt}" style="border-bottom:1px dotted; cursor:help">{ch}</span>'
            body = html.escape(piece[0], quote=False) + tip + html.escape(piece[2:], quote=False)
        if "link" in marks and len(piece) > 3:
            target = str(marks.pop("link"))
            body = f'<a href="{wiki_path(target)}" title="{html.escape(target)}">{body}</a>'
        parts.append(body)
    if "footnote" in marks:
        n = marks.pop("footnote")
        if n % 3 == 0:  # some templates write a bare [N] anchor instead of sup.reference
            parts.append(f'<a href="#cite_note-{n}">[{n}]</a>')
        else:
            parts.append(f'<sup id="cite_ref-{n}" class="reference"><a href="#cite_note-{n}">&#91;{n}&#93;</a></sup>')
    return "".join(parts)


def _edit_link(title: str, section: int, heading: str) -> str:
    return (
        '<span class="mw-editsection"><span class="mw-editsection-bracket">[</span>'
        f'<a href="/w/index.php?title={quote(title)}&amp;action=edit&amp;section={section}" '
        f'title="编辑章节：{html.escape(heading)}">编辑</a>'
        '<span class="mw-editsection-bracket">]</span></span>'
    )


def _heading(level: int, text: str, title: str, section: int) -> str:
    return (
        f'<h{level}><span class="mw-headline" id="{quote(text)}">{html.escape(text)}</span>'
        f"{_edit_link(title, section, text)}</h{level}>\n"
    )


def _header(title: str, volume: str) -> str:
    return (
        '<div id="headerContainer"><table style="width:100%; margin-top:0px;margin-bottom:3px;'
        'border:1px solid #93A6C0; background-color: #F9F9F9; text-align:center;"><tbody><tr>'
        f'<td style="width:25%; text-align:left; font-size:small;"><a href="{wiki_path(INDEX_TITLE)}" '
        f'title="{INDEX_TITLE}">←{INDEX_TITLE}</a></td>'
        f'<td style="width:50%;"><b>{html.escape(title)}</b><br />'
        '<span style="color:#999999">作者：</span><a href="/wiki/Author:%E8%98%87%E8%BB%BE" '
        'title="Author:蘇軾">蘇軾</a> <span style="color:#999999">北宋</span></td>'
        '<td style="width:25%; text-align:right; font-size:small;"></td></tr></tbody></table>'
        f'<div class="header_notes"><p>本作品收錄於《<a href="{wiki_path(INDEX_TITLE)}">{INDEX_TITLE}</a>》'
        f"{html.escape(volume)}</p></div></div>\n"
    )


def _licence(table: bool) -> str:
    if table:
        return (
            '<table class="licenseFrame" style="border-collapse:collapse; width:100%;"><tbody><tr>'
            '<td style="width:100%; padding:0.5em;">本北宋作品在全世界都属于<b><a class="extiw" '
            'href="https://zh.wikipedia.org/wiki/%E5%85%AC%E6%9C%89%E9%A2%86%E5%9F%9F" title="w:公有领域">'
            "公有领域</a></b>，因为作者逝世已经遠遠超过100年。</td></tr></tbody></table>\n"
        )
    return (
        '<div class="licenseContainer licenseBanner"><p>本作品在全世界都属于<b>公有领域</b>，'
        "因为作者逝世已经超过100年，并且于1929年1月1日之前出版。</p></div>\n"
    )


def _footer() -> str:
    return (
        '<table style="width:100%; margin-top:1em; border-top:1px solid #93A6C0;"><tbody><tr>'
        '<td width="20%"></td><td style="text-align:center;"><a href="#top">↑返回頂部</a></td>'
        '<td align="right" width="20%"></td></tr></tbody></table>\n'
    )


def _page(title: str, body: str, base: str, *, redirected_from: str | None = None, status_note: str = "") -> str:
    sub = ""
    if redirected_from:
        sub = (
            '<span class="mw-redirectedfrom">（重定向自<a href="/w/index.php?title='
            f'{quote(redirected_from)}&amp;redirect=no" class="mw-redirect" title="{html.escape(redirected_from)}">'
            f"{html.escape(redirected_from)}</a>）</span>"
        )
    esc = html.escape(title)
    path = wiki_path(title)
    return (
        '<!DOCTYPE html>\n<html class="client-nojs" lang="zh" dir="ltr">\n<head>\n<meta charset="UTF-8"/>\n'
        f"<title>{esc} - 维基文库，自由的图书馆</title>\n"
        f'<script>RLCONF={{"wgPageName":{json.dumps(title.replace(" ", "_"), ensure_ascii=False)},'
        '"wgNamespaceNumber":0,"wgAction":"view","wgIsRedirect":false};</script>\n'
        f'<link rel="canonical" href="{base}{path}"/>\n'
        f'<link rel="alternate" type="application/x-wiki" title="编辑" href="/w/index.php?title={quote(title)}'
        '&amp;action=edit"/>\n</head>\n'
        f'<body class="mediawiki ltr sitedir-ltr ns-0 ns-subject page-{quote(title)} skin-vector action-view">'
        '<div id="mw-page-base" class="noprint"></div><div id="mw-head-base" class="noprint"></div>\n'
        '<div id="content" class="mw-body" role="main"><a id="top"></a><div id="siteNotice"></div>\n'
        '<div class="mw-indicators"></div>\n'
        f'<h1 id="firstHeading" class="firstHeading mw-first-heading"><span class="mw-page-title-main">{esc}'
        "</span></h1>\n"
        '<div id="bodyContent" class="vector-body"><div id="siteSub" class="noprint">維基文庫，自由的圖書館</div>\n'
        f'<div id="contentSub"><div id="mw-content-subtitle">{sub}</div></div><div id="contentSub2"></div>\n'
        '<a class="mw-jump-link" href="#mw-head">跳到导航</a> '
        '<a class="mw-jump-link" href="#searchInput">跳到搜索</a>\n'
        '<div id="mw-content-text" class="mw-body-content mw-content-ltr" lang="zh" dir="ltr">'
        f'<div class="mw-parser-output">{body}{status_note}'
        "<!-- \nNewPP limit report\nParsed by mw-mirror\nCPU time usage: 0.012 seconds\n-->\n</div>"
        f'<div class="printfooter" data-nosnippet="">取自“<a dir="ltr" href="{base}/w/index.php?title='
        f'{quote(title)}&amp;oldid=1">{base}{path}</a>”</div></div>\n'
        '<div id="catlinks" class="catlinks" data-mw="interface"><div id="mw-normal-catlinks" '
        'class="mw-normal-catlinks"><a href="/wiki/Special:%E9%A1%B5%E9%9D%A2%E5%88%86%E7%B1%BB" '
        'title="Special:页面分类">分类</a>：<ul><li><a href="/wiki/Category:%E5%8C%97%E5%AE%8B" '
        'title="Category:北宋">北宋</a></li></ul></div></div></div></div>\n'
        '<div id="mw-navigation"><h2>导航菜单</h2><div id="mw-panel"><ul><li><a href="/wiki/'
        '%E9%A6%96%E9%A1%B5">首页</a></li><li><a href="/wiki/Special:%E9%9A%8F%E6%9C%BA%E9%A1%B5%E9%9D%A2">'
        "随机作品</a></li></ul></div></div>\n"
        '<div id="footer" class="mw-footer" role="contentinfo"><ul id="footer-info"><li id="footer-info-lastmod">'
        "本页面最后修订于2023年7月23日 (星期日) 16:04。</li><li>文本按照知识共享 署名-相同方式共享许可协议授权提供。"
        "</li></ul></div>\n</body>\n</html>\n"
    )


def render_work(
    spec: PageSpec,
    base: str,
    volume: str = "",
    redirected_from: str | None = None,
    choices: dict[str, float] | None = None,
) -> str:
    """One page in the shapes MediaWiki produces: `<poem>` blocks (one or several), or prose paragraphs.

    Every shape and decoration is picked by a hash of the title; `choices` pins some picks
    (values in [0, 1)), so tests can ask for, say, several poems with footnotes.
    """
    title = spec.title
    choices = choices or {}

    def pick(name: str, *extra: object) -> float:
        return choices[name] if name in choices else _unit(title, name, *extra)

    body = [_header(title, volume)]
    notes: list[str] = []
    if spec.stub:
        # A cross-reference stub: the note names where the work really is.
        ref = re.search(r"「([^」]+)」", title)
        if spec.text:
            body.append(f'<div class="poem"><p>{_decorate(spec.text.replace(chr(10), ""), {})}\n</p></div>\n')
        elif ref:
            body.append(
                f'<p>此詩{"已收" if "已收" in title else "重出"}，見「<a href="{wiki_path(ref.group(1))}">'
                f"{html.escape(ref.group(1))}</a>」。\n</p>\n"
            )
        body.append(_licence(pick("licence") < 0.5) + _footer())
        return _page(title, "".join(body), base, redirected_from=redirected_from)

    lines = spec.text.split("\n")
    marks_at: dict[int, dict[str, object]] = {}
    footnotes = 1 + int(pick("n-notes") * 3) if pick("notes") < 0.25 else 0
    for n in range(1, footnotes + 1):
        marks_at.setdefault(int(pick("note-at", n) * len(lines)), {})["footnote"] = n
        notes.append(f"原本作「{lines[int(pick('note-at', n) * len(lines))][:2]}」。")
    if pick("tooltip") < 0.15:
        marks = marks_at.setdefault(int(pick("tip-at") * len(lines)), {})
        marks["tooltip"] = "之"
        marks["tip-hidden"] = pick("tip-style") < 0.5
    if pick("inline-link") < 0.05:
        marks_at.setdefault(0, {})["link"] = INDEX_TITLE

    decorated = [_decorate(line, dict(marks_at.get(i, {}))) if line else "" for i, line in enumerate(lines)]
    blocks: list[list[str]] = [[]]
    for line, rendered in zip(lines, decorated, strict=True):
        if line:
            blocks[-1].append(rendered)
        elif blocks[-1]:
            blocks.append([])

    prose = len(blocks) == 1 and max(len(line) for line in lines) > 60
    if prose:
        body.extend(f"<p>{rendered}\n</p>\n" for rendered in decorated)
    else:
        shape = pick("shape")
        if len(blocks) > 1 and shape < 0.4:
            # Several poems on one page (其一, 其二, ...), each its own <poem>, headed by a section.
            for i, block in enumerate(blocks, 1):
                if pick("headed") < 0.7:
                    body.append(_heading(3, f"其{i}", title, i))
                body.append('<div class="poem">\n<p>' + "<br />\n".join(block) + "\n</p>\n</div>\n")
        elif len(blocks) > 1 and shape < 0.7:
            paragraphs = "".join("<p>" + "<br />\n".join(block) + "\n</p>\n" for block in blocks)
            body.append(f'<div class="poem">\n{paragraphs}</div>\n')
        else:
            # A blank line inside one <p> is rendered as an empty <br />.
            body.append('<div class="poem">\n<p>' + "<br />\n".join(decorated) + "\n</p>\n</div>\n")
    if notes:
        body.append(_heading(2, "注釋", title, len(blocks) + 1))
        items = "".join(
            f'<li id="cite_note-{n}"><span class="mw-cite-backlink"><b><a href="#cite_ref-{n}">^</a></b></span> '
            f'<span class="reference-text">{html.escape(text)}</span></li>\n'
            for n, text in enumerate(notes, 1)
        )
        body.append(f'<div class="mw-references-wrap"><ol class="references">\n{items}</ol></div>\n')
    body.append(_licence(pick("licence") < 0.5) + _footer())
    return _page(title, "".join(body), base, redirected_from=redirected_from)


def render_missing(title: str, base: str) -> str:
    note = (
        '<div class="noarticletext mw-content-ltr"><p>本站目前沒有以此為題的頁面。您可以在其他頁面中'
        f'<a href="/wiki/Special:Search/{quote(title)}">搜索此頁面標題</a>。</p></div>'
    )
    return _page(title, note, base)


# ------------------------------------------------------------------------------------------- mirror


@dataclass(frozen=True)
class MirrorConfig:
    # Share of index links served (1.0: the whole page). Notable links (stubs, redirects, red links,
    # duplicates, several-poem pages, the <small> volumes) are always kept so a subset still covers them.
    sample: float = 1.0
    seed: int = 0
    fault_rate: float = 0.0  # share of requests answered with a fault, on each page's first attempts
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    max_faults_per_page: int = 2
    retry_after: int = 1
    stall_s: float = 3.0
    gone_rate: float = 0.0  # blue links whose page has since been deleted: 404 for good
    always_fail: frozenset[str] = frozenset()  # title keys answered 503 every time
    disallow_count: int = 0  # pages robots.txt forbids
    link_variants: bool = True  # write repeated links in other spellings of the same URL
    latency_s: float = 0.0
    require_user_agent: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0 < self.sample <= 1:
            raise ValueError("sample must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class Served:
    seq: int
    run: int
    key: str  # title key, or the path for non-page requests
    outcome: str  # "ok", "404", "403" or a fault kind
    at: float


@dataclass
class Expected:
    works: list[Poem]  # url holds the decoded mirror URL
    stubs: list[str]
    missing: list[str]  # red links and deleted pages
    disallowed: list[str]
    blue_links: int = 0  # distinct pages a crawler fetches

    @property
    def titles(self) -> list[str]:
        return [p.title for p in self.works]


@dataclass
class _Index:
    html: str
    links: list[Link]
    gone: frozenset[str]
    disallowed: frozenset[str]


class Mirror:
    def __init__(self, config: MirrorConfig | None = None, catalog: Catalog | None = None) -> None:
        self.config = config or MirrorConfig()
        self.catalog = catalog or load_catalog()
        self._index = self._build_index()
        self.always_fail = set(self.config.always_fail)
        self._volumes: dict[str, str] = {}
        for link in self._index.links:
            self._volumes.setdefault(link.key, link.volume)
        self.base_url = ""
        self.run = 0
        self.log: list[Served] = []
        self.user_agents: set[str] = set()
        self.inflight = 0
        self.max_inflight = 0
        self._attempts: Counter[str] = Counter()
        self._cache: dict[str, bytes] = {}
        self._index_bytes = b""
        self._runner: web.AppRunner | None = None

    # ---- what the served index holds

    def _notable(self) -> set[str]:
        cat = self.catalog
        counts = Counter(link.key for link in cat.links)
        stanza_pages = [k for k, s in cat.pages.items() if "\n\n" in s.text and not s.stub]
        prose_pages = [k for k, s in cat.pages.items() if not s.stub and max(map(len, s.text.split("\n"))) > 60]
        notable = set(cat.stub_keys) | set(cat.redirects) | set(cat.redirects.values())
        notable |= set([link.key for link in cat.links if link.red][:12])
        notable |= set([k for k, n in counts.items() if n > 1][:25])
        notable |= set([link.key for link in cat.links if link.in_small_run][:24])
        notable |= set(stanza_pages[:30]) | set(prose_pages[:20])
        return notable

    def _build_index(self) -> _Index:
        cfg = self.config
        key = (cfg.sample, cfg.seed, cfg.link_variants, cfg.gone_rate, cfg.disallow_count, cfg.always_fail)
        if key not in self.catalog.built:
            self.catalog.built[key] = self._trim_index()
        return self.catalog.built[key]

    def _trim_index(self) -> _Index:
        cfg = self.config
        tree = LexborHTMLParser(self.catalog.index_html)
        notable = self._notable() if cfg.sample < 1 else set()
        kept: list[Link] = []
        seen: Counter[str] = Counter()
        for node, link in _walk_index(tree):
            if cfg.sample < 1 and link.key not in notable and _unit("sample", cfg.seed, link.key) >= cfg.sample:
                parent = node.parent
                while parent is not None and parent.tag not in ("li", "small"):
                    parent = parent.parent
                (parent if parent is not None and parent.tag == "li" and not link.in_small_run else node).decompose()
                continue
            kept.append(link)
            seen[link.key] += 1
            if cfg.link_variants and seen[link.key] > 1 and not link.red:
                node.attrs["href"] = self._variant(link.key, seen[link.key])
        blue = list(dict.fromkeys(link.key for link in kept if not link.red))
        ordinary = [k for k in blue if k not in self.catalog.stub_keys and k not in self.catalog.redirects]
        gone = frozenset(k for k in ordinary if _unit("gone", cfg.seed, k) < cfg.gone_rate)
        candidates = [k for k in ordinary if k not in gone and k not in cfg.always_fail]
        disallowed = frozenset(candidates[len(candidates) // 2 :][: cfg.disallow_count])
        return _Index(html=tree.html, links=kept, gone=gone, disallowed=disallowed)

    def _variant(self, key: str, nth: int) -> str:
        """Other spellings MediaWiki and editors use for the same page."""
        underscored = key.replace(" ", "_")
        forms = [
            "/w/index.php?title=" + quote(underscored),
            re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), wiki_path(key)),
            "/wiki/" + underscored,
            wiki_path(key) + "#" + quote("其一"),
            "__BASE__" + wiki_path(key),
            "/wiki/" + quote(key),  # spaces as %20
        ]
        return forms[int(_unit("variant", key, nth) * len(forms))]

    @property
    def index_url(self) -> str:
        return self.base_url + wiki_path(INDEX_TITLE)

    def expected(self) -> Expected:
        """What a correct crawl of the served index yields, derived from the data, not from the scraper."""
        idx = self._index
        cat = self.catalog
        works: list[Poem] = []
        stubs, missing, disallowed = [], [], []
        seen: set[str] = set()
        emitted: set[str] = set()
        blue = 0
        for link in idx.links:
            if link.key in seen:
                continue
            seen.add(link.key)
            if link.red:
                missing.append(link.key)
                continue
            blue += 1
            if link.key in idx.gone:
                missing.append(link.key)
                continue
            if link.key in idx.disallowed:
                disallowed.append(link.key)
                continue
            spec = cat.pages[cat.redirects.get(link.key, link.key)]
            if spec.stub:
                stubs.append(link.key)
                continue
            if spec.title in emitted:
                continue
            emitted.add(spec.title)
            works.append(
                Poem(
                    title=spec.title,
                    text=spec.text,
                    url=unquote(self.base_url + wiki_path(spec.title)),
                    volume=link.volume,
                )
            )
        return Expected(works=works, stubs=stubs, missing=missing, disallowed=disallowed, blue_links=blue)

    # ---- serving

    def robots_txt(self) -> str:
        lines = [
            "# robots.txt of the loopback Wikisource mirror",
            "User-agent: MJ12bot",
            "Disallow: /",
            "",
            "User-agent: *",
            "Disallow: /w/",
            "Disallow: /api/",
            "Disallow: /wiki/Special:",
            "Disallow: /wiki/%E7%89%B9%E6%AE%8A:",
        ]
        lines += [f"Disallow: {wiki_path(k)}" for k in sorted(self._index.disallowed)]
        return "\n".join(lines) + "\n"

    def _page_bytes(self, key: str) -> bytes | None:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        cat = self.catalog
        target = cat.redirects.get(key)
        spec = cat.pages.get(target or key)
        if spec is None:
            return None
        volume = self._volumes.get(key, "")
        page = render_work(spec, self.base_url, volume, redirected_from=key if target else None).encode()
        self._cache[key] = page
        return page

    def prerender(self) -> None:
        for link in self._index.links:
            if not link.red:
                self._page_bytes(link.key)

    def reset(self) -> None:
        """Forget attempts and the log, so the next crawl meets the same faults as the last one."""
        self._attempts.clear()
        self.log.clear()
        self.max_inflight = 0

    def _fault(self, key: str) -> str | None:
        cfg = self.config
        attempt = self._attempts[key]
        self._attempts[key] += 1
        if key in self.always_fail:
            return "503"
        if attempt >= cfg.max_faults_per_page or not cfg.fault_rate:
            return None
        if _unit("fault", cfg.seed, key, attempt) >= cfg.fault_rate:
            return None
        kinds = cfg.fault_kinds
        return kinds[int(_unit("kind", cfg.seed, key, attempt) * len(kinds))]

    def _record(self, key: str, outcome: str) -> None:
        self.log.append(Served(len(self.log), self.run, key, outcome, time.monotonic()))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._serve(request)
        finally:
            self.inflight -= 1

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/robots.txt":
            self._record(path, "ok")
            return web.Response(text=self.robots_txt(), content_type="text/plain")
        ua = request.headers.get("User-Agent", "")
        self.user_agents.add(ua)
        if self.config.require_user_agent and not UA_POLICY.match(ua):
            self._record(path, "403")
            return web.Response(status=403, text="Please set a user-agent and respect our robot policy.")
        if path.startswith("/wiki/"):
            key = title_key(path[len("/wiki/") :])
        elif path == "/w/index.php" and "title" in request.query and set(request.query) <= {"title", "redirect"}:
            key = title_key(request.query["title"])
        else:
            self._record(path, "404")
            return web.Response(status=404, text="no such path")
        if self.config.latency_s:
            await asyncio.sleep(self.config.latency_s)
        fault = self._fault(key)
        if fault:
            self._record(key, fault)
            return await self._inject(request, fault, key)
        if key == INDEX_TITLE:
            body = self._index_bytes
        elif key in self._index.gone:
            self._record(key, "404")
            return web.Response(status=404, body=render_missing(key, self.base_url).encode(), content_type="text/html")
        else:
            body = self._page_bytes(key)
            if body is None:
                self._record(key, "404")
                return web.Response(
                    status=404, body=render_missing(key, self.base_url).encode(), content_type="text/html"
                )
        self._record(key, "ok")
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    async def _inject(self, request: web.Request, fault: str, key: str) -> web.StreamResponse:
        retry_after = {"Retry-After": str(self.config.retry_after)}
        if fault == "503":
            return web.Response(status=503, text="Service Unavailable", headers=retry_after)
        if fault == "429":
            return web.Response(status=429, text="Too Many Requests", headers=retry_after)
        if fault == "500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "stall":
            await asyncio.sleep(self.config.stall_s)
            return web.Response(status=504, text="stalled")
        transport = request.transport
        if transport is None:
            return web.Response(status=500)
        if fault == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: the kernel answers with RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return web.Response(status=500)
        body = self._index_bytes if key == INDEX_TITLE else (self._page_bytes(key) or b"")
        if fault == "truncate":  # fewer bytes than Content-Length promised
            resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            transport.abort()
            return resp
        # "cut": no Content-Length, the connection closes early; valid HTTP, an incomplete document
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n"
        transport.write(head + body[: len(body) // 2])
        transport.close()
        return web.Response(status=500)

    async def _control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action == "reset":
            self.reset()
            return web.json_response({"ok": True})
        if action == "stats":
            outcomes = Counter(s.outcome for s in self.log)
            last = {s.key: s.outcome for s in self.log if s.key != "/robots.txt"}
            return web.json_response(
                {
                    "requests": len(self.log),
                    "outcomes": outcomes,
                    "pages": len(last),
                    # Pages whose last answer was whole (a page, or a 404): the rest were given up on,
                    # or accepted cut short.
                    "pages_answered": sum(outcome in ("ok", "404") for outcome in last.values()),
                    "max_inflight": self.max_inflight,
                    "user_agents": sorted(self.user_agents),
                }
            )
        if action == "expected":
            exp = self.expected()
            return web.json_response({"works": len(exp.works), "blue_links": exp.blue_links})
        return web.json_response({"error": "unknown action"}, status=404)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Mirror:
        app = web.Application()
        app.router.add_route("*", "/__mirror__/{action}", self._control)
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        self._cache.clear()
        self._index_bytes = (
            self._index.html.replace(WIKI_HOST, self.base_url).replace("__BASE__", self.base_url).encode()
        )
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Mirror:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ------------------------------------------------------------------------------------ standalone


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the loopback Wikisource mirror until SIGTERM or SIGINT.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sample", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--stall", type=float, default=3.0)
    parser.add_argument("--gone-rate", type=float, default=0.0)
    parser.add_argument("--no-link-variants", action="store_true")
    args = parser.parse_args(argv)
    config = MirrorConfig(
        sample=args.sample,
        seed=args.seed,
        fault_rate=args.fault_rate,
        retry_after=args.retry_after,
        stall_s=args.stall,
        gone_rate=args.gone_rate,
        link_variants=not args.no_link_variants,
    )

    async def serve() -> None:
        mirror = await Mirror(config).start(args.host, args.port)
        mirror.prerender()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {mirror.index_url}", flush=True)
        await stop.wait()
        await mirror.stop()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:  # pragma: no cover
        asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(_main())


__all__ = [
    "CORPUS_DIR",
    "FAULT_KINDS",
    "Catalog",
    "Expected",
    "Mirror",
    "MirrorConfig",
    "PageSpec",
    "canon_text",
    "load_catalog",
    "render_work",
    "title_key",
    "wiki_path",
]
