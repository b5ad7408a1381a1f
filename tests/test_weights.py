"""Foreign backbone weights: torchvision and MoCo-v2 layouts load fully, or not at all."""

import pytest
import torch
import torchvision

from cacl_cli.errors import CaclError
from cacl_cli.weights import load_backbone


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_every_backbone_tensor(tmp_path, arch):
    reference = getattr(torchvision.models, arch)()
    torch.save(reference.state_dict(), tmp_path / "tv.pt")
    net, report = load_backbone(tmp_path / "tv.pt", arch, 64)
    assert report["missing"] == [] and report["prefix"] == ""
    assert report["unused"] == ["fc.bias", "fc.weight"]
    assert report["loaded"] == len(reference.state_dict()) - 2
    assert torch.equal(net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_moco_v2_checkpoint_layout_loads(tmp_path, arch):
    reference = getattr(torchvision.models, arch)()
    state = {f"module.encoder_q.{k}": v for k, v in reference.state_dict().items()}
    state["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # must be ignored
    state["module.queue"] = torch.zeros(128, 16)
    torch.save({"state_dict": state, "epoch": 200}, tmp_path / "moco.pth.tar")
    net, report = load_backbone(tmp_path / "moco.pth.tar", arch, 64)
    assert report["prefix"] == "module.encoder_q." and report["missing"] == []
    assert (
        "module.encoder_k.conv1.weight" in report["unused"] and "module.queue" in report["unused"]
    )
    assert torch.equal(net.conv1.weight, reference.conv1.weight)


def test_partial_or_empty_loads_are_refused(tmp_path):
    partial = {
        k: v
        for k, v in torchvision.models.resnet18().state_dict().items()
        if not k.startswith("layer4")
    }
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(CaclError, match="refusing a partial load"):
        load_backbone(tmp_path / "partial.pt", "resnet18", 64)
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CaclError, match="no resnet18 backbone weights"):
        load_backbone(tmp_path / "other.pt", "resnet18", 64)
