"""Who owns a memory namespace: the authenticated user when there is one; without tokens, the one local user
(MEMORY_SCOPE=user, the default) or each chat by itself (MEMORY_SCOPE=session)."""

from __future__ import annotations

import re

from server.config import MemoryScope
from server.errors import ClientError

# The conversations /v1/chat/completions keeps for a named user who sends no session id: `api:<user>` before
# conversations were told apart, `api:<user>:<16 hex digits>` since (conversation_session).
API_SESSION_PREFIX = "api:"
_DIGEST = re.compile(r":[0-9a-f]{16}\Z")
# Without SERVER_TOKENS the server is a single-user instance; under MEMORY_SCOPE=user this is that user.
LOCAL_USER = "local"


def namespace_for(user: str | None, session: str) -> str:
    return f"user:{user}" if user else f"session:{session}"


def memory_user(authenticated: str | None, scope: MemoryScope) -> str | None:
    """The user whose memories a caller's chats share; None: each chat remembers only itself."""
    return authenticated or (LOCAL_USER if scope == MemoryScope.USER else None)


def conversation_session(user: str, digest: str) -> str:
    """A named user's /v1 conversation that sends no session id, named by a digest of how it began."""
    return f"{API_SESSION_PREFIX}{user}:{digest}"


def may_manage(owner: str, session: str, authenticated: str | None, named: str | None = None,
               scope: MemoryScope = MemoryScope.USER) -> bool:
    """Whether a caller may read or forget the stored session `session`, which belongs to `owner`.

    With SERVER_TOKENS only the token's user counts. Without them nobody is authenticated: the local user's
    chats (MEMORY_SCOPE=user) and each chat by its id are the caller's; and /v1 lets a caller act as whichever
    user its `user` field names, so here too a caller may name the user (`named`), and /v1's own `api:<user>`
    conversation names its user: what it could read or forget here it could already continue over /v1.
    """
    if authenticated is not None:
        return owner == namespace_for(authenticated, session)
    claims = {namespace_for(None, session), namespace_for(memory_user(None, scope), session)}
    if named:
        claims.add(namespace_for(named, session))
    if session.startswith(API_SESSION_PREFIX) and len(session) > len(API_SESSION_PREFIX):
        named_user = session[len(API_SESSION_PREFIX):]
        claims.add(namespace_for(named_user, session))
        claims.add(namespace_for(_DIGEST.sub("", named_user), session))
    return owner in claims


def caller_namespace(authenticated: str | None, named: str | None, session: str | None,
                     scope: MemoryScope) -> str:
    """The memory namespace a memory API call acts on: the token's user; without tokens the user it names
    (`?user=`, as /v1's `user` field), else the local user, or under MEMORY_SCOPE=session the chat it names
    (`?session=`)."""
    if authenticated is not None:
        return namespace_for(authenticated, "")
    user = named or memory_user(None, scope)
    if user:
        return namespace_for(user, "")
    if not session:
        raise ClientError("invalid_request", "with MEMORY_SCOPE=session, name the chat: ?session=ID", 400)
    return namespace_for(None, session)
