"""Exporting the world: mp4 clips a decoder can read, a VOC-style labelled set, DAVIS clips."""

import cv2
import numpy as np
from PIL import Image

from cacl_cli.config import section
from cacl_cli.data.world import World
from cacl_cli.data.world_export import (
    DAVIS_OFFSET,
    export_davis,
    export_labelled,
    export_videos,
    labelled_frame,
)


def test_videos_decode_to_the_rendered_frames(tmp_path):
    world = World(section("world", size=48, frames=12))
    [path] = export_videos(world, tmp_path, 1)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert len(decoded) == 12

    def error(t: int) -> float:
        return np.abs(decoded[5].astype(int) - world.clip(0).frame(t)[0].astype(int)).mean()

    # A lossy codec: close to the rendered frame 5 (13 of 255 on average at 48 px), and closer to
    # it than to any other frame of the clip (a frame out of place is 22 or more away).
    errors = [error(t) for t in range(12)]
    assert errors[5] < 16 and errors[5] < 0.75 * min(errors[:5] + errors[6:])


def test_labelled_set_has_voc_layout_and_palette_masks(tmp_path):
    world = World(section("world", size=40, classes=4))
    voc = export_labelled(world, tmp_path, {"train": 3, "val": 2})
    train_ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    val_ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert len(train_ids) == 3 and len(val_ids) == 2 and not set(train_ids) & set(val_ids)
    mask = Image.open(voc / "SegmentationClass" / f"{val_ids[1]}.png")
    assert mask.mode == "P"
    expected = labelled_frame(world, "val", 1)[1]
    assert np.array_equal(np.array(mask), expected)
    assert mask.getpalette()[3:6] == [128, 0, 0]  # VOC's colour for class 1
    image = cv2.imread(str(voc / "JPEGImages" / f"{train_ids[0]}.jpg"))
    assert image.shape == (40, 40, 3)
    assert (voc / "classes.txt").read_text().split()[0] == "background"


def test_davis_clips_are_held_out_lossless_frames_with_one_id_per_instance(tmp_path):
    world = World(section("world", size=40, frames=6, objects_min=3, objects_max=3))
    root = export_davis(world, tmp_path / "davis", 2)
    assert (root / "ImageSets" / "2017" / "val.txt").read_text().split() == [
        "world_0000",
        "world_0001",
    ]
    clip = world.clip(DAVIS_OFFSET + 1)
    frames = sorted((root / "JPEGImages" / "480p" / "world_0001").iterdir())
    assert [f.name for f in frames] == [f"{t:05d}.png" for t in range(6)]
    image, labels = clip.frame(4)
    written = cv2.cvtColor(cv2.imread(str(frames[4])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(written, image)  # lossless, and the held-out clip, not clip 1
    assert not np.array_equal(written, world.clip(1).frame(4)[0])
    mask = Image.open(root / "Annotations" / "480p" / "world_0001" / "00004.png")
    ids = np.array(mask)
    assert mask.mode == "P" and set(np.unique(ids)) <= {0, 1, 2, 3}
    assert np.array_equal(ids > 0, labels > 0)  # instances cover exactly the objects
    for k in np.unique(ids[ids > 0]):  # and each instance is one object of one class
        assert len(np.unique(labels[ids == k])) == 1
