"""API tokens: `SERVER_TOKENS="token:user,…"` or a file of `token user` lines; each token names a user.

Presented tokens are compared by their SHA-256 digests with `hmac.compare_digest`, so neither the
dictionary lookup nor the comparison leaks how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

from server.errors import StartupError

_USER = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRegistry:
    def __init__(self, pairs: dict[str, str]):
        self._users = {_digest(token): user for token, user in pairs.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def user_for(self, token: str | None) -> str | None:
        if not token:
            return None
        digest = _digest(token)
        found = None
        for known, user in self._users.items():  # no early exit: the time does not depend on the match
            if hmac.compare_digest(known, digest):
                found = user
        return found

    @classmethod
    def parse(cls, inline: str | None, file: Path | None) -> TokenRegistry:
        entries: list[tuple[str, str]] = []
        if inline:
            entries += [_split(item, "SERVER_TOKENS") for item in inline.split(",") if item.strip()]
        if file is not None:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise StartupError(f"SERVER_TOKENS_FILE cannot be read: {exc.strerror}") from None
            entries += [_split(line, f"{file}:{n}") for n, line in enumerate(lines, 1)
                        if line.strip() and not line.lstrip().startswith("#")]
        pairs: dict[str, str] = {}
        for token, user in entries:
            if token in pairs and pairs[token] != user:
                raise StartupError("a token is listed twice for different users")
            pairs[token] = user
        return cls(pairs)


def _split(entry: str, where: str) -> tuple[str, str]:
    parts = re.split(r"[:\s]+", entry.strip(), maxsplit=1)
    if len(parts) != 2 or len(parts[0]) < 16 or not _USER.match(parts[1]):
        # never echo the entry: it holds a secret
        raise StartupError(f"{where}: each entry must be `token:user` with a token of at least 16 characters "
                           "and a user name of letters, digits, `_.@-`")
    return parts[0], parts[1]
