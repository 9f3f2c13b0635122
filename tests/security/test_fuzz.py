"""Property-based fuzzing of the websocket protocol and the HTTP API against a real server process.

Thousands of random and malformed inputs: no 5xx, no unhandled exception in the server's log,
bounded server memory, and every reply either a normal turn or a documented error.
"""

import json
from urllib.parse import quote

import httpx
import psutil
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.errors import CODES
from tests.support.servers import ServerProcess
from tests.support.syncws import SyncWebSocket

pytestmark = pytest.mark.slow

MAX_FRAME = 16 * 1024
FRAME_TYPES = {"start", "token", "end", "error", "search"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
unicode_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.sampled_from(
    ["\u202e\u0000", "🤖" * 50, "\ufeff", "a\u0301" * 20, "\U0010ffff", "\u2028\u2029", "蘇軾" * 30, " \t\n"])
chat_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["chat", "cancel", "Chat", "", "token", "end"]) | json_values,
     "session": unicode_text | json_values | st.just("fuzz"),
     "text": unicode_text | json_values | st.text(min_size=4001, max_size=4100)},
    optional={"extra": json_values})
SESSIONS = ["fuzz", "fuzz-2", "蘇軾"]
well_formed_chats = st.builds(
    lambda session, text: json.dumps({"type": "chat", "session": session, "text": text}),
    st.sampled_from(SESSIONS),
    # lone surrogates are not text: a frame carrying one is rightly bad_json
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=200).filter(str.strip))
raw_frames = st.one_of(
    well_formed_chats,
    st.text(max_size=200),
    json_values.map(json.dumps),
    chat_like.map(lambda d: json.dumps(d, allow_nan=True)),
    st.integers(1, 50_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 5_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.sampled_from(['{"type":"chat","session":"s","text":"\\ud800"}', '{"type":"chat","session":"\\udfff","text":"x"}',
                     '{"type":"chat","session":"s","text":"x"', '{"type":"chat","session":"s","text":1e999}',
                     '\x00\x00', '{"type":"chat","session":"s","text":"' + "x" * (MAX_FRAME + 1) + '"}']),
    st.binary(max_size=100),
    st.binary(min_size=1, max_size=50).filter(lambda b: not _decodes(b)).map(
        lambda b: (b, WSMsgType.TEXT)),
)


def _well_formed(frame) -> bool:
    """A chat frame the server must answer with a normal turn, however much abuse came before it."""
    try:
        d = json.loads(frame)
    except (TypeError, ValueError, RecursionError):
        return False
    return (isinstance(d, dict) and d.keys() == {"type", "session", "text"} and d["type"] == "chat"
            and d["session"] in SESSIONS and isinstance(d["text"], str) and d["text"].strip() != ""
            and len(d["text"]) <= 200 and "\x00" not in d["text"])


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    env = {"MODEL": str(tiny_model_dir), "DATA_DIR": str(workdir / "data"), "LLM_BACKEND": "transformers",
           "MAX_NEW_TOKENS": "2", "CONTEXT_TOKENS": "2048", "MAX_FRAME_BYTES": str(MAX_FRAME),
           "TURNS_PER_MINUTE": "100000", "LOG_LEVEL": "INFO"}
    server = ServerProcess(workdir, env).start()
    yield server
    server.stop()


def rss(server: ServerProcess) -> int:
    return psutil.Process(server.proc.pid).memory_info().rss


def log_problems(server: ServerProcess) -> list[str]:
    problems = []
    for line in server.logs().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if "Traceback" in line:
                problems.append(line)
            continue
        if record.get("level") in ("error", "critical") or "exception" in record:
            problems.append(line[:500])
    return problems


def test_random_and_malformed_websocket_frames_get_documented_replies(fuzz_server):
    ws = SyncWebSocket(fuzz_server.ws_url)
    before = rss(fuzz_server)
    seen = {"turns": 0, "errors": 0, "closes": 0}
    codes: dict[str, int] = {}
    first: dict[str, str] = {}

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(frame=raw_frames)
    def exchange(frame):
        frames, closed = ws.exchange(frame)
        if _well_formed(frame):
            assert closed is None and frames[-1]["type"] == "end", (frame, frames[-1])
        for f in frames:
            assert f["type"] in FRAME_TYPES, f
            if f["type"] == "error":
                assert f["code"] in CODES and f["message"], f
                codes[f["code"]] = codes.get(f["code"], 0) + 1
                first.setdefault(f["code"], f["message"])
        if closed is not None:
            # only a broken client is disconnected: an oversized frame (1009) or invalid UTF-8 (1007)
            assert closed[0] in (1009, 1007), (closed, frame if len(str(frame)) < 200 else str(frame)[:200])
            seen["closes"] += 1
        elif frames[-1]["type"] == "end":
            seen["turns"] += 1
            assert frames[0]["type"] == "start"
            assert frames[-1]["text"] == "".join(f["text"] for f in frames if f["type"] == "token")
        else:
            seen["errors"] += 1

    try:
        exchange()
    finally:
        ws.close()
    assert seen["turns"] > 50 and seen["errors"] > 500 and seen["closes"] > 0, f"{seen} {codes} {first}"
    assert rss(fuzz_server) - before < 300 * 2**20, "server memory stays bounded"
    assert log_problems(fuzz_server) == []


paths = st.one_of(
    st.sampled_from(["/health", "/metrics", "/v1/models", "/v1/chat/completions", "/sessions/x/history",
                     "/sessions/x", "/ws", "/", "/v1", "/sessions//history", "/%00", "/sessions/%F0%9F%A4%96/history"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?#%"), max_size=40)
    .map(lambda p: "/" + p),
    st.binary(max_size=30).map(lambda b: "/sessions/" + quote(b, safe="") + "/history"),
)
bodies = st.one_of(
    st.none(), st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"model": json_values | st.text(max_size=20),
                           "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(
                               ["user", "system", "assistant", "tool", "x"]) | json_values,
                               "content": unicode_text | json_values}), max_size=3) | json_values},
                          optional={"stream": json_values, "user": json_values, "max_tokens": json_values,
                                    "temperature": json_values}).map(lambda v: json.dumps(v).encode()),
)


def test_random_http_requests_never_get_a_5xx_and_errors_are_documented(fuzz_server):
    before = rss(fuzz_server)
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as http:
        @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]), path=paths, body=bodies,
               content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
        def request(method, path, body, content_type):
            r = http.request(method, path, content=body, headers={"Content-Type": content_type})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (method, path, body, r.text[:300])
            if r.status_code >= 400:
                error = r.json()["error"]
                assert error["message"], r.text
                assert error.get("code") in CODES or error.get("type"), r.text

        request()
    assert len(statuses) > 3, statuses
    assert rss(fuzz_server) - before < 300 * 2**20
    assert log_problems(fuzz_server) == []
