"""Property-based fuzzing of the memory API against a real server process: random and malformed requests to
every memory endpoint (JSON, JSONL, ChatGPT exports, ids, query strings) get no 5xx and only documented
errors, the server logs no unhandled exception, and its memory stays bounded."""

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.errors import CODES
from tests.security.test_fuzz import json_values, log_problems, rss, unicode_text
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

ids = st.one_of(st.integers(-5, 10**20).map(str), unicode_text.map(lambda t: quote(t, safe="")), st.just("export"))
paths = st.one_of(
    st.sampled_from(["/memories", "/memories/export", "/memories/import", "/sessions", "/import/chatgpt",
                     "/sessions/fuzz/import", "/sessions/%00/import", "/sessions//import"]),
    ids.map(lambda i: f"/memories/{i}"),
    unicode_text.map(lambda t: f"/sessions/{quote(t, safe='')}/import"),
)
queries = st.dictionaries(st.sampled_from(["query", "limit", "offset", "user", "session", "x"]),
                          unicode_text | st.integers(-10, 10**6).map(str), max_size=3)
turn = st.fixed_dictionaries({}, optional={"user": unicode_text | json_values, "assistant": unicode_text | json_values,
                                           "time": unicode_text | json_values | st.just("2024-05-01T10:00:00"),
                                           "user_name": unicode_text | json_values,
                                           "assistant_name": unicode_text | json_values})
chatgpt = st.lists(st.fixed_dictionaries({"mapping": st.dictionaries(
    st.text(max_size=4), st.fixed_dictionaries({}, optional={
        "message": st.fixed_dictionaries({}, optional={
            "author": st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool"]) | json_values}),
            "content": st.fixed_dictionaries({"content_type": st.sampled_from(["text", "code"]) | json_values,
                                              "parts": st.lists(unicode_text | json_values, max_size=3)}),
            "create_time": json_values}),
        "parent": st.text(max_size=4) | json_values, "children": json_values}), max_size=4)},
    optional={"title": json_values, "current_node": st.text(max_size=4) | json_values, "id": json_values}), max_size=3)
bodies = st.one_of(
    st.none(), st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"text": unicode_text | json_values}).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"turns": st.lists(turn, max_size=4) | json_values}).map(lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({"text": unicode_text | json_values}, optional={"created": json_values}),
             max_size=3).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    chatgpt.map(lambda v: json.dumps(v).encode()),
)


@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("memory-fuzz")
    env = {"MODEL": str(tiny_model_dir), "DATA_DIR": str(workdir / "data"), "LLM_BACKEND": "transformers",
           "MAX_NEW_TOKENS": "2", "CONTEXT_TOKENS": "2048", "LOG_LEVEL": "INFO", "MAX_IMPORT_BYTES": "65536"}
    server = ServerProcess(workdir, env).start()
    yield server
    server.stop()


def test_random_memory_api_requests_never_get_a_5xx_and_errors_are_documented(fuzz_server):
    before = rss(fuzz_server)
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=fuzz_server.url, timeout=120) as http:
        @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(method=st.sampled_from(["GET", "POST", "DELETE", "PATCH"]), path=paths, params=queries, body=bodies)
        def request(method, path, params, body):
            r = http.request(method, path, params=params, content=body,
                             headers={"Content-Type": "application/json"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (method, path, params, body, r.text[:300])
            if r.status_code >= 400:
                error = r.json()["error"]
                assert error["message"] and error["code"] in CODES, r.text

        request()
    assert {200, 400, 404} <= set(statuses), statuses
    assert rss(fuzz_server) - before < 300 * 2**20
    assert log_problems(fuzz_server) == []
