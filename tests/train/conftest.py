"""Fixtures of the training tests."""

from __future__ import annotations

import pytest


class ManualClock:
    """A clock the test moves by hand (``clock.now = 40.0``), for callbacks that take ``clock=``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
