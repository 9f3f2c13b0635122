"""`POST /sessions/{session}/turns/{turn}/search-feedback {"should_search": bool}`: a user's correction of one
turn's search decision, kept for retraining (server/search/feedback.py, `python -m server.search.train`).

Same authentication and scoping as the session's history: another user's session is "forbidden", an unknown
session or a turn not in it "not found". The correction is stored with the turn's message and the turn before
it (the follow-up context the classifier read), never with the reply or any search result.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from server import keys as k
from server.errors import ClientError
from server.search.feedback import FEEDBACK_FILE, FeedbackLog, feedback_row
from server.transport.http import owned_session

FEEDBACK: web.AppKey[FeedbackLog] = web.AppKey("search_feedback")


async def search_feedback(request: web.Request) -> web.Response:
    try:
        data = orjson.loads(await request.read())  # within MAX_REQUEST_BYTES (client_max_size)
    except orjson.JSONDecodeError:
        raise ClientError("bad_json", "the body is not valid JSON") from None
    should = data.get("should_search") if isinstance(data, dict) else None
    if not isinstance(should, bool):
        raise ClientError("invalid_request", "the body must be {\"should_search\": true} or {\"should_search\": false}")
    session, namespace = await owned_session(request)
    turn_id = request.match_info["turn"]
    turns = await request.app[k.CHAT].history(session)
    at = next((i for i, t in enumerate(turns) if t.id == turn_id), None)
    if at is None:
        raise ClientError("not_found", "no such turn in this session", 404)
    previous = turns[at - 1] if at > 0 else None
    await request.app[FEEDBACK].append(feedback_row(turns[at], previous, should, namespace))
    return web.json_response({"turn": turn_id, "session": session, "should_search": should, "recorded": True},
                             status=201)


def add_search_feedback_routes(app: web.Application) -> None:
    app[FEEDBACK] = FeedbackLog(app[k.SETTINGS].data_dir / FEEDBACK_FILE)
    app.router.add_post("/sessions/{session}/turns/{turn}/search-feedback", search_feedback)
