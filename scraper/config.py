"""Crawl settings: one validated, immutable object shared by the CLI, the crawler and the bench."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from scraper import __version__
from scraper.urls import normalize_url

TOOL_NAME = "dongpo-scraper"
DEFAULT_INDEX_URL = "https://zh.wikisource.org/wiki/%E6%9D%B1%E5%9D%A1%E5%85%A8%E9%9B%86"
DEFAULT_OUT_DIR = Path("data/corpus")
# Wikimedia's published guidance for unauthenticated crawlers; both are polite upper bounds.
DEFAULT_CONCURRENCY = 2
DEFAULT_RATE = 5.0
_WIKIMEDIA_HOSTS = ("wikisource.org", "wikipedia.org", "wikimedia.org", "wiktionary.org", "wikidata.org")


class ConfigError(ValueError):
    """A setting is out of range or inconsistent; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CrawlConfig:
    index_url: str = DEFAULT_INDEX_URL
    out_dir: Path = DEFAULT_OUT_DIR
    resume: bool = False
    force: bool = False
    export_only: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    # Requests per second across all connections; None or 0 switches the limit off.
    rate: float | None = DEFAULT_RATE
    contact: str = field(default_factory=lambda: os.environ.get("SCRAPER_CONTACT", ""))
    # Seconds without a byte from the server before a request counts as stalled.
    timeout: float = 30.0
    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    # A Retry-After longer than this is not waited out within the run: the page is left for --resume.
    max_retry_after: float = 300.0
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        try:
            object.__setattr__(self, "index_url", normalize_url(self.index_url))
        except ValueError as exc:
            raise ConfigError(f"--index-url: {exc}") from None
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.rate is not None and self.rate < 0:
            raise ConfigError(f"--rate must be positive (or 0 for no limit), got {self.rate}")
        if self.rate == 0:
            object.__setattr__(self, "rate", None)
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.backoff_initial < 0 or self.backoff_max < self.backoff_initial:
            raise ConfigError("backoff must satisfy 0 <= backoff_initial <= backoff_max")
        if self.resume and self.force:
            raise ConfigError("--resume continues the saved crawl and --force discards it: pick one")
        contact = self.contact.strip()
        if any(c in contact for c in "()\r\n"):
            raise ConfigError("--contact must not contain parentheses or line breaks (it goes in the User-Agent)")
        object.__setattr__(self, "contact", contact)
        if not contact and self.targets_wikimedia and not self.export_only:
            raise ConfigError(
                "Wikimedia requires a contact in the User-Agent of every crawler and answers 403 to "
                "anonymous ones: pass --contact you@example.org (or a URL), or set SCRAPER_CONTACT"
            )

    @property
    def targets_wikimedia(self) -> bool:
        host = urlsplit(self.index_url).hostname or ""
        return any(host == h or host.endswith("." + h) for h in _WIKIMEDIA_HOSTS)

    @property
    def user_agent(self) -> str:
        # Wikimedia's required form: tool/version (contact) library/version.
        contact = self.contact or "no contact given"
        return (
            f"{TOOL_NAME}/{__version__} ({contact}) aiohttp/{aiohttp.__version__} "
            f"{platform.python_implementation()}/{platform.python_version()}"
        )

    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.sqlite3"
