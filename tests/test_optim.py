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


def reference_lars_step(params, lr, momentum, weight_decay, trust, buffers):
    """One LARS step written out per parameter (the update rule, for comparison)."""
    for p in params:
        if p.grad is None:
            continue
        update = p.grad + weight_decay * p
        w_norm, u_norm = p.norm(), update.norm()
        if w_norm > 0 and u_norm > 0:
            update = update * (trust * w_norm / u_norm)
        buffers[p] = update.clone() if p not in buffers else momentum * buffers[p] + update
        p.sub_(lr * buffers[p])


def test_fused_lars_equals_the_per_parameter_rule_over_several_steps():
    torch.manual_seed(0)
    shapes = [(8, 3, 3, 3), (8,), (16, 8), (5,), (4, 4)]
    fused = [nn.Parameter(torch.randn(s)) for s in shapes]
    plain = [p.detach().clone() for p in fused]
    opt = LARS([{"params": fused}], lr=0.5, momentum=0.9, weight_decay=1e-2, trust=0.01)
    buffers = {}
    for step in range(5):
        grads = [torch.randn(s) for s in shapes]
        grads[3] = None if step < 2 else grads[3]  # a parameter that joins late
        for p, q, g in zip(fused, plain, grads):
            p.grad, q.grad = g, None if g is None else g.clone()
        opt.step()
        with torch.no_grad():
            reference_lars_step(plain, 0.5, 0.9, 1e-2, 0.01, buffers)
    for p, q in zip(fused, plain):
        torch.testing.assert_close(p.detach(), q, rtol=1e-6, atol=1e-6)
