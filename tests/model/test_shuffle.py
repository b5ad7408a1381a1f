"""Pixel shuffle is exact for position-free networks; shuffle-BN keeps the batch order."""

import pytest
import torch
from torch import nn

from cacl_cli.model.shuffle import in_groups, random_roll, rolled, with_group_batch_norm


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


class MapNet(nn.Module):
    """A conv and a BN, returning a dict as the encoders do."""

    def __init__(self) -> None:
        super().__init__()
        # No bias, as in a ResNet: before a BN its true gradient is zero, and comparing two
        # float32 sums of rounding noise near zero fails on some thread counts.
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return {"map": self.bn(self.conv(x))}


class BatchNormOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return {"map": self.bn(x)}


def grouped_net(seed=0):
    torch.manual_seed(seed)
    return with_group_batch_norm(MapNet()).train()


def test_shuffled_groups_use_their_own_batch_statistics_and_keep_order():
    net = with_group_batch_norm(BatchNormOnly()).train()
    x = torch.randn(8, 3, 4, 4)
    x[:4] += 5.0  # two very different halves
    grouped = in_groups(net, x, groups=2, shuffle=False)["map"]
    whole = net(x)["map"]
    assert not torch.allclose(grouped, whole)  # statistics differ per group
    # BN is a positive affine map per channel, so each output keeps its own input's pixel order
    for i in range(8):
        for ch in range(3):
            assert torch.equal(grouped[i, ch].flatten().argsort(), x[i, ch].flatten().argsort())


def test_one_group_is_the_plain_forward():
    net, plain = grouped_net(), MapNet().train()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(6, 3, 2, 2)
    torch.testing.assert_close(in_groups(net, x, 1)["map"], plain(x)["map"])


@pytest.mark.parametrize("batch,groups", [(8, 2), (8, 4), (12, 3), (6, 4), (5, 3)])
def test_one_pass_equals_one_call_per_group_with_gradients_and_running_statistics(batch, groups):
    """The reference is the plain network called once per chunk, as on ``groups`` devices."""
    net, plain = grouped_net(), MapNet().train()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(batch, 3, 5, 5)
    got = in_groups(net, x, groups, shuffle=False)["map"]
    expected = torch.cat([plain(chunk)["map"] for chunk in x.chunk(groups)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(got)
    (got * weights).sum().backward()
    (expected * weights).sum().backward()
    for p_got, p_expected in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(p_got.grad, p_expected.grad, rtol=1e-4, atol=1e-5)
    for name, buffer in plain.bn.named_buffers():
        torch.testing.assert_close(getattr(net.bn, name), buffer, rtol=1e-5, atol=1e-6)
    assert net.bn.groups == 1  # the grouping ends with the call


def test_shuffled_groups_are_random_and_come_back_in_order():
    net, plain = grouped_net(), MapNet().train()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(8, 3, 4, 4)
    torch.manual_seed(3)
    got = in_groups(net, x, groups=2)["map"]
    torch.manual_seed(3)
    perm = torch.randperm(8)
    parts = [plain(chunk)["map"] for chunk in x[perm].chunk(2)]
    torch.testing.assert_close(got, torch.cat(parts)[torch.argsort(perm)], rtol=1e-5, atol=1e-6)


def test_a_net_with_plain_batch_norm_is_refused():
    with pytest.raises(ValueError, match="with_group_batch_norm"):
        in_groups(MapNet().train(), torch.randn(4, 3, 2, 2), 2)
