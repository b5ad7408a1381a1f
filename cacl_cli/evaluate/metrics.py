"""Segmentation metrics from a confusion matrix.

Conventions (stated in every report): pixels labelled 255 are ignored. A class's IoU is undefined,
and left out of the mean, only when the class is absent from both the ground truth and the
prediction; a class predicted but absent from the ground truth has IoU 0. A class's accuracy
(recall) is undefined when it is absent from the ground truth.
"""

from __future__ import annotations

import torch

from cacl_cli.data.segmentation import IGNORE_INDEX

CONVENTION = (
    "255 = ignore; a class absent from both ground truth and prediction is left out of "
    "mIoU; predicted but absent from the ground truth counts as IoU 0; mAcc averages "
    "the classes present in the ground truth"
)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; rows are ground truth, columns prediction."""
    keep = target != IGNORE_INDEX
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(confusion: torch.Tensor) -> dict:
    """mIoU, mAcc and per-class IoU (None where undefined) from a confusion matrix."""
    cm = confusion.double()
    true_positive = cm.diag()
    in_truth, in_pred = cm.sum(1), cm.sum(0)
    union = in_truth + in_pred - true_positive
    iou = [float(t / u) if u > 0 else None for t, u in zip(true_positive, union)]
    acc = [float(t / n) if n > 0 else None for t, n in zip(true_positive, in_truth)]
    defined_iou = [v for v in iou if v is not None]
    defined_acc = [v for v in acc if v is not None]
    return {
        "miou": sum(defined_iou) / len(defined_iou) if defined_iou else 0.0,
        "macc": sum(defined_acc) / len(defined_acc) if defined_acc else 0.0,
        "pixel_acc": float(true_positive.sum() / cm.sum()) if cm.sum() > 0 else 0.0,
        "iou": iou,
        "acc": acc,
    }
