"""Write the corpus files from the state: works in index order, one record per page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scraper.corpus import Poem, write_corpus
from scraper.state import State


@dataclass(frozen=True, slots=True)
class ExportResult:
    works: int
    # Links that reached a page already exported (a redirect to a work also linked directly).
    same_page: int


def collect(state: State) -> tuple[list[Poem], int]:
    poems: list[Poem] = []
    seen: set[str] = set()
    same_page = 0
    for row in state.works():
        if row.canonical in seen:
            same_page += 1
            continue
        seen.add(row.canonical)
        poems.append(Poem(title=row.title, text=row.text, url=row.canonical, volume=row.volume))
    return poems, same_page


def remove_stale_temporaries(out_dir: Path) -> None:
    """A SIGKILL during an atomic write leaves its temporary file behind; it is garbage."""
    for name in ("poems.jsonl", "poems.html"):
        for tmp in out_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def export(state: State, out_dir: Path) -> ExportResult:
    poems, same_page = collect(state)
    write_corpus(poems, out_dir)
    remove_stale_temporaries(out_dir)
    return ExportResult(works=len(poems), same_page=same_page)
