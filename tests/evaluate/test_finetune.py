"""evaluate/finetune.py's pieces: the nested subsets and the training crops."""

import numpy as np
import torch

from cacl_cli.evaluate.finetune import random_crop, subset
from cacl_cli.evaluate.metrics import IGNORE_INDEX


def test_subsets_are_nested_seeded_and_never_empty():
    one, five, all_ = (subset(300, f, seed=0) for f in (1, 5, 100))
    assert set(one) <= set(five) <= set(all_) and len(all_) == 300
    assert (len(one), len(five)) == (3, 15)
    assert subset(300, 5, seed=0) == five != subset(300, 5, seed=1)
    assert len(subset(10, 1, seed=0)) == 1


def test_a_crop_larger_than_the_image_pads_the_image_with_zeros_and_the_mask_with_ignore():
    x, mask = torch.ones(3, 4, 6), torch.zeros(4, 6, dtype=torch.long)
    cx, cmask = random_crop(x, mask, 8, np.random.default_rng(0))
    assert cx.shape == (3, 8, 8) and cmask.shape == (8, 8)
    assert int((cmask == IGNORE_INDEX).sum()) == 64 - 24 and float(cx.sum()) == 3 * 24
