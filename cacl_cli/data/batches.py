"""Training batches indexed by step: pair ``i`` of batch ``s`` is a pure function of (seed, s, i).

A source only has to offer ``pair(rng, stride)`` -> two uint8 RGB frames. Because no state carries
from one batch to the next, a resumed run sees exactly the batches an unbroken run would, loader
workers can build batches in any order, and under torchrun rank r builds pairs r*B .. (r+1)*B - 1
of the global batch: 2 processes x B pairs see the same data as 1 process x 2B.
"""

from __future__ import annotations

import signal
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cacl_cli.data.augment import PairAugment
from cacl_cli.errors import CaclError, RunFailed


class PairSource(Protocol):
    def pair(self, rng: np.random.Generator, stride: int) -> tuple[np.ndarray, np.ndarray]: ...


class StepBatches(Dataset):
    """``self[step]`` -> (v, v_plus), each (batch_size, 3, size, size): this rank's share."""

    def __init__(
        self,
        source: PairSource,
        augment: PairAugment,
        batch_size: int,
        stride: int,
        seed: int,
        rank: int = 0,
    ) -> None:
        self.source, self.augment = source, augment
        self.batch_size, self.stride, self.seed = batch_size, stride, seed
        self.first = rank * batch_size  # this rank's first pair in the global batch

    def __getitem__(self, step: int) -> tuple[torch.Tensor, ...]:
        """(v, v_plus) as uint8 (B, 3, S, S) and their colour draws (B, 12): see ``views``."""
        pairs = [self._pair(step, i) for i in range(self.first, self.first + self.batch_size)]
        return tuple(torch.stack(part) for part in zip(*pairs))

    def _pair(self, step: int, index: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, step, index])
        return self.augment.prepare(*self.source.pair(rng, self.stride), rng)

    def describe(self, step: int) -> str:
        """What building ``step``'s batch reads: its files, or the built-in world."""
        if not hasattr(self.source, "files_drawn"):
            return "the built-in world"
        files = []
        for index in range(self.first, self.first + self.batch_size):
            rng = np.random.default_rng([self.seed, step, index])
            files += [f for f in self.source.files_drawn(rng) if f not in files]
        return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")

    def finish(
        self, batch: tuple[torch.Tensor, ...], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A loaded batch -> normalised (v, v_plus) on ``device``, colours applied there."""
        v, v_plus, p, p_plus = (t.to(device, non_blocking=True) for t in batch)
        return self.augment.finish(v, p), self.augment.finish(v_plus, p_plus)

    def views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` as the network sees it (on the CPU)."""
        return self.finish(self[step], torch.device("cpu"))


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)  # workers share the cores with the training step
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group; the main process handles
    # them (it saves a checkpoint), so workers must keep serving batches until it is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def step_loader(
    batches: StepBatches, first_step: int, last_step: int, num_workers: int, pin: bool = False
) -> DataLoader:
    """Batches for steps first_step .. last_step - 1, in order, built by ``num_workers``;
    ``pin``: in page-locked memory, so ``finish``'s copy to the GPU overlaps the step."""
    # Its own generator: creating the loader must not draw from the global RNG, which a resumed
    # run restores exactly.
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(first_step, last_step),
        num_workers=num_workers,
        worker_init_fn=_single_thread_worker,
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
        pin_memory=pin,
    )


class LoadedBatches:
    """``step_loader``'s batches, as an iterator used inside ``with``: its workers are always
    shut down, and their failures are told as one line that names the files.

    Workers ignore SIGTERM (see ``_single_thread_worker``), so a loader left to the interpreter's
    exit would wait on them forever. Torch re-raises a worker's error wrapped in a traceback
    whose first line names no file, and tells a worker's death from its SIGCHLD handler, in
    whatever the main process is running then: hence ``__exit__`` for the whole block.
    """

    def __init__(
        self,
        batches: StepBatches,
        first_step: int,
        last_step: int,
        num_workers: int,
        pin: bool = False,
    ) -> None:
        self.batches, self.step = batches, first_step  # the batch awaited next
        self._iterator = iter(step_loader(batches, first_step, last_step, num_workers, pin))

    def __iter__(self) -> "LoadedBatches":
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        try:
            batch = next(self._iterator)
        except CaclError as err:  # bad data met mid-run: the run failed (exit 1), files named
            raise RunFailed(_original_message(err)) from None
        except ConnectionError:  # a worker died while handing over its batch's shared memory
            raise self._died("it closed its connection mid-batch") from None
        self.step += 1
        return batch

    def __enter__(self) -> "LoadedBatches":
        return self

    def __exit__(self, kind, error, trace) -> None:
        late = None
        try:
            shutdown = getattr(self._iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
        except RuntimeError as told:  # the SIGCHLD handler may tell a death during the shutdown
            if not _tells_a_death(told):
                raise
            late = told
        death = error if _tells_a_death(error) else late
        if death is not None and (error is None or error is death):
            raise self._died(str(death).splitlines()[0].strip()) from None

    def _died(self, how: str) -> RunFailed:
        # The dead worker may have been building a later batch than the one awaited.
        return RunFailed(
            f"a data loader worker died ({how}) at micro-step {self.step}, whose batch reads "
            f"{self.batches.describe(self.step)}; check those files, or give fewer "
            "data.num_workers or more memory, then --resume"
        )


def _tells_a_death(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and "DataLoader worker" in str(error)


def _original_message(err: Exception) -> str:
    """The message a worker raised: the last line of the traceback torch wraps it in."""
    text = str(err).strip()
    if not text.startswith("Caught "):
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last
