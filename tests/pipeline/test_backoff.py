"""Retries back off exponentially, with jitter, up to a cap."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pipeline.worker import backoff_delay


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(1, 2), (2, 4), (3, 8), (6, 64), (9, 300), (30, 300)]
)
def test_each_attempt_waits_between_half_and_all_of_its_ceiling(
    settings: Any, attempts: int, ceiling: float
) -> None:
    settings.DELIVERY_BACKOFF_BASE = 2
    settings.DELIVERY_BACKOFF_CAP = 300
    delays = [backoff_delay(attempts) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    # Jitter: workers retrying together do not retry in step.
    assert len({round(delay, 6) for delay in delays}) > 150
    assert max(delays) - min(delays) > ceiling / 4
