"""model/heads/pixel_head.py: g_P, every cell contrasted with its match (eq. 4)."""

import pytest
import torch
import torch.nn.functional as F

from cacl_cli.config import resolve
from cacl_cli.errors import CaclError
from cacl_cli.model.heads import PixelHead


def test_its_keys_come_from_the_config():
    cfg = resolve(
        "tiny-world",
        [
            "loss.pixel_weight=0.3",
            "loss.pixel_positive=position",
            "loss.pixel_negatives=queue_and_image",
        ],
    )
    head = PixelHead.from_config(cfg)
    assert (head.weight, head.positive, head.image_negatives) == (0.3, "position", True)
    assert head.pixels_per_image == cfg.moco.pixels_per_image


def test_eq4_positives_need_the_global_head():
    cfg = resolve("tiny-world", ["loss.pixel_positive=global", "heads.global=false"])
    with pytest.raises(CaclError, match="'loss.pixel_positive' is 'global' but 'heads.global'"):
        PixelHead.check(cfg, 1)


def test_same_cell_positives_find_each_cell_itself():
    head = PixelHead(1.0, 16, 0.07, 2, positive="position")
    maps = {"pixel": F.normalize(torch.randn(2, 8, 3, 4), dim=1)}
    assert torch.equal(head.match(maps, maps), torch.arange(12).expand(2, 12))
