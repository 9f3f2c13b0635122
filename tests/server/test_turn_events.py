"""The websocket frames of the typed turn events, byte for byte: clients parse these, so key order and
which keys are left out are part of the protocol (README "Protocol")."""

import pytest

from server.errors import ClientError
from server.protocols import Usage
from server.transport.frames import encode, error_event
from server.turn_events import SearchReported, TokenDelta, TurnEnded, TurnStarted

USAGE = b'"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}'


@pytest.mark.parametrize(("event", "wire"), [
    (TurnStarted("t1"), b'{"type":"start","turn":"t1"}'),
    (TokenDelta('é "\n'), b'{"type":"token","text":"\xc3\xa9 \\"\\n"}'),
    (SearchReported("moon", "", ("https://a", "https://b")),
     b'{"type":"search","query":"moon","summary":"","sources":["https://a","https://b"]}'),
    (SearchReported("moon", "", (), "no_results"),
     b'{"type":"search","query":"moon","summary":"","sources":[],"skipped":"no_results"}'),
    (TurnEnded("t1", "hi", (4, 9), Usage(3, 4)),
     b'{"type":"end","turn":"t1","text":"hi","memories":[4,9],' + USAGE + b"}"),
    (TurnEnded("t1", "h", (), Usage(3, 4), stopped=True),
     b'{"type":"end","turn":"t1","text":"h","memories":[],' + USAGE + b',"stopped":true}'),
    (error_event(ClientError("bad_json", "the frame is not valid JSON")),
     b'{"type":"error","code":"bad_json","message":"the frame is not valid JSON"}'),
    (error_event(ClientError("rate_limited", "slow down", 429, retry_after=1.5)),
     b'{"type":"error","code":"rate_limited","message":"slow down","retry_after":1.5}'),
])
def test_each_event_encodes_as_the_frame_clients_read(event, wire):
    assert encode(event) == wire


def test_anything_else_is_refused():
    with pytest.raises(TypeError):
        encode({"type": "token", "text": "a dict is no longer a frame"})
