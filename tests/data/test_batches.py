"""Step-indexed batches: reproducible by step, and the frame stride reaches the pairs."""

import pytest
import torch

from cacl_cli.config import resolve
from cacl_cli.training import build_batches
from tests.conftest import TINY

NO_COLOUR = ["augment.jitter_p=0.0", "augment.grayscale_p=0.0", "augment.blur_p=0.0"]


def batches(*overrides):
    return build_batches(resolve("tiny-world", TINY + NO_COLOUR + list(overrides)))


def test_a_step_always_gives_the_same_batch_and_steps_differ():
    a, b = batches().views(3), batches().views(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(batches().views(4)[0], a[0])
    assert a[0].shape == (16, 3, 32, 32) and a[0].dtype == torch.float32


def test_stride_zero_pairs_a_frame_with_itself_and_stride_eight_does_not():
    v, v_plus = batches("data.stride=0").views(0)
    assert torch.equal(v, v_plus)
    v, v_plus = batches("data.stride=8").views(0)
    assert not torch.equal(v, v_plus)


def test_run_seed_changes_the_batches():
    assert not torch.equal(batches("run.seed=1").views(0)[0], batches("run.seed=2").views(0)[0])


class _DyingLoader:
    """A loader iterator whose worker dies: handing over a batch fails with ``on_next``, and the
    shutdown then hears of the death (torch's SIGCHLD handler) where ``on_shutdown`` says so."""

    def __init__(self, on_next, on_shutdown=None):
        self.on_next, self.on_shutdown = on_next, on_shutdown

    def __next__(self):
        raise self.on_next

    def _shutdown_workers(self):
        if self.on_shutdown is not None:
            raise self.on_shutdown


DEATH = RuntimeError("DataLoader worker (pid 17093) is killed by signal: Killed. ")


@pytest.mark.parametrize(
    "on_next,on_shutdown",
    [(DEATH, None), (ConnectionResetError(104, "reset"), DEATH), (ConnectionResetError(), None)],
    ids=["told while waiting", "reset, then told in the shutdown", "reset only"],
)
def test_a_dead_worker_is_one_run_failure_naming_the_step_however_torch_tells_it(
    on_next, on_shutdown
):
    from cacl_cli.data.batches import LoadedBatches
    from cacl_cli.errors import RunFailed

    loaded = LoadedBatches(batches(), 5, 9, num_workers=0)
    loaded._iterator = _DyingLoader(on_next, on_shutdown)
    with pytest.raises(RunFailed, match="a data loader worker died .* at micro-step 5, whose"):
        with loaded:
            next(loaded)


def test_a_death_told_only_in_the_shutdown_after_the_last_batch_still_fails_the_run():
    from cacl_cli.data.batches import LoadedBatches
    from cacl_cli.errors import RunFailed

    loaded = LoadedBatches(batches(), 5, 9, num_workers=0)
    loaded._iterator = _DyingLoader(StopIteration(), DEATH)
    with pytest.raises(RunFailed, match="killed by signal"):
        with loaded:
            pass
