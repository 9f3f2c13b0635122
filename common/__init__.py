"""Small helpers that the server and the scraper both need; this package imports nothing of theirs."""
