"""Crash and interrupt a real `python -m scraper` subprocess, then --resume."""

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

from tests.scraper.conftest import CONTACT, SUBSET, assert_matches_expected, settled_titles
from tests.support.paths import REPO

KILLS = 4


async def start_cli(mirror, out: Path, *extra: str) -> asyncio.subprocess.Process:
    args = ["--index-url", mirror.index_url, "--out", str(out), "--contact", CONTACT, "--concurrency", "4"]
    args += ["--timeout", "0.5", "--max-attempts", "6", *extra]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # a suite started in the background (`cmd &` without job control) inherits SIGINT ignored, and
        # so would the scraper, as any program should; these tests are about Ctrl-C, so restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process, timeout: float = 120) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, err.decode()


async def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_output(start_mirror, tmp_path):
    mirror = await start_mirror(sample=SUBSET, fault_rate=0.05, gone_rate=0.01, stall_s=1.0)
    paced = ["--rate", "250"]  # about two seconds of crawling, so the kills land inside it

    reference = tmp_path / "reference"
    code, err = await finish(await start_cli(mirror, reference, *paced))
    assert code == 0, err
    assert_matches_expected(reference, mirror.expected())

    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    out = tmp_path / "killed"
    state = out / "state.sqlite3"
    mirror.reset()  # the same faults again, and a fresh request log
    settled_after: list[set[str]] = []
    history = []
    for run in range(KILLS):
        mirror.run = run
        proc = await start_cli(mirror, out, *paced, *(["--resume"] if run else []))
        delay = rng.uniform(0.4, 2.6)
        try:
            await asyncio.wait_for(proc.wait(), delay)
            history.append(f"run {run}: finished before the kill at {delay:.2f}s")
        except TimeoutError:
            proc.kill()  # SIGKILL: no cleanup, no flush, no goodbye
            await proc.wait()
            history.append(f"run {run}: killed at {delay:.2f}s")
        settled_after.append(settled_titles(state) if state.exists() else set())
    mirror.run = KILLS
    code, err = await finish(await start_cli(mirror, out, *paced, "--resume"))
    context = f"seed {seed}: {history}"
    assert code == 0, f"{context}\n{err}"

    for name in ("poems.jsonl", "poems.html"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs; {context}"
    # A page whose result was committed is never requested again by a later run.
    for run, settled in enumerate(settled_after):
        again = {s.key for s in mirror.log if s.run > run} & settled
        assert not again, f"run {run} had committed {sorted(again)[:5]}, fetched again later; {context}"
    assert not list(out.glob(".poems.*.tmp")), "a killed export left its temporary file behind"


def done_rows(state: Path) -> int:
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM pages WHERE status='done'").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


async def wait_for_progress(state: Path, rows: int, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.05)):
        if done_rows(state) >= rows:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {rows} finished pages in {state} after {timeout}s")


async def test_ctrl_c_saves_what_was_fetched_and_resume_finishes(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01)
    proc = await start_cli(mirror, tmp_path, "--rate", "100")
    await wait_for_progress(tmp_path / "state.sqlite3", 20)
    proc.send_signal(signal.SIGINT)
    code, err = await finish(proc)
    assert code == 130, err
    assert "--resume" in err and "--export-only" in err
    done_before = settled_titles(tmp_path / "state.sqlite3")
    assert len(done_before) >= 20

    mirror.run = 1
    code, err = await finish(await start_cli(mirror, tmp_path, "--rate", "0", "--resume"))
    assert code == 0, err
    assert_matches_expected(tmp_path, mirror.expected())
    assert not {s.key for s in mirror.log if s.run == 1} & done_before


async def test_sigterm_is_handled_like_ctrl_c(start_mirror, tmp_path):
    mirror = await start_mirror(sample=0.01)
    proc = await start_cli(mirror, tmp_path, "--rate", "100")
    await wait_for_progress(tmp_path / "state.sqlite3", 5)
    proc.terminate()
    code, err = await finish(proc)
    assert code == 130, err
    assert "--resume" in err
