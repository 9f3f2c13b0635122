"""Web search APIs behind the `SearchProvider` protocol (server/search/protocols.py)."""
