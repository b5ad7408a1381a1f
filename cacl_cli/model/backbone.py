"""The backbone ``f``: a ResNet with output stride 8, as the paper's segmentation setting asks.

The last two stages keep stride 1 and dilate their 3x3 convolutions by 2 and 4 instead, so a 224 px
input gives a 28x28 map. torchvision's BasicBlock refuses dilation, so ResNet-18 is built here from
its own dilated block; ResNet-50 is torchvision's with ``replace_stride_with_dilation``. Parameter
names follow torchvision (``conv1``, ``layer1.0.conv1`` ...), so weights move between the two.
"""

from __future__ import annotations

import copy

import torch
import torchvision
from torch import nn

from cacl_cli.errors import CaclError

OUTPUT_STRIDE = 8
STAGES = ("layer1", "layer2", "layer3", "layer4")


class DilatedBasicBlock(nn.Module):
    """ResNet's two-conv residual block, with a dilation for the stride-1 stages."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DilatedResNet18(nn.Module):
    """ResNet-18 at output stride 8; ``width`` is the first stage's channels (64 in the paper)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.layer1 = self._stage(w, w, stride=1, dilation=1)
        self.layer2 = self._stage(w, 2 * w, stride=2, dilation=1)
        self.layer3 = self._stage(2 * w, 4 * w, stride=1, dilation=2)
        self.layer4 = self._stage(4 * w, 8 * w, stride=1, dilation=4)
        self.out_channels = 8 * w
        _init_like_torchvision(self)

    @staticmethod
    def _stage(inplanes: int, planes: int, stride: int, dilation: int) -> nn.Sequential:
        # The first block of a dilated stage uses half the dilation, as torchvision does.
        first = DilatedBasicBlock(inplanes, planes, stride, max(1, dilation // 2))
        return nn.Sequential(first, DilatedBasicBlock(planes, planes, 1, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DilatedResNet50(nn.Module):
    """torchvision's ResNet-50 with its last two stages dilated; the classifier removed."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.resnet50(
            weights=None, replace_stride_with_dilation=[False, True, True]
        )
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.out_channels = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _init_like_torchvision(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def through_stage(backbone: nn.Module, last: str) -> nn.Sequential:
    """The backbone's stem and its stages up to ``last``, sharing the backbone's weights.

    Label propagation often reads an earlier stage than the last: the contrastive random walk
    uses res4 (``layer3``). In these dilated networks ``layer2`` to ``layer4`` all have stride 8.
    """
    if last not in STAGES:
        raise CaclError(f"unknown stage '{last}'; use one of {', '.join(STAGES)}")
    names = ("conv1", "bn1", "relu", "maxpool") + STAGES[: STAGES.index(last) + 1]
    stages = nn.Sequential(*(getattr(backbone, name) for name in names))
    stages.out_channels = stage_channels(backbone, last)  # as a backbone tells its heads
    return stages


def stage_channels(backbone: nn.Module, stage: str) -> int:
    """Channels of the map a stage returns: those of its last batch norm."""
    norms = [m for m in getattr(backbone, stage).modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


def extra_blocks(backbone: nn.Module, stage: str, count: int) -> nn.Sequential:
    """``count`` freshly initialised residual blocks shaped like ``stage``'s last (the same
    channels and dilation), to stack above it; with 0, an empty stack that passes its input on."""
    blocks = nn.Sequential(*(copy.deepcopy(getattr(backbone, stage)[-1]) for _ in range(count)))
    _init_like_torchvision(blocks)
    return blocks


def conv_layout(net: nn.Module) -> dict[str, dict[str, list[int]]]:
    """Stride, dilation and padding of every convolution: what a torchvision ResNet with the
    same tensors must be set to, conv by conv, to compute the same features (cacl runs both 3x3
    convs of a dilated stage's first block at the previous dilation, and its shortcuts there at
    stride 1, which torchvision's own dilation option cannot express for ResNet-18)."""
    return {
        name: {"stride": list(m.stride), "dilation": list(m.dilation), "padding": list(m.padding)}
        for name, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def build_backbone(arch: str, width: int = 64) -> nn.Module:
    """A dilated ResNet by name; its ``out_channels`` tells the heads their input size."""
    if arch == "resnet18":
        return DilatedResNet18(width)
    if arch == "resnet50":
        if width != 64:
            raise CaclError(
                f"key 'model.width' must be 64 for resnet50 (got {width}); "
                "use resnet18 for narrow models"
            )
        return DilatedResNet50()
    raise CaclError(f"key 'model.arch': unknown backbone '{arch}'")
