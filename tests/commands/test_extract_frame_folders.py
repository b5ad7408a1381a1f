"""`cacl extract-pairs` on frame folders: a folder of frames is one video, beside video files."""

import os

import cv2
import numpy as np
import pytest

from cacl_cli.data.extract import in_shard
from cacl_cli.data.manifest import read_report
from tests.commands.test_extract_pairs import (
    extracted,
    killed_after_records,
    manifest,
    same_pairs,
    start_extraction,
)


def into(videos, out, *args):
    """The pairs folder ``out``, extracted from ``videos`` (which must succeed)."""
    extracted(videos, out, *args)
    return out


def frames(count, size=(64, 48), seed=0):
    """``count`` RGB frames of smooth noise drifting sideways: a video whose frames differ."""
    rng = np.random.default_rng(seed)
    width, height = size
    world = cv2.resize(
        rng.integers(0, 256, (height // 4, width // 2, 3), dtype=np.uint8),
        (2 * width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    return [np.ascontiguousarray(world[:, t : t + width]) for t in range(count)]


def frame_folder(folder, images, suffix=".png"):
    folder.mkdir(parents=True)
    for t, image in enumerate(images):
        cv2.imwrite(str(folder / f"{t:05d}{suffix}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def lossless_video(path, images):
    """FFV1 in AVI: every decoder returns the frames exactly as written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 25, (width, height))
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_a_frame_folder_and_a_lossless_video_of_its_frames_give_the_same_pairs(tmp_path):
    images = frames(20)
    lossless_video(tmp_path / "videos" / "walk" / "clip.avi", images)
    frame_folder(tmp_path / "folders" / "walk" / "clip", images)
    args = [
        "--pairs-per-clip",
        "3",
        "--frames-per-clip",
        "3",
        "--stride",
        "4",
        "--short-side",
        "32",
    ]
    from_video = into(tmp_path / "videos", tmp_path / "from-video", *args)
    from_folder = into(tmp_path / "folders", tmp_path / "from-folder", *args)
    (video,), (folder,) = manifest(from_video), manifest(from_folder)
    assert folder["clip"] == video["clip"] == "walk__clip" and folder["source"] == "walk/clip"
    assert folder["decoder"] == "frames" and folder["frame_count"] == video["frame_count"] == 20
    assert folder["indices"] == video["indices"] and len(folder["indices"]) == 3
    assert same_pairs(from_folder, from_video)  # the same JPEG bytes, frame for frame


def test_frame_folders_that_are_no_video_are_skipped_with_their_reasons(tmp_path):
    root = tmp_path / "collection"
    frame_folder(root / "good", frames(12))
    frame_folder(root / "sizes", frames(6) + frames(6, size=(80, 48)))
    damaged = frame_folder(root / "damaged", frames(12))
    (damaged / "00007.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    frame_folder(root / "single", frames(1))
    nested = frame_folder(root / "nested", frames(12))
    frame_folder(nested / "inner", frames(12, seed=1))  # a video of its own
    out = into(root, tmp_path / "pairs")
    assert sorted(r["source"] for r in manifest(out)) == ["good", "nested/inner"]
    reasons = dict(read_report(out))
    assert set(reasons) == {"sizes", "damaged", "single", "nested"}
    assert "frames of 2 sizes: 00000.png is 64x48, 00006.png 80x48" in reasons["sizes"]
    assert "00007.png is not a readable image" in reasons["damaged"]
    assert "too short: 1 frames, 9 needed" in reasons["single"]
    assert "holds subfolders beside its frames" in reasons["nested"]


def test_frame_folders_sit_beside_video_files_and_the_root_may_be_one(tmp_path, shared_data):
    root = tmp_path / "collection"
    frame_folder(root / "frames" / "walk", frames(12))
    (root / "files").mkdir()
    os.symlink(shared_data / "videos" / "realshort.mp4", root / "files" / "short.mp4")
    out = into(root, tmp_path / "pairs", "--short-side", "32")
    assert {(r["source"], r["decoder"]) for r in manifest(out)} == {
        ("frames/walk", "frames"),
        ("files/short.mp4", "decord"),
    }
    one = into(root / "frames" / "walk", tmp_path / "one", "--short-side", "32")
    assert [(r["clip"], r["source"]) for r in manifest(one)] == [("walk", ".")]


def test_shards_split_frame_folders_as_they_split_files(tmp_path):
    root = tmp_path / "collection"
    for i in range(8):
        frame_folder(root / f"class{i % 2}" / f"seq{i}", frames(10, seed=i))
    whole = into(root, tmp_path / "whole", "--short-side", "32")
    out = tmp_path / "sharded"
    for k in (0, 1):
        into(root, out, "--short-side", "32", "--shard", f"{k}/2")
    records = manifest(out)
    assert records == manifest(whole) and len(records) == 8
    first = into(root, tmp_path / "first", "--short-side", "32", "--shard", "0/2")
    assert sorted(r["source"] for r in manifest(first)) == sorted(
        r["source"] for r in records if in_shard(r["source"], (0, 2))
    )
    assert 0 < len(manifest(first)) < 8


@pytest.mark.slow  # 48 frame folders extracted twice, one run killed midway: about 20 s
def test_a_killed_run_over_frame_folders_resumes_to_one_runs_pairs(tmp_path):
    pool = frame_folder(tmp_path / "pool", frames(20, size=(960, 540)), suffix=".jpg")
    root = tmp_path / "collection"
    for i in range(48):  # links to one set of frames: the folders cost no disk
        (root / f"seq{i:02d}").mkdir(parents=True)
        for frame in pool.iterdir():
            os.symlink(frame, root / f"seq{i:02d}" / frame.name)
    reference = into(root, tmp_path / "reference")
    out = tmp_path / "killed"
    killed_after_records(start_extraction(root, out, "--workers", "1"), out, 3)
    done_before = len(list((out / ".records").glob("*.json")))
    assert 3 <= done_before < 48 and not (out / "manifest.jsonl").exists()
    into(root, out)
    assert (out / "manifest.jsonl").read_bytes() == (reference / "manifest.jsonl").read_bytes()
    assert same_pairs(out, reference) and not list(out.rglob("*.tmp"))


def test_a_linked_frame_folder_is_a_video_and_a_link_loop_ends(tmp_path):
    """Collections are often assembled from links: a link to a frame folder (or to a folder of
    videos) counts as the folder does, and a link back up the tree does not recurse forever."""
    frame_folder(tmp_path / "kept" / "walk", frames(12))
    root = tmp_path / "collection"
    root.mkdir()
    (root / "walk").symlink_to(tmp_path / "kept" / "walk")
    (root / "up").symlink_to(root)
    out = into(root, tmp_path / "pairs", "--short-side", "32")
    assert [(r["clip"], r["source"], r["status"]) for r in manifest(out)] == [
        ("walk", "walk", "done")
    ]
