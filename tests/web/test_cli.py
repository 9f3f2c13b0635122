"""`python -m web` as a command: its options, the --share warning, a server that is not up yet."""

import subprocess
import sys

import httpx
import pytest

from tests.support.paths import REPO
from tests.support.servers import free_port
from tests.web.processes import WebProcess


def run_web(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "web", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_share_is_off_unless_asked_for_and_asking_prints_a_warning():
    # a bad --server stops the command right after the warning, before anything is served or shared
    quiet = run_web("--server", "http://127.0.0.1:8080/ws")
    shared = run_web("--server", "http://127.0.0.1:8080/ws", "--share")
    assert quiet.returncode == shared.returncode == 2
    assert "must look like ws://" in quiet.stderr and "Traceback" not in quiet.stderr
    assert "warning: --share" not in quiet.stderr
    assert "warning: --share publishes this UI on a public gradio.live link" in shared.stderr


@pytest.mark.slow
def test_the_ui_starts_on_its_host_and_port_even_when_the_server_is_not_up_yet(tmp_path):
    ui = WebProcess(tmp_path, f"ws://127.0.0.1:{free_port()}/ws", args=["--host", "127.0.0.1"])
    try:
        ui.start()
        assert httpx.get(ui.url).status_code == 200
        assert "warning: cannot reach the chat server at http://127.0.0.1:" in ui.logs()
    finally:
        ui.stop()
