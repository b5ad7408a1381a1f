"""`cacl export`: the backbone loads into torchvision's ResNet with strict=True."""

import pytest
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


def test_exporting_twice_into_the_default_folder_names_a_way_out_that_exists(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=1")
    assert run_cacl("export", run).returncode == 0
    message = one_line_error(run_cacl("export", run))
    assert "--overwrite to replace it, or --out FOLDER for another" in message
    assert "leave --out out" not in message


@pytest.mark.slow  # 20 s: a width-64 pretrain, an export and a probe
def test_the_exported_layout_rebuilds_the_same_network_in_torchvision_and_is_checked(tmp_path):
    import json

    from cacl_cli.model.backbone import build_backbone

    run = tmp_path / "run"
    pretrained(run, "schedule.steps=1", "model.width=64")
    assert run_cacl("export", run).returncode == 0
    layout = json.loads((run / "export" / "layout.json").read_text())
    assert layout["arch"] == "resnet18" and layout["output_stride"] == 8
    # cacl's first block of layer4 runs both 3x3 convs at the previous dilation, 2
    assert layout["convs"]["layer4.0.conv2"]["dilation"] == [2, 2]
    assert layout["convs"]["layer4.1.conv1"]["dilation"] == [4, 4]
    net = torchvision.models.resnet18()  # the recipe of `cacl export --help`
    net.fc = torch.nn.Identity()
    for name, conv in layout["convs"].items():
        layer = net.get_submodule(name)
        layer.stride, layer.dilation, layer.padding = map(tuple, conv.values())
    net.load_state_dict(torch.load(run / "export" / "backbone.pt", weights_only=True))
    ours = build_backbone("resnet18", 64)
    ours.load_state_dict(torch.load(run / "export" / "backbone.pt", weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    stem = torch.nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    ).eval()
    torch.testing.assert_close(stem(x), ours.eval()(x))
    layout["convs"]["layer4.0.conv2"]["dilation"] = [4, 4]  # a network that differs
    (run / "export" / "layout.json").write_text(json.dumps(layout))
    exported = run / "export" / "backbone.pt"
    done = run_cacl("probe", "--checkpoint", exported, "--out", tmp_path / "p")
    assert "layout.json: the layout its weights were exported with differs" in one_line_error(done)
