"""Pixel shuffle is exact for position-free networks; shuffle-BN keeps the batch order."""

import torch
from torch import nn

from cacl_cli.model.shuffle import in_groups, random_roll, rolled


def pointwise_net():
    """A network of 1x1 convolutions at stride 8: no padding, so no position information."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 8, 1, stride=8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    return lambda x: {"map": conv(x), "vector": conv(x).mean((2, 3))}


def test_roll_and_roll_back_is_exact_for_pointwise_network():
    net = pointwise_net()
    x = torch.randn(2, 3, 64, 48)
    plain = net(x)
    for shift in [(8, 16), (56, 40), (0, 8)]:
        out = rolled(net, x, shift)
        torch.testing.assert_close(out["map"], plain["map"])
        torch.testing.assert_close(out["vector"], plain["vector"])


def test_roll_changes_what_a_padded_network_sees():
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=8)
    net = lambda x: {"map": conv(x)}  # noqa: E731
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(rolled(net, x, (8, 8))["map"], net(x)["map"])


def test_random_roll_is_a_multiple_of_the_stride():
    torch.manual_seed(1)
    shifts = {random_roll(64, 32) for _ in range(200)}
    assert all(a % 8 == 0 and b % 8 == 0 and 0 <= a < 64 and 0 <= b < 32 for a, b in shifts)
    assert len({a for a, _ in shifts}) == 8  # every row offset is drawn


def test_shuffled_groups_use_their_own_batch_statistics_and_keep_order():
    bn = nn.BatchNorm2d(3).train()
    net = lambda x: {"map": bn(x)}  # noqa: E731
    x = torch.randn(8, 3, 4, 4)
    x[:4] += 5.0  # two very different halves
    torch.manual_seed(0)
    grouped = in_groups(net, x, groups=2)["map"]
    whole = net(x)["map"]
    assert not torch.allclose(grouped, whole)  # statistics differ per group
    # BN is a positive affine map per channel, so each output keeps its own input's pixel order
    for i in range(8):
        for ch in range(3):
            assert torch.equal(grouped[i, ch].flatten().argsort(), x[i, ch].flatten().argsort())


def test_one_group_is_the_plain_forward():
    bn = nn.BatchNorm2d(3).train()
    x = torch.randn(6, 3, 2, 2)
    torch.testing.assert_close(in_groups(lambda t: {"m": bn(t)}, x, 1)["m"], bn(x))


def test_unshuffled_groups_are_contiguous_chunks():
    bn = nn.BatchNorm2d(3).train()
    x = torch.randn(8, 3, 4, 4)
    grouped = in_groups(lambda t: {"m": bn(t)}, x, groups=2, shuffle=False)["m"]
    torch.testing.assert_close(grouped, torch.cat([bn(x[:4]), bn(x[4:])]))
