"""Errors that reach clients: a stable machine `code`, a human message, and an HTTP status."""

from __future__ import annotations


class ClientError(Exception):
    status = 400

    def __init__(self, code: str, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.retry_after = retry_after

    def frame(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message}


# The stable codes, documented in the README's protocol section.
CODES = {
    "bad_json": "the frame is not valid JSON",
    "invalid_frame": "a field is missing or has the wrong type",
    "unknown_type": "the frame's type is not one the server knows",
    "binary_frame": "binary frames are not part of the protocol; send JSON text",
    "empty_text": "the message is empty",
    "message_too_long": "the message is longer than MAX_MESSAGE_CHARS",
    "turn_in_progress": "a turn is already streaming on this session or connection",
    "no_turn": "there is no turn to cancel",
    "forbidden": "the session belongs to another user",
    "not_found": "no such session",
    "busy": "too many turns are queued; retry shortly",
    "generation_failed": "the model failed while answering",
    "store_unavailable": "the turn store cannot be reached; nothing was stored",
    "shutting_down": "the server is shutting down",
    "internal_error": "an unexpected error; see the server log",
}
