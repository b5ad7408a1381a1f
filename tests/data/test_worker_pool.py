"""The guarded pool: a worker that dies or hangs costs its own item, never the run."""

import os
import signal
import time

import pytest

from cacl_cli.data.worker_pool import guarded_map


def square_or_die(n):
    """The job: 13 kills its own worker (a decoder's segfault), 17 hangs where no signal
    reaches Python, the rest are squared."""
    if n == 13:
        os.kill(os.getpid(), signal.SIGSEGV)
    if n == 17:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
    return n * n


@pytest.mark.parametrize("workers", [1, 3])
def test_a_dead_or_hung_worker_costs_its_own_item_and_the_rest_finish(workers):
    started = time.monotonic()
    results = dict(guarded_map(square_or_die, range(24), workers, stall_s=3))
    assert results == {n: (None if n in (13, 17) else n * n) for n in range(24)}
    assert time.monotonic() - started < 120  # multiprocessing.Pool waited on 13 forever
