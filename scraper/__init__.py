"""Resumable async crawler for Wikisource collections (`python -m scraper`)."""

__version__ = "0.1.0"
