"""The one warm-up-then-median timer: the callables take turns, warm-up calls are not timed."""

from __future__ import annotations

import statistics

import pytest

from fashion.runtime.timing import median_ms, times_ms


def test_times_ms_takes_turns_call_by_call_after_the_untimed_warmup():
    calls: list[tuple[str, int]] = []
    timed = {name: (lambda value, name=name: calls.append((name, value))) for name in ("a", "b")}
    times = times_ms(timed, [1, 2], rounds=3, warmup=1)
    assert {name: len(values) for name, values in times.items()} == {"a": 6, "b": 6}
    assert calls[:2] == [("a", 1), ("b", 1)]  # one warm-up call each, first
    assert calls[2:6] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]  # then in turns, input by input
    assert all(value >= 0 for values in times.values() for value in values)


def test_median_ms_is_the_median_of_the_same_calls(monkeypatch):
    clock = iter(float(n) for n in range(100))
    monkeypatch.setattr("fashion.runtime.timing.time.perf_counter", lambda: next(clock) / 1000.0)
    assert median_ms({"only": lambda _: None}, [0], rounds=3) == {"only": statistics.median([1.0, 1.0, 1.0])}
    with pytest.raises(ValueError, match="no inputs"):
        times_ms({"only": lambda _: None}, [])
