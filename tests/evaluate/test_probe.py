"""The probe engine: its feature cache keeps on disk what belongs to one backbone and protocol."""

import torch

from cacl_cli.config import section
from cacl_cli.data.segmentation import world
from cacl_cli.evaluate.probe import FeatureCache
from cacl_cli.model.backbone import build_backbone


def test_a_spilled_cache_of_another_backbone_is_never_read_as_this_ones(tmp_path):
    """A probe of checkpoint A killed with its features on disk, then --random-init into the same
    folder: the classifier must train on the new backbone's features, not A's."""
    images = world(section("world", size=32), "train", 2)
    spill = tmp_path / "feature-cache"
    backbones = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        backbones.append(build_backbone("resnet18", 8).eval())
    first = FeatureCache(backbones[0], images, 32, torch.device("cpu"), "disk", 0.0, spill)
    a_features = first.get(0, False)[0]
    assert list(spill.rglob("*.pt"))  # spilled, and left behind as a kill would leave it
    second = FeatureCache(backbones[1], images, 32, torch.device("cpu"), "disk", 0.0, spill)
    b_features = second.get(0, False)[0]
    assert not torch.allclose(a_features, b_features)
    assert torch.allclose(b_features, second._compute(0, False)[0])
    assert [p.name for p in spill.iterdir()] == [second.spill_dir.name]  # A's files are gone
