"""Normalised MediaWiki URLs: the key under which a page is crawled, stored and de-duplicated.

The same page is linked in many spellings (`/wiki/X`, `/w/index.php?title=X`, upper or lower
percent-escapes, spaces or underscores, a `#section`, the mobile host, a `/zh-hant/` variant path).
All of them must map to one key, or the page is fetched and emitted twice.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, unquote, urljoin, urlsplit, urlunsplit

# Characters MediaWiki leaves unescaped in article paths (wfUrlencode); matching it keeps our keys
# identical to the hrefs MediaWiki itself writes, which makes logs and state easy to compare.
_TITLE_SAFE = ";@$!*(),/~:"
_ARTICLE_PATH = re.compile(r"^/(?:wiki|zh(?:-[a-z]{2,4})?)/(?P<title>.+)$")
_MOBILE_HOST = re.compile(r"^(?P<lang>[a-z0-9-]+)\.m\.(?P<site>[a-z]+\.org)$")
_SPACES = re.compile(r"[ _]+")

# Namespaces whose pages are never works (English canonical names and zh-wikisource local ones).
_NON_WORK_NAMESPACES = frozenset(
    name.casefold()
    for name in [
        *("Talk", "User", "User_talk", "Wikisource", "Project", "File", "Image", "MediaWiki", "Template"),
        *("Help", "Category", "Special", "Media", "Portal", "Author", "Page", "Index", "Module"),
        *("Translation", "TimedText", "Gadget", "Topic", "Draft"),
        *("作者", "作者討論", "作者讨论", "分類", "分类", "模板", "模板討論", "特殊", "檔案", "文件"),
        *("幫助", "帮助", "維基文庫", "维基文库", "主題", "主题", "頁面", "页面", "索引", "使用者", "用户"),
    ]
)


def canonical_title(title: str) -> str:
    """MediaWiki's title form: underscores are spaces, runs collapse, the first letter is upper-case."""
    title = _SPACES.sub(" ", title).strip()
    first = title[:1]
    # MediaWiki capitalises the first letter ($wgCapitalLinks); CJK titles are unaffected.
    if first and len(first.upper()) == 1:
        title = first.upper() + title[1:]
    return title


def quote_title(title: str) -> str:
    return quote(canonical_title(title).replace(" ", "_"), safe=_TITLE_SAFE)


def _page_title(path: str, query: str) -> str | None:
    match = _ARTICLE_PATH.match(path)
    if match:
        return canonical_title(unquote(match.group("title")))
    if path.endswith("/index.php"):
        values = parse_qs(query, keep_blank_values=True)
        titles = values.get("title")
        if titles and titles[0].strip():
            return canonical_title(titles[0])
    return None


def title_of(url: str) -> str | None:
    """The page title a URL points at, or None when it is not an article URL."""
    parts = urlsplit(url)
    return _page_title(parts.path, parts.query)


def is_red_link(url: str) -> bool:
    """MediaWiki marks links to pages that do not exist with `action=edit&redlink=1`."""
    return parse_qs(urlsplit(url).query).get("redlink") == ["1"]


def is_view_url(url: str) -> bool:
    """True for a plain view of a page; edit forms, histories and old revisions are not works."""
    parts = urlsplit(url)
    if _ARTICLE_PATH.match(parts.path):
        return True
    if not parts.path.endswith("/index.php"):
        return False
    keys = set(parse_qs(parts.query, keep_blank_values=True)) - {"title", "variant", "redirect"}
    return not keys


def is_work_namespace(title: str) -> bool:
    prefix, sep, _ = title.partition(":")
    if not sep:
        return True
    return prefix.strip().replace(" ", "_").casefold() not in _NON_WORK_NAMESPACES


def join_url(base: str, href: str) -> str:
    # urljoin drops a trailing ';' as empty RFC 1808 params, and ';' is legal in a title.
    if urlsplit(href).scheme:
        return href
    base_parts = urlsplit(base)
    if href.startswith("//"):
        return f"{base_parts.scheme}:{href}"
    if href.startswith("/"):
        return f"{base_parts.scheme}://{base_parts.netloc}{href}"
    return urljoin(base, href)


def normalize_url(href: str, base: str | None = None) -> str:
    """The key for `href` (resolved against `base`): lower-case host, no fragment, `/wiki/<title>`."""
    if not href or not href.strip():
        raise ValueError("empty URL")
    url = join_url(base, href.strip()) if base else href.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"URL without a host: {url!r}")
    mobile = _MOBILE_HOST.match(host)
    if mobile:
        host = f"{mobile['lang']}.{mobile['site']}"
    netloc = host if parts.port in (None, 80 if scheme == "http" else 443) else f"{host}:{parts.port}"
    title = _page_title(parts.path, parts.query)
    if title is not None:
        return urlunsplit((scheme, netloc, "/wiki/" + quote_title(title), "", ""))
    path = quote(unquote(parts.path or "/"), safe="/" + _TITLE_SAFE + "%")
    return urlunsplit((scheme, netloc, path, parts.query, ""))
