"""Compaction of the per-namespace document logs in Redis, so that they stop growing with history.

Every `every` seconds one replica sweeps: the one whose claim succeeds (SET NX PX, never released but
left to expire, so the claim also spaces sweeps out). For each namespace it folds the stream entries
after the snapshot's position into the snapshot and trims what is folded and older than `keep`
(COMPACT_LOG). Each step is one atomic, idempotent Lua script, so two replicas sweeping at once (one
whose sweep outlasted its claim) or a replica killed mid-sweep leave a consistent log, and the next
sweep goes on from the position the snapshot records.
"""

from __future__ import annotations

import asyncio
import random
import uuid

from server.logs import get_logger
from server.store.redis_link import RedisLink
from server.store.redis_log import ScriptRunner

log = get_logger(__name__)

_PAGE = 1000


class LogCompactor:
    def __init__(self, link: RedisLink, prefix: str, script: ScriptRunner, *, every: float, keep: float):
        self.link = link
        self.prefix = prefix
        self.every = every
        self.keep_ms = max(0, int(keep * 1000))
        self._script = script
        self._token = uuid.uuid4().hex

    async def run(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        # Python 3.11's asyncio.wait_for (redis-py sends through it) can swallow a cancel that lands as a
        # command completes; the task still counts the request, so the loop ends anyway
        while not task.cancelling():
            # jitter, so that replicas started together do not all try to claim at the same instant
            await asyncio.sleep(self.every * random.uniform(0.8, 1.0))
            try:
                if await self._claim():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage is already logged by the link; the next sweep goes on
                log.debug("log compaction skipped", error=type(exc).__name__)

    async def _claim(self) -> bool:
        key, ms = f"{self.prefix}compacting", max(1, int(self.every * 1000))
        return bool(await self.link.run(lambda r: r.set(key, self._token, nx=True, px=ms)))

    async def sweep(self) -> int:
        """Compact every namespace's log now; returns how many entries were trimmed."""
        key, scan, trimmed, namespaces = f"{self.prefix}ns", 0, 0, 0
        while True:
            scan, found = await self.link.run(lambda r, scan=scan: r.sscan(key, scan, count=500))
            for namespace in found:
                trimmed += await self.compact(namespace.decode())
                namespaces += 1
            if scan == 0:
                break
        if trimmed:
            log.info("document logs compacted", namespaces=namespaces, trimmed=trimmed)
        return trimmed

    async def compact(self, namespace: str) -> int:
        trimmed, more = 0, True
        while more:
            reply = await self._script("COMPACT_LOG", [namespace, _PAGE, self.keep_ms])
            more, trimmed = bool(reply[0]), trimmed + int(reply[1])
        return trimmed
