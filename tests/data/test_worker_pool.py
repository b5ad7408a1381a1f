"""The guarded pool: a worker that dies or hangs costs its own item, never the run."""

import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from cacl_cli.data import extract, worker_pool
from cacl_cli.data.worker_pool import guarded_map, usable_cores


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


def test_usable_cores_are_those_the_process_may_run_on(monkeypatch):
    """A batch scheduler grants 2 of a node's 64 cores: one worker per core means 2, not 64."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 9}, raising=False)
    assert usable_cores() == 2
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the machine's count
    assert usable_cores() == 64


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_a_process_pinned_to_one_core_counts_one():
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
    code += "from cacl_cli.data.worker_pool import usable_cores; print(usable_cores())"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "1"


def test_extract_sizes_its_pool_by_the_usable_cores(tmp_path, monkeypatch):
    """workers 0 (the default): one extracting process per usable core."""
    pools = []

    def pool(job, todo, workers, stall_s, initializer):
        pools.append(workers)
        return iter(())

    monkeypatch.setattr(extract, "usable_cores", lambda: 3)
    monkeypatch.setattr(extract, "guarded_map", pool)
    section = extract.ExtractSection()
    extract._run_pool(tmp_path, tmp_path, section, ["clip"], "tag", Console(quiet=True))
    assert pools == [3] and worker_pool.usable_cores() >= 1
