"""model/heads/base.py: what every head shares: its queue's arrival rule, its dtype, its chance."""

import math

import pytest
import torch

from cacl_cli.config import resolve
from cacl_cli.errors import CaclError
from cacl_cli.model.heads import CycleHead, GlobalHead, PixelHead


@pytest.mark.parametrize(
    "head,size,ranks,arriving",
    [
        (GlobalHead, 64, 1, 8),
        (GlobalHead, 64, 2, 16),
        (PixelHead, 64, 1, 16),
        (PixelHead, 8, 1, 16),  # a queue smaller than one arrival: a divisor is fine too
    ],
)
def test_a_queue_takes_whole_arrivals_so_the_pointer_never_splits_a_batch(
    head, size, ranks, arriving
):
    cfg = resolve(
        "tiny-world", ["data.batch_size=8", "moco.pixels_per_image=2", f"moco.queue_size={size}"]
    )
    assert head.keys_per_step(cfg, ranks) == arriving
    head.check(cfg, ranks)  # no error


def test_a_queue_that_splits_arrivals_is_refused_naming_its_key_and_the_arrivals():
    cfg = resolve(
        "tiny-world", ["data.batch_size=8", "moco.pixels_per_image=2", "moco.queue_size=40"]
    )
    with pytest.raises(CaclError, match="'moco.queue_size' is 40 but the pixel queue receives 16"):
        PixelHead.check(cfg, 1)
    with pytest.raises(CaclError, match="moco.pixels_per_image 2"):
        PixelHead.check(cfg, 1)


def test_queue_products_follow_queue_matmul_and_the_machine(monkeypatch):
    from cacl_cli.model.heads import base

    cpu = torch.device("cpu")
    head = PixelHead(1.0, 64, 0.07, 2, queue_matmul="auto")
    monkeypatch.setattr(base, "bf16_matmul_pays", lambda device: True)
    assert head.queue_dtype(cpu) == torch.bfloat16
    monkeypatch.setattr(base, "bf16_matmul_pays", lambda device: False)
    assert head.queue_dtype(cpu) == torch.float32
    assert PixelHead(1.0, 64, 0.07, 2, "bfloat16").queue_dtype(cpu) == torch.bfloat16


def test_a_contrastive_heads_chance_is_the_log_of_its_negatives_and_positive():
    head = GlobalHead(1.0, 4095, 0.07)
    assert head.chance({}, {}) == pytest.approx(math.log(4096))
    assert CycleHead(1.0, 64, 0.07, 2).dense and not head.dense  # dense map vs last stage
