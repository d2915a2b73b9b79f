"""Core slots: decode jobs and model calls share the usable cores without ever running more busy threads.

``Classifier.predict_batch`` queues the next batch for decoding while the current one goes through the model.
Each decode holds one slot while it runs; a model call holds as many as the model has threads, and writing a
batch's predictions (Python, one core) holds one. With a core left beside the model's threads, decoding carries
on during the call; when the model has every core, the call runs alone and decoding resumes the moment it
returns, beside the writing of the predictions, so the cores stay busy without the decoders and the model's
threads ever competing for them.

Slots are granted in request order: a model call waiting for every core is not overtaken by decode jobs
queued after it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class CoreSlots:
    """``total`` slots granted first come, first served; :meth:`hold` takes ``count`` of them for a block."""

    def __init__(self, total: int):
        if total < 1:
            raise ValueError(f"total must be at least 1, got {total}")
        self.total = total
        self._free = total
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, count: int = 1) -> Iterator[None]:
        """Run the block holding ``count`` slots (at most ``total``), waiting for them in request order."""
        count = max(1, min(int(count), self.total))
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._free < count:
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the queue so the others go on
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._free -= count
            self._cond.notify_all()  # the next in line may fit in what is left
        try:
            yield
        finally:
            with self._cond:
                self._free += count
                self._cond.notify_all()

    @property
    def free(self) -> int:
        """Slots not held right now."""
        with self._cond:
            return self._free
