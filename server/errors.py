"""Errors that reach clients: a stable machine `code`, a human message, and an HTTP status."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The server cannot start as configured; the message says what to change."""


class ClientError(Exception):
    status = 400

    def __init__(self, code: str, message: str, status: int | None = None, retry_after: float | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.param = param  # the request field at fault, as OpenAI's errors name it


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 409: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


def error_body(err: ClientError) -> dict:
    """HTTP error JSON in OpenAI's shape, so that its client libraries read every error of ours."""
    kind = _TYPES.get(err.status, "server_error" if err.status >= 500 else "invalid_request_error")
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}


# The stable codes, documented in the README's protocol section.
CODES = {
    "bad_json": "the frame is not valid JSON",
    "invalid_frame": "a field is missing or has the wrong type",
    "unknown_type": "the frame's type is not one the server knows",
    "binary_frame": "binary frames are not part of the protocol; send JSON text",
    "empty_text": "the message (a memory, an imported turn) is empty",
    "message_too_long": "the message is longer than MAX_MESSAGE_CHARS",
    "memory_too_long": "a memory written by hand is longer than a memory of a chat may be (the message says how long)",
    "turn_in_progress": "a turn is already streaming on this session or connection",
    "no_turn": "there is no turn to cancel",
    "forbidden": "the session belongs to another user",
    "not_found": "no such session or memory (another user's is not found either)",
    "busy": "too many turns are queued; retry shortly",
    "rate_limited": "more turns per minute than TURNS_PER_MINUTE allows; retry after `retry_after` seconds",
    "too_many_turns": "more turns at once than MAX_TURNS_PER_USER allows",
    "unauthorized": "a valid API token is required (SERVER_TOKENS)",
    "origin_not_allowed": "the browser page's origin is not in ALLOWED_ORIGINS",
    "generation_failed": "the model failed while answering",
    "store_unavailable": "the turn store cannot be reached; nothing was stored",
    "shutting_down": "the server is shutting down",
    "internal_error": "an unexpected error; see the server log",
    "method_not_allowed": "the HTTP method is not allowed on this path",
    "invalid_request": "the HTTP request is malformed; `param` names the field at fault",
    "request_too_large": "the HTTP request body is larger than MAX_REQUEST_BYTES (MAX_IMPORT_BYTES for imports)",
    "model_not_found": "the requested model is not the one this server serves (see GET /v1/models)",
}
