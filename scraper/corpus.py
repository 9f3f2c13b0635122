"""The corpus format shared by the scraper (writer) and the trainer (reader).

`poems.jsonl`: one `{"title", "text", "url", "volume"}` object per line.
`poems.html`: the original crawler's layout, `<li><p>title</p><p>poem</p></li>`.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from common.files import atomic_write


class CorpusError(ValueError):
    """The corpus file is missing, empty or not in a format we read."""


@dataclass(frozen=True, slots=True)
class Poem:
    title: str
    text: str
    url: str = ""
    volume: str | None = None


def _clean_text(raw: str) -> str:
    # poems.html indents every line; the poem's own line breaks are what matter.
    lines = [line.strip() for line in raw.replace("\r\n", "\n").split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def parse_poems_html(markup: str) -> list[Poem]:
    tree = HTMLParser(markup)
    poems = []
    for li in tree.css("li"):
        paragraphs = li.css("p")
        if not paragraphs:
            continue
        title = _clean_text(paragraphs[0].text(deep=True, separator=""))
        text = "\n".join(_clean_text(p.text(deep=True, separator="")) for p in paragraphs[1:]).strip("\n")
        poems.append(Poem(title=title, text=text))
    return poems


def read_jsonl(path: Path) -> list[Poem]:
    poems = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                poems.append(
                    Poem(
                        title=str(obj["title"]),
                        text=str(obj["text"]),
                        url=str(obj.get("url") or ""),
                        volume=obj.get("volume"),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorpusError(f"{path}:{number}: not a corpus record ({exc})") from exc
    return poems


def read_corpus(path: str | os.PathLike[str]) -> list[Poem]:
    """Read poems.jsonl or poems.html; raise CorpusError when there is nothing to read."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file not found: {path}")
    if path.suffix == ".jsonl":
        poems = read_jsonl(path)
    elif path.suffix in {".html", ".htm"}:
        poems = parse_poems_html(path.read_text(encoding="utf-8"))
    else:
        raise CorpusError(f"{path}: expected a .jsonl or .html corpus file")
    poems = [p for p in poems if p.text.strip()]
    if not poems:
        raise CorpusError(f"{path}: contains no poems")
    return poems


def to_jsonl(poems: Iterable[Poem]) -> str:
    return "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in poems)


def to_html(poems: Iterable[Poem]) -> str:
    parts = []
    for p in poems:
        parts.append(f"<li>\n<p>{html.escape(p.title, quote=False)}</p>\n<p>\n")
        parts.append("\n".join(html.escape(line, quote=False) for line in p.text.split("\n")))
        parts.append("\n</p>\n</li>\n")
    return "".join(parts)


def write_corpus(poems: list[Poem], out_dir: Path) -> None:
    atomic_write(out_dir / "poems.jsonl", to_jsonl(poems))
    atomic_write(out_dir / "poems.html", to_html(poems))
