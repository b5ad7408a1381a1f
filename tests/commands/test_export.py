"""`cacl export`: the backbone loads into torchvision's ResNet with strict=True."""

import torch
import torchvision

from tests.commands.test_pretrain import one_line_error
from tests.conftest import pretrained, run_cacl


def test_exported_backbone_loads_into_torchvision_strictly(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=1", "model.width=64")
    result = run_cacl("export", run)
    assert result.returncode == 0, result.stderr
    backbone = torch.load(run / "export" / "backbone.pt", weights_only=True)
    heads = torch.load(run / "export" / "heads.pt", weights_only=True)
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    net.load_state_dict(backbone, strict=True)
    trained = torch.load(run / "checkpoints" / "step-0000001.pt", weights_only=True)["model"]
    assert torch.equal(net.layer4[1].conv2.weight, trained["online.backbone.layer4.1.conv2.weight"])
    assert {k.split(".")[0] for k in heads} == {"global", "pixel", "cycle"}


def test_exported_resnet50_loads_into_torchvision_strictly(tmp_path):
    run = tmp_path / "run"
    pretrained(
        run, "schedule.steps=1", "model.arch=resnet50", "model.width=64", "data.batch_size=4"
    )
    assert run_cacl("export", run).returncode == 0
    net = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
    net.fc = torch.nn.Identity()
    net.load_state_dict(torch.load(run / "export" / "backbone.pt", weights_only=True), strict=True)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


def test_export_of_a_non_checkpoint_is_one_line(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("nope")
    assert "junk.pt" in one_line_error(run_cacl("export", junk))
