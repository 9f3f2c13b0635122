"""The circuit breaker that stops calling a search provider that keeps failing."""

from server.search.breaker import CircuitBreaker
from tests.support.clock import FakeClock


def test_it_opens_after_consecutive_failures_and_lets_one_trial_through_after_the_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.state == "half-open"
    assert breaker.allow(), "one trial call after the cooldown"
    assert not breaker.allow(), "but only one at a time"
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_trial_opens_it_again_for_a_full_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
    breaker.failure()
    clock.now += 10
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open"
    clock.now += 9
    assert not breaker.allow()


def test_a_success_resets_the_count_of_failures():
    breaker = CircuitBreaker(failures=2, cooldown=10, clock=FakeClock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == "closed"


def test_a_trial_without_a_verdict_is_released():
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown=1, clock=clock)
    breaker.failure()
    clock.now += 1
    assert breaker.allow()
    breaker.release()  # e.g. the turn was cancelled mid-call
    assert breaker.allow()
