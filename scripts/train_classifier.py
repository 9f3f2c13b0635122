"""`python -m scripts.train_classifier`: the old name of `python -m server.search.train` (same arguments)."""

from __future__ import annotations

import sys

from server.search.train import main

if __name__ == "__main__":
    sys.exit(main())
