"""Named fault-injection points for crash-consistency tests (like TiKV's fail-rs or FreeBSD's fail points).

`FAILPOINTS="flush.after_commit=kill;generate.before=raise"` arms points; unset, each check is a dict
lookup. Actions: `kill` (SIGKILL this process, as a power cut or OOM-killer would), `raise`
(RuntimeError), `sleep:SECONDS`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time


def _parse(spec: str) -> dict[str, str]:
    points = {}
    for item in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, action = item.partition("=")
        points[name.strip()] = action.strip() or "raise"
    return points


_ARMED = _parse(os.environ.get("FAILPOINTS", ""))


class FailpointError(RuntimeError):
    pass


async def failpoint(name: str) -> None:
    action = _ARMED.get(name)
    if action is None:
        return
    if action.startswith("sleep:"):
        await asyncio.sleep(_seconds(action))
    else:
        _fire(name, action)


def thread_failpoint(name: str) -> None:
    """A failpoint for code running in a worker thread, where `sleep` may block; never on the event loop."""
    action = _ARMED.get(name)
    if action is None:
        return
    if action.startswith("sleep:"):
        time.sleep(_seconds(action))
    else:
        _fire(name, action)


def _seconds(action: str) -> float:
    return float(action.split(":", 1)[1])


def _fire(name: str, action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise FailpointError(f"failpoint {name} fired")
