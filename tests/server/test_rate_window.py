"""The in-memory moving window behind TURNS_PER_MINUTE."""

import asyncio

from server.limits import MemoryMovingWindow
from tests.support.clock import FakeClock


def test_a_user_gets_n_turns_in_any_minute_then_waits_until_the_oldest_leaves_the_window():
    clock = FakeClock()
    window = MemoryMovingWindow(3, 60, clock)

    async def scenario():
        for step in (0, 10, 20):
            clock.now = 1000 + step
            assert await window.hit("alice") == 0
        clock.now = 1030
        assert await window.hit("alice") == 30  # the turn at 1000 leaves the window at 1060
        assert await window.hit("bob") == 0  # budgets are per user
        clock.now = 1060
        assert await window.hit("alice") == 0
        assert await window.hit("alice") == 10  # now 1010 is the oldest: refused hits are not counted

    asyncio.run(scenario())


def test_users_idle_for_a_whole_window_are_forgotten():
    clock = FakeClock()
    window = MemoryMovingWindow(5, 60, clock)

    async def scenario():
        for i in range(1000):
            await window.hit(f"user-{i}")
        clock.now += 61
        await window.hit("active")
        assert list(window.hits) == ["active"]

    asyncio.run(scenario())
