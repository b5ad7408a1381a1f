"""LARS and the learning-rate schedule."""

import math

import pytest
import torch
from torch import nn

from cacl_cli.optim import LARS, lars_param_groups, lr_at, scaled_lr


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_zero():
    rates = [lr_at(step, 1.0, 100, 10) for step in range(100)]
    assert len(rates) == 100
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert rates[-1] < 0.001 and all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_linear_scaling_from_the_reference_batch():
    assert scaled_lr(1.0, 512, 32) == pytest.approx(1 / 16)


def test_bias_and_norm_parameters_are_excluded_from_lars_and_decay():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    adapted, plain = lars_param_groups(net)
    assert [p.shape for p in adapted["params"]] == [torch.Size([4, 3, 3, 3])]
    assert len(plain["params"]) == 3 and plain["lars"] is False and plain["weight_decay"] == 0


def test_lars_update_is_trust_ratio_times_weight_norm():
    w = nn.Parameter(torch.ones(2, 2) * 3.0)  # ||w|| = 6
    b = nn.Parameter(torch.ones(2))
    opt = LARS(
        [{"params": [w]}, {"params": [b], "lars": False, "weight_decay": 0.0}],
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        trust=0.01,
    )
    w.grad = torch.ones(2, 2) * 100.0  # ||g|| = 200
    b.grad = torch.ones(2) * 0.5
    opt.step()
    # step = lr * trust * ||w|| / ||g|| * g = 0.01 * 6 / 200 * 100 = 0.03 per entry
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 2.97))
    torch.testing.assert_close(b.detach(), torch.full((2,), 0.5))  # plain SGD step


def test_lars_minimises_a_quadratic():
    w = nn.Parameter(torch.tensor([[4.0, -3.0]]))
    opt = LARS([{"params": [w]}], lr=10.0, momentum=0.9, weight_decay=0.0, trust=0.01)
    for _ in range(300):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert w.norm() < 1.0
