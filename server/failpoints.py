"""Named fault-injection points for crash-consistency tests (like TiKV's fail-rs or FreeBSD's fail points).

`FAILPOINTS="flush.after_commit=kill;generate.before=raise"` arms points; unset, each check is a dict
lookup. Actions: `kill` (SIGKILL this process, as a power cut or OOM-killer would), `raise`
(RuntimeError), `sleep:SECONDS`.
"""

from __future__ import annotations

import asyncio
import os
import signal


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
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("sleep:"):
        await asyncio.sleep(float(action.split(":", 1)[1]))
    else:
        raise FailpointError(f"failpoint {name} fired")
