"""Backbones keep output stride 8 and torchvision's parameter names."""

import pytest
import torch
import torchvision

from cacl_cli.errors import CaclError
from cacl_cli.model.backbone import build_backbone, extra_blocks, stage_channels, through_stage


@pytest.mark.parametrize("width,size", [(16, 64), (32, 96), (64, 224)])
def test_resnet18_output_stride_8(width, size):
    net = build_backbone("resnet18", width).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, 8 * width, size // 8, size // 8)
    assert net.out_channels == 8 * width


def test_resnet18_dilates_its_last_two_stages():
    net = build_backbone("resnet18", 16)
    assert net.layer3[1].conv1.dilation == (2, 2) and net.layer4[1].conv1.dilation == (4, 4)
    assert net.layer3[0].conv1.stride == (1, 1) and net.layer4[0].conv1.stride == (1, 1)
    assert net.layer2[0].conv1.stride == (2, 2)


def test_resnet18_names_match_torchvision():
    ours = set(build_backbone("resnet18", 64).state_dict())
    theirs = {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    assert ours == theirs


def test_resnet50_output_stride_8():
    net = build_backbone("resnet50").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 2048, 8, 8)


def test_resnet50_refuses_narrow_width():
    with pytest.raises(CaclError, match="model.width"):
        build_backbone("resnet50", 16)


@pytest.mark.parametrize("arch,width", [("resnet18", 8), ("resnet50", 64)])
def test_an_earlier_stage_is_the_backbones_own_intermediate_map(arch, width):
    net = build_backbone(arch, width).eval()
    seen = {}
    hooks = [
        getattr(net, name).register_forward_hook(lambda m, i, o, name=name: seen.update({name: o}))
        for name in ("layer2", "layer3")
    ]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        net(x)
        for hook in hooks:  # the truncated runs below share these modules: keep the full run's maps
            hook.remove()
        for name in ("layer2", "layer3"):
            out = through_stage(net, name)(x)
            assert out.shape[-2:] == (8, 8)  # still stride 8
            torch.testing.assert_close(out, seen[name])
        torch.testing.assert_close(through_stage(net, "layer4")(x), net(x))


def test_a_stage_shares_the_backbones_weights_and_unknown_names_are_refused():
    net = build_backbone("resnet18", 8)
    assert through_stage(net, "layer3")[4] is net.layer1
    with pytest.raises(CaclError, match="layer5"):
        through_stage(net, "layer5")


@pytest.mark.parametrize("arch,width", [("resnet18", 8), ("resnet50", 64)])
def test_stage_channels_are_those_of_the_map_each_stage_returns(arch, width):
    net = build_backbone(arch, width).eval()
    with torch.no_grad():
        for name in ("layer2", "layer3", "layer4"):
            out = through_stage(net, name)(torch.randn(1, 3, 32, 32))
            assert stage_channels(net, name) == out.shape[1]
            assert through_stage(net, name).out_channels == out.shape[1]
    assert stage_channels(net, "layer4") == net.out_channels


@pytest.mark.parametrize("arch,width", [("resnet18", 8), ("resnet50", 64)])
def test_extra_blocks_are_fresh_copies_of_a_stages_last_block_shape(arch, width):
    net = build_backbone(arch, width)
    blocks = extra_blocks(net, "layer4", 2)
    assert len(blocks) == 2 and type(blocks[0]) is type(net.layer4[-1])
    for mine, theirs in zip(blocks[0].parameters(), net.layer4[-1].parameters()):
        assert mine.shape == theirs.shape and mine is not theirs
    x = torch.randn(2, stage_channels(net, "layer4"), 4, 4)
    assert blocks(x).shape == x.shape
    assert len(extra_blocks(net, "layer4", 0)) == 0 and extra_blocks(net, "layer4", 0)(x) is x
