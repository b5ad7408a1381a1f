"""Metrics against hand-computed confusion matrices."""

import pytest
import torch

from cacl_cli.evaluate.metrics import confusion_matrix, scores


def test_confusion_counts_and_ignores_255():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_scores_by_hand():
    # truth 0: 1 right, 1 called 1; truth 1: 2 right; truth 2: 1 right
    cm = torch.tensor([[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    s = scores(cm)
    # IoU0 = 1/(2+1-1) = 0.5; IoU1 = 2/(2+3-2) = 2/3; IoU2 = 1
    assert s["iou"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert s["miou"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert s["acc"] == pytest.approx([0.5, 1.0, 1.0])
    assert s["macc"] == pytest.approx(2.5 / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 5)


def test_class_absent_everywhere_is_left_out_and_predicted_only_counts_as_zero():
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])  # class 2 predicted, never true; class 3 nowhere
    s = scores(confusion_matrix(pred, target, 4))
    assert s["iou"][3] is None and s["acc"][3] is None
    assert s["iou"][2] == 0.0 and s["acc"][2] is None
    assert s["miou"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert s["macc"] == pytest.approx((0.5 + 1.0) / 2)


def test_all_ignored_gives_zero_without_dividing_by_zero():
    s = scores(confusion_matrix(torch.tensor([1, 2]), torch.tensor([255, 255]), 3))
    assert s["miou"] == 0.0 and s["iou"] == [None, None, None]
