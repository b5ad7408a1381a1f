"""A process pool that survives its workers: one that dies (a decoder's segfault, the
out-of-memory killer) or hangs in native code costs the items it held, never the run.

``multiprocessing.Pool`` loses the task of a worker that dies and waits for it forever. Here the
items in flight are bounded; when the pool breaks (a worker died) or stalls (no item finished for
``stall_s``), the items it held are suspects. Every other item goes on in a fresh pool; each
suspect is then run alone, so the one that kills its worker again is named and given up, and
the others (held by chance when another item crashed) finish normally.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cores() -> int:
    """The cores this process may run on: fewer than the machine holds under taskset, a batch
    scheduler or a container's CPU set, where one worker per machine core oversubscribes."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity call on this platform (macOS, Windows)
        return os.cpu_count() or 1


def guarded_map(
    job: Callable[[Item], Result],
    items: Iterable[Item],
    workers: int,
    stall_s: float,
    initializer: Callable[[], None] | None = None,
) -> Iterator[tuple[Item, Result | None]]:
    """(item, job(item)) in completion order; (item, None) for an item whose worker died or hung
    even when it ran alone."""
    suspects: list[Item] = []
    yield from _pooled(job, iter(items), workers, stall_s, initializer, suspects)
    for item in suspects:
        lost: list[Item] = []
        yield from _pooled(job, iter([item]), 1, stall_s, initializer, lost)
        if lost:
            yield item, None


def _pooled(job, pending, workers, stall_s, initializer, suspects) -> Iterator[tuple]:
    """Run ``pending`` in pools of ``workers``; what a broken or stalled pool held goes to
    ``suspects`` and a fresh pool takes the rest."""
    context = get_context("forkserver")  # no fork of a parent that may hold codec threads
    while True:
        running: dict = {}
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer)
        try:
            while True:
                for item in itertools.islice(pending, 2 * workers - len(running)):
                    running[pool.submit(job, item)] = item
                if not running:
                    return
                done, _ = wait(running, timeout=stall_s, return_when=FIRST_COMPLETED)
                if not done:  # hung in native code, where no signal reaches Python
                    _kill_workers(pool)
                    suspects.extend(running.values())
                    break
                broken = False
                for future in done:
                    item = running.pop(future)
                    if isinstance(future.exception(), BrokenProcessPool):
                        suspects.append(item)
                        broken = True
                    else:
                        yield item, future.result()
                if broken:  # a worker died: every item still running is lost with the pool
                    suspects.extend(running.values())
                    break
        except BaseException:  # Ctrl-C, or the caller stopped: no clip is waited for
            _kill_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    for process in list((pool._processes or {}).values()):  # no public way to stop a hung one
        process.kill()
