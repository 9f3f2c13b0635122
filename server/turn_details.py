"""What a turn stores besides its reply (TurnRecord.details): the memories its prompt recalled and its search."""

from __future__ import annotations

import orjson

from server.protocols import Document, SearchOutcome


def turn_details(recalled: list[Document], search: SearchOutcome | None) -> str | None:
    """The memories a turn's prompt held and its search, as the turn stores them (TurnRecord.details).

    Memories by id only: their text is read when the turn is shown, so an edited or deleted memory never
    survives in an old turn's copy.
    """
    details: dict = {}
    if recalled:
        details["memories"] = [d.id for d in recalled]
    if search is not None and search.query:
        details["search"] = {"query": search.query, "summary": search.summary or "", "sources": list(search.sources),
                             "titles": list(search.titles), "skipped": search.skipped}
    return orjson.dumps(details).decode() if details else None


def memory_id(stored: int | dict) -> int:
    """A memory as a turn's details name it: its id (before ids only, a dict with its id and a copy)."""
    return int(stored["id"]) if isinstance(stored, dict) else int(stored)
