import threading
import time

import pytest

from recforge.training.prefetch import EpochPrefetcher


def _counter(log):
    def make():
        log.append((len(log), threading.current_thread().name))
        return len(log) - 1

    return make


@pytest.mark.parametrize("background", [True, False])
def test_epochs_come_in_order_and_never_beyond_the_count(background):
    log = []
    with EpochPrefetcher(_counter(log), 3, background=background) as prefetcher:
        got = [prefetcher.next()[0] for _ in range(3)]
        with pytest.raises(StopIteration):
            prefetcher.next()
    assert got == [0, 1, 2] and len(log) == 3
    threads = {name for _, name in log[1:]}
    assert all(name.startswith("recforge-prefetch") for name in threads) == background


def test_the_next_epoch_is_drawn_while_the_caller_works():
    def make():
        time.sleep(0.2)
        return "examples"

    with EpochPrefetcher(make, 2) as prefetcher:
        _, first_wait = prefetcher.next()  # drawn on the spot
        time.sleep(0.3)  # "training"
        _, second_wait = prefetcher.next()
    assert first_wait >= 0.19 and second_wait < 0.1


def test_an_error_in_the_draw_reaches_the_caller_for_that_epoch():
    calls = []

    def make():
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("no room for the negatives")
        return len(calls)

    with EpochPrefetcher(make, 3) as prefetcher:
        assert prefetcher.next()[0] == 1
        with pytest.raises(MemoryError, match="negatives"):
            prefetcher.next()


def test_an_early_stop_waits_for_and_drops_the_pending_draw():
    log = []
    prefetcher = EpochPrefetcher(_counter(log), 10)
    prefetcher.next()
    prefetcher.close()
    assert len(log) == 2  # the epoch drawn ahead finished before close returned; no more were started


def test_negative_epoch_count_is_refused():
    with pytest.raises(ValueError, match="epochs"):
        EpochPrefetcher(lambda: None, -1)
