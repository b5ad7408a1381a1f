"""What the probe and fine-tuning share: input, loss, scoring."""

import numpy as np
import pytest
import torch

from cacl_cli.data.segmentation import SegmentationSet
from cacl_cli.evaluate.common import evaluate, prepare, segment_loss


def test_prepare_resizes_image_and_labels_together_keeping_every_label():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 1
    mask[0, 0] = 255  # ignored pixels stay ignored, not blended
    x, labels = prepare(image, mask, 20)  # about 20 px, both sides multiples of the stride
    assert x.shape == (3, 16, 32) and labels.shape == (16, 32) and labels.dtype == torch.long
    assert set(labels.unique().tolist()) <= {0, 1, 255}
    kept_x, kept = prepare(image, mask, 0)  # its own size, snapped to the stride
    assert kept_x.shape == (3, 40, 64) and kept.shape == (40, 64)
    image_80 = image[:, :40].copy()  # a frame already of the stride's size is not resampled
    own_x, own = prepare(image_80, mask[:, :40].copy(), 0)
    assert torch.equal(own, torch.from_numpy(mask[:, :40]).long()) and own_x.shape == (3, 40, 40)


def test_segment_loss_upsamples_and_ignores_255():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 10.0  # class 1 everywhere
    mask = torch.ones(1, 16, 16, dtype=torch.long)
    assert float(segment_loss(logits, mask)) == pytest.approx(0.0, abs=1e-4)
    mask[0, :8] = 255
    mask[0, 8:] = 0
    assert float(segment_loss(logits, mask)) == pytest.approx(10.0, abs=1e-3)


def test_evaluate_scores_a_perfect_and_a_constant_predictor():
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 1
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = 255
    data = SegmentationSet("toy", ["a", "b"], 2, lambda i: (image, mask), ["0", "1"])

    def perfect(x):  # class from brightness, at stride 8 it would blur: predict at full size
        bright = (x.mean(1, keepdim=True) > 0).float()
        return torch.cat([1 - bright, bright], dim=1)

    assert evaluate(perfect, data, 0, torch.device("cpu"))["miou"] == pytest.approx(1.0)
    constant = evaluate(
        lambda x: torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 2),
        data,
        0,
        torch.device("cpu"),
    )
    assert constant["miou"] == pytest.approx(0.25)  # class a: IoU 1/2, class b: 0 (fractions)
