"""The built-in world: deterministic, labelled, and not solvable by colour alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cacl_cli.config import resolve, section
from cacl_cli.data.world import CLASSES, World
from cacl_cli.data.world_export import labelled_frame
from cacl_cli.errors import CaclError


def test_same_seed_same_frames_other_seed_other_frames():
    a, b = World(section("world", size=48)), World(section("world", size=48))
    img_a, lab_a = a.clip(3).frame(5)
    img_b, lab_b = b.clip(3).frame(5)
    assert np.array_equal(img_a, img_b) and np.array_equal(lab_a, lab_b)
    other, _ = World(section("world", size=48, seed=1)).clip(3).frame(5)
    assert not np.array_equal(img_a, other)


def test_frames_move_and_masks_hold_the_classes():
    world = World(section("world", size=64, classes=5))
    labels_seen = set()
    for i in range(30):
        clip = world.clip(i)
        first, last = clip.frame(0), clip.frame(world.cfg.frames - 1)
        assert first[0].shape == (64, 64, 3) and first[0].dtype == np.uint8
        assert not np.array_equal(first[0], last[0])  # objects and camera move
        labels_seen |= set(np.unique(first[1]).tolist())
    assert labels_seen == set(range(6))


def test_objects_cover_a_good_share_of_each_frame():
    world = World(section("world", size=64))
    shares = [(world.clip(i).frame(3)[1] > 0).mean() for i in range(100)]
    assert 0.2 < np.mean(shares) < 0.7


def test_too_many_classes_is_an_error():
    with pytest.raises(CaclError, match="1 to 6 classes"):
        World(replace(section("world"), classes=len(CLASSES) + 1))  # past the key's range check
    with pytest.raises(CaclError, match="key 'world.classes' must be from 1 to 6"):
        resolve("tiny-world", [f"world.classes={len(CLASSES) + 1}"])


def _labelled(world, split, n):
    frames = [labelled_frame(world, split, i) for i in range(n)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def _miou(pred, truth, classes):
    ious = []
    for c in range(classes):
        union = np.logical_or(pred == c, truth == c).sum()
        if union:
            ious.append(np.logical_and(pred == c, truth == c).sum() / union)
    return float(np.mean(ious))


def _conv(cin, cout, dilation):
    return [
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


@pytest.mark.slow  # 45 s: renders and fits hundreds of frames
def test_colour_alone_does_not_reveal_the_class():
    """A per-pixel colour classifier (Bayes on a 8x8x8 colour histogram) against a small CNN that
    sees texture and shape, both fitted on the same labelled frames and scored on held-out ones."""
    world = World(section("world", size=48, classes=5))
    classes = 6
    train_x, train_y = _labelled(world, "train", 120)
    val_x, val_y = _labelled(world, "val", 40)

    bins = lambda x: (x // 32).astype(np.int64) @ np.array([64, 8, 1])  # noqa: E731
    counts = np.zeros((512, classes))
    np.add.at(counts, (bins(train_x).ravel(), train_y.ravel()), 1)
    colour_pred = counts.argmax(1)[bins(val_x)]
    colour_miou = _miou(colour_pred, val_y, classes)

    torch.manual_seed(0)
    net = nn.Sequential(
        *_conv(3, 32, 1),
        *_conv(32, 32, 2),
        *_conv(32, 32, 4),
        *_conv(32, 32, 8),
        nn.Conv2d(32, classes, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.from_numpy(train_x).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(train_y).long()
    for _ in range(400):
        idx = torch.randint(len(x), (16,))
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        texture_pred = (
            net(torch.from_numpy(val_x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
        )
    texture_miou = _miou(texture_pred, val_y, classes)
    print(f"colour mIoU {colour_miou:.3f}, texture-aware CNN mIoU {texture_miou:.3f}")
    assert texture_miou > 2 * colour_miou
    assert texture_miou - colour_miou > 0.15


def test_true_cells_follow_the_scene_not_the_pixel_grid():
    from cacl_cli.data.world import true_cells

    background_only = replace(section("world", size=64, pan=1.0), objects_min=0, objects_max=0)
    clip = World(background_only).clip(2)  # no preset may ask for it: past the key's range
    same = true_cells(clip.identity(5), clip.identity(5), 8)
    assert (same == np.arange(64)).all()  # a frame against itself: every cell its own match
    # Background only: every visible point moved against the camera's own motion.
    from cacl_cli.data.world import _bounce

    margin = (clip.background.shape[0] - 64) // 2
    (x0, y0), (x1, y1) = (
        _bounce(clip.camera_start + clip.camera_velocity * t, 0, 2 * margin).astype(int)
        for t in (0, 12)
    )
    moved = true_cells(clip.identity(0), clip.identity(12), 8)
    centres = np.arange(64)
    y, x = centres // 8 * 8 + 4 + (y0 - y1), centres % 8 * 8 + 4 + (x0 - x1)
    inside = (0 <= y) & (y < 64) & (0 <= x) & (x < 64)
    assert inside.sum() > 20 and (y0, x0) != (y1, x1)
    assert (moved[inside] == (y[inside] // 8) * 8 + x[inside] // 8).all()
    assert (moved[~inside] == -1).all()
