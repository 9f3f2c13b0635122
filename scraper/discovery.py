"""Find the works linked from a Wikisource collection index page.

Works are the links inside `<ol>` lists and inside `<small>` runs (some volumes of 東坡全集 are
only a run of links in small print). Volume labels are the list-item links outside those
(`卷一`, `補遺`, ...) and section headings. Red links are kept, flagged as missing, so the state
can account for them without fetching pages that do not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper.parse import check_complete
from scraper.urls import is_red_link, is_view_url, is_work_namespace, join_url, normalize_url, title_of

# Template furniture around the list: the header box, "see also" notes, licence and navigation.
_FURNITURE = "#headerContainer, .rellink, .licenseFrame, .licenseContainer, .ws-noexport, .navbox, .mw-editsection"
_WORK_CONTAINERS = frozenset({"ol", "small"})
_HEADINGS = frozenset({"h2", "h3", "h4"})
_WS = re.compile(r"\s+")


class DiscoveryError(ValueError):
    """The index page is not a MediaWiki page or lists no works."""


@dataclass(frozen=True, slots=True)
class WorkLink:
    url: str  # normalised key
    title: str
    volume: str | None
    missing: bool  # a red link: the page does not exist


@dataclass(frozen=True, slots=True)
class Discovery:
    links: list[WorkLink]  # first occurrence of every work, in page order
    duplicates: int  # further occurrences dropped


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _container(node: LexborNode, root: LexborNode) -> str | None:
    """`ol` or `small` when the node sits in one (a work), else `ul` when it sits in a list (a volume label)."""
    outer = None
    parent = node.parent
    while parent is not None and parent is not root and parent.tag != "html":
        if parent.tag in _WORK_CONTAINERS:
            return parent.tag
        if parent.tag == "ul" and outer is None:
            outer = "ul"
        parent = parent.parent
    return outer


def discover(html: str, base_url: str) -> Discovery:
    """Raises MalformedPage for a cut-short page, so the caller fetches it again rather than save a
    partial list."""
    check_complete(html)
    tree = LexborHTMLParser(html)
    root = tree.css_first("#mw-content-text .mw-parser-output") or tree.css_first(".mw-parser-output")
    if root is None:
        raise DiscoveryError(f"{base_url}: no div.mw-parser-output, so not a MediaWiki article page")
    for node in root.css(_FURNITURE):
        node.decompose()

    index_title = title_of(base_url) or ""
    host = urlsplit(base_url).hostname
    volume: str | None = None
    seen: set[str] = set()
    links: list[WorkLink] = []
    duplicates = 0
    for node in root.traverse():
        tag = node.tag
        if tag in _HEADINGS:
            label = _clean(node.text())
            volume = label or volume
            continue
        if tag != "a":
            continue
        href = (node.attributes.get("href") or "").strip()
        if not href or href.startswith("#"):
            continue
        try:
            url = normalize_url(href, base_url)
        except ValueError:
            continue
        if urlsplit(url).hostname != host:
            continue
        red = "new" in (node.attributes.get("class") or "").split() or is_red_link(href)
        # Edit forms, histories and old revisions of a page are not links to a work.
        if not red and not is_view_url(join_url(base_url, href)):
            continue
        title = title_of(url)
        if title is None or title == index_title or not is_work_namespace(title):
            continue
        container = _container(node, root)
        is_volume_link = title.startswith(index_title + "/") if index_title else False
        if container not in _WORK_CONTAINERS or is_volume_link:
            if container == "ul" or is_volume_link:
                volume = _clean(node.text()) or volume
            continue
        if url in seen:
            duplicates += 1
            continue
        seen.add(url)
        links.append(WorkLink(url=url, title=title, volume=volume, missing=red))
    return Discovery(links=links, duplicates=duplicates)
