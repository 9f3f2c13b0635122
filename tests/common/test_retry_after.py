import time
from email.utils import formatdate

import pytest

from common.http import parse_retry_after


def test_retry_after_accepts_seconds_and_http_dates():
    now = time.time()
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0
    assert parse_retry_after("-5") == 0


@pytest.mark.parametrize("value", [None, "", "soon", "inf", "nan"])
def test_retry_after_that_names_no_finite_wait_is_ignored(value):
    assert parse_retry_after(value) is None
