"""The one warm-up-then-median latency measurement (``precision="fastest"``, export timings, the standalone report,
the photo bench).

Several callables are timed *in turns*, call by call, so a neighbour's load on a shared CPU slows them all
alike instead of whichever happened to run at the wrong moment; each first gets ``warmup`` untimed calls.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

Key = TypeVar("Key", bound=Hashable)
Input = TypeVar("Input")


def median_ms(
    calls: Mapping[Key, Callable[[Input], Any]], inputs: Sequence[Input], rounds: int = 1, warmup: int = 0
) -> dict[Key, float]:
    """Median milliseconds of each callable over ``rounds`` passes of ``inputs``, the callables taking turns.

    ``warmup`` untimed calls per callable first (cycling through ``inputs``). With one input, ``rounds`` is
    the number of timed calls.
    """
    times = times_ms(calls, inputs, rounds=rounds, warmup=warmup)
    return {key: float(statistics.median(values)) for key, values in times.items()}


def times_ms(
    calls: Mapping[Key, Callable[[Input], Any]], inputs: Sequence[Input], rounds: int = 1, warmup: int = 0
) -> dict[Key, list[float]]:
    """Every timed call's milliseconds, per callable, measured as ``median_ms`` measures them (for callers that
    report more than the median, e.g. a p90)."""
    if not inputs:
        raise ValueError("no inputs to time")
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    for call in calls.values():
        for index in range(warmup):
            call(inputs[index % len(inputs)])
    times: dict[Key, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for value in inputs:
            for key, call in calls.items():
                start = time.perf_counter()
                call(value)
                times[key].append((time.perf_counter() - start) * 1000.0)
    return times
