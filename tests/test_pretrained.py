"""Foreign backbone weights: torchvision and MoCo-v2 layouts load fully, or not at all."""

import pytest
import torch
import torchvision

from cacl_cli.errors import CaclError
from cacl_cli.model.backbone import build_backbone
from cacl_cli.pretrained import load_backbone, load_encoder, shape_of
from tests.conftest import pretrained, run_cacl


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


@pytest.mark.parametrize("arch,width", [("resnet18", 64), ("resnet18", 8), ("resnet50", 64)])
def test_arch_and_width_come_from_the_weights(tmp_path, arch, width):
    saved = build_backbone(arch, width)
    torch.save({f"backbone.{k}": v for k, v in saved.state_dict().items()}, tmp_path / "b.pt")
    assert shape_of(torch.load(tmp_path / "b.pt", weights_only=True)) == (arch, width)
    other = ("resnet50", 64) if arch == "resnet18" else ("resnet18", 32)
    net, report = load_backbone(tmp_path / "b.pt", *other)  # the shapes win over the guess
    assert (report["arch"], report["width"], report["missing"]) == (arch, width, [])
    assert torch.equal(net.conv1.weight, saved.conv1.weight)


def test_a_width_64_file_loads_in_visualize_with_no_set(tmp_path, shared_data):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pt")
    frames = shared_data / "frames" / "bedroom"
    args = ("visualize", frames, "--pixel", "100,100", "--size", "64", "--out", tmp_path / "v")
    done = run_cacl(*args, "--checkpoint", tmp_path / "tv.pt")  # tiny-world's width is 16
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "v" / "sim-r0-p0-backbone.npy").is_file()


def test_an_encoder_with_dense_heads_on_layer3_and_a_neck_loads_as_it_was_trained(tmp_path):
    overrides = ("schedule.steps=1", "model.dense_stage=layer3", "model.dense_neck=1")
    encoder, _ = load_encoder(pretrained(tmp_path / "run", *overrides), "resnet18", 16)
    assert encoder.dense_stage == "layer3" and len(encoder.neck) == 1
    assert encoder.heads["pixel"][0].in_channels == 4 * 8  # layer3 of width 8


def test_a_checkpoint_with_a_key_this_cacl_lacks_says_so_and_how_to_read_it(tmp_path):
    run = pretrained(tmp_path / "run", "schedule.steps=1")
    (checkpoint,) = (run / "checkpoints").glob("step-*.pt")
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["model"]["future_key"] = 1  # as a newer cacl would write it
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(CaclError, match="unknown key 'model.future_key'.*upgrade cacl"):
        load_backbone(tmp_path / "newer.pt", "resnet18", 8)


@pytest.mark.parametrize("loader", [load_backbone, load_encoder])
def test_a_foreign_state_dict_is_read_from_disk_once(tmp_path, monkeypatch, loader):
    torch.save(build_backbone("resnet18", 8).state_dict(), tmp_path / "b.pt")
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real_load(*a, **k))
    _, report = loader(tmp_path / "b.pt", "resnet50", 64)
    assert len(reads) == 1  # one torch.load, of the file opened by files.open_regular
    assert (report["arch"], report["width"]) == ("resnet18", 8)


def test_a_checkpoint_of_a_newer_format_is_refused_with_what_to_do(tmp_path):
    run = pretrained(tmp_path / "run", "schedule.steps=1")
    (checkpoint,) = (run / "checkpoints").glob("step-*.pt")
    state = torch.load(checkpoint, weights_only=True)
    state["format"] = 99
    torch.save(state, tmp_path / "newer.pt")
    with pytest.raises(CaclError, match="newer.pt has checkpoint format 99.*upgrade cacl"):
        load_encoder(tmp_path / "newer.pt", "resnet18", 8)


def test_weights_holding_nan_are_refused_before_the_probe_runs(tmp_path):
    state = build_backbone("resnet18", 8).state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "diverged.pt")
    done = run_cacl("probe", "--checkpoint", tmp_path / "diverged.pt", "--out", tmp_path / "p")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "diverged.pt: weight 'layer2.0.conv1.weight' holds NaN or inf" in done.stderr
    assert "probe" not in done.stdout and not (tmp_path / "p").exists()
