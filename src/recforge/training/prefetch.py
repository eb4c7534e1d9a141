"""Prepare the next epoch's training examples while the current epoch trains.

NCF redraws its negatives every epoch (He et al. 2017, Sec. 4.1) and shuffles the examples;
for MovieLens-1M that is about 0.5 s of sampling, a 4.97 M-row permutation and a row gather per
epoch. Drawing epoch k+1's examples on a second thread during epoch k hides that time where
torch's intra-op threads leave a CPU free (the Trainer checks; with every CPU taken by torch's
OpenMP workers, the extra thread stalled them and an epoch took 3.4 times as long).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class EpochPrefetcher(Generic[T]):
    """Runs ``make()`` for the next epoch on one background thread while this epoch trains.

    ``make`` is called ``epochs`` times, one call after the other and in epoch order, so the
    random generators it draws from produce the same sequence as without prefetching: the
    examples are identical, only the time they are drawn changes. ``make`` must not share
    mutable state with the training loop (give it its own generators); anything the loop needs
    from those generators, such as their state for a checkpoint, ``make`` should return.

    Use as a context manager: leaving it waits for a draw that is still running and discards it
    (an early stop leaves one epoch drawn and unused).

    Args:
        make: draws one epoch of examples.
        epochs: how many epochs will be asked for; nothing is drawn beyond that.
        background: False draws every epoch on the calling thread when asked (no thread).
    """

    def __init__(self, make: Callable[[], T], epochs: int, background: bool = True):
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self._make, self._epochs, self._drawn = make, epochs, 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recforge-prefetch") if background else None
        self._pending: Future[T] | None = None

    def next(self) -> tuple[T, float]:
        """The next epoch's examples, and the seconds this call waited for them.

        Raises:
            StopIteration: if all ``epochs`` epochs were already taken.
            Exception: whatever ``make`` raised for this epoch.
        """
        start = time.perf_counter()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            examples = pending.result()
        elif self._drawn < self._epochs:
            self._drawn += 1
            examples = self._make()
        else:
            raise StopIteration(f"all {self._epochs} epochs were drawn")
        waited = time.perf_counter() - start
        if self._executor is not None and self._drawn < self._epochs:
            self._drawn += 1
            self._pending = self._executor.submit(self._make)
        return examples, waited

    def __enter__(self) -> "EpochPrefetcher[T]":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a running draw, drop it, and stop the thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending = None
