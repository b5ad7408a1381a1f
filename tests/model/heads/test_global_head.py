"""model/heads/global_head.py: g_G, MoCo-v2's image-level contrast (eq. 3)."""

import pytest
import torch
import torch.nn.functional as F

from cacl_cli.config import resolve
from cacl_cli.model import losses
from cacl_cli.model.heads import GlobalHead, global_vector


def test_the_image_vector_is_the_normalised_mean_of_the_dense_map():
    raw = torch.randn(3, 16, 4, 5)
    vector = global_vector(raw)
    torch.testing.assert_close(vector, F.normalize(raw.mean(dim=(2, 3)), dim=1))
    torch.testing.assert_close(vector.norm(dim=1), torch.ones(3))


def test_its_keys_weight_and_temperature_come_from_the_config():
    cfg = resolve("tiny-world", ["loss.global_weight=0.5", "loss.tau=0.2"])
    head = GlobalHead.from_config(cfg)
    assert (head.weight, head.tau, head.queue_size) == (0.5, 0.2, cfg.moco.queue_size)
    assert not head.dense


def test_its_loss_is_info_nce_of_the_image_vectors_against_the_queue():
    head = GlobalHead(1.0, 8, 0.1)
    q = head.outputs(torch.randn(4, 16, 3, 3))
    k = head.outputs(torch.randn(4, 16, 3, 3))
    queue = F.normalize(torch.randn(8, 16), dim=1)
    expected = losses.info_nce(q["global_vector"], k["global_vector"], queue, 0.1)
    assert float(head.loss(q, k, queue, None)) == pytest.approx(float(expected))
    assert torch.equal(head.keys(k), k["global_vector"])
