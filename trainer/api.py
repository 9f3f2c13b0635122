"""`await train_async(config, on_event)`: training for callers that live inside an asyncio event loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from trainer.config import TrainConfig
from trainer.loop import TrainResult, train
from trainer.report import EventHandler


async def train_async(config: TrainConfig, on_event: EventHandler | None = None) -> TrainResult:
    """Train in a worker thread; events reach `on_event` (sync or async) on the caller's loop, in order.

    Cancelling the awaiting task stops training at the end of the current step, saves a checkpoint (so the
    run can be resumed) and then re-raises CancelledError.
    """
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def deliver(event: dict[str, Any]) -> None:
        if on_event is None:
            return
        if inspect.iscoroutinefunction(on_event):
            asyncio.run_coroutine_threadsafe(on_event(event), loop)
        else:
            loop.call_soon_threadsafe(on_event, event)

    worker = asyncio.ensure_future(asyncio.to_thread(train, config, deliver, stop))
    try:
        # Shielded: cancelling the caller must not abandon a thread that is in the middle of a step.
        return await asyncio.shield(worker)
    except asyncio.CancelledError:
        stop.set()
        await worker
        raise
