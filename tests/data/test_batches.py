"""Step-indexed batches: reproducible by step, and the frame stride reaches the pairs."""

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
