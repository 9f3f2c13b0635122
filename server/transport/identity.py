"""Who owns a memory namespace: the authenticated user when there is one, otherwise the session."""

from __future__ import annotations

# The conversation /v1/chat/completions keeps for a named user who sends no session id.
API_SESSION_PREFIX = "api:"


def namespace_for(user: str | None, session: str) -> str:
    return f"user:{user}" if user else f"session:{session}"


def api_session(user: str) -> str:
    return f"{API_SESSION_PREFIX}{user}"


def may_manage(owner: str, session: str, authenticated: str | None, named: str | None = None) -> bool:
    """Whether a caller may read or forget the stored session `session`, which belongs to `owner`.

    With SERVER_TOKENS only the token's user counts. Without them nobody is authenticated and /v1 lets
    a caller act as whichever user its `user` field names, so here too a caller may name the user
    (`named`), and /v1's own `api:<user>` conversation names its user: what it could read or forget
    here it could already continue over /v1.
    """
    if authenticated is not None:
        return owner == namespace_for(authenticated, session)
    claims = {namespace_for(None, session)}
    if named:
        claims.add(namespace_for(named, session))
    if session.startswith(API_SESSION_PREFIX) and len(session) > len(API_SESSION_PREFIX):
        claims.add(namespace_for(session[len(API_SESSION_PREFIX):], session))
    return owner in claims
