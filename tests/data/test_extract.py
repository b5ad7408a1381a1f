"""data/extract.py's pieces: what counts as a video, the clip ids, the draws, the shards."""

import hashlib

import cv2
import numpy as np

from cacl_cli.config import section
from cacl_cli.data.extract import MAX_ID, assign_ids, choose_starts, clip_id, find_videos, in_shard


def test_videos_are_files_with_a_video_suffix_and_folders_holding_frames(tmp_path):
    (tmp_path / "a" / "seq").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "a" / "seq" / "00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "clip.MP4").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("x")
    found = find_videos(tmp_path)
    assert found == sorted([tmp_path / "a" / "clip.MP4", tmp_path / "a" / "seq"])
    assert find_videos(tmp_path / "a" / "seq") == [tmp_path / "a" / "seq"]  # the root itself


def test_clip_ids_are_safe_names_bounded_to_fit_a_file_name(tmp_path):
    assert clip_id(tmp_path, tmp_path / "run" / "a b.mp4") == "run__a_b"
    (tmp_path / "frames.v2").mkdir()
    assert clip_id(tmp_path, tmp_path / "frames.v2") == "frames.v2"  # a folder keeps its dot
    assert clip_id(tmp_path / "frames.v2", tmp_path / "frames.v2") == "frames.v2"
    long = clip_id(tmp_path, tmp_path / ("v" * 251 + ".mp4"))
    digest = hashlib.sha1(("v" * 251).encode()).hexdigest()[:8]
    assert len(long) == MAX_ID and long.endswith("-" + digest)


def test_a_taken_id_gets_a_hash_and_a_known_one_is_kept(tmp_path):
    videos = [tmp_path / "a b.mp4", tmp_path / "a_b.mp4"]
    ids = assign_ids(tmp_path, videos, {})
    assert ids[videos[0]] == "a_b" and ids[videos[1]].startswith("a_b-")
    kept = assign_ids(tmp_path, videos, {"a_b.mp4": "a_b"})  # a record already names it
    assert kept[videos[1]] == "a_b" and kept[videos[0]].startswith("a_b-")


def test_draws_are_seeded_by_the_clip_and_fit_the_clip():
    settings = section("extract", stride=4, pairs_per_clip=5, frames_per_clip=3)
    starts = choose_starts(40, settings, "walk")
    assert starts == choose_starts(40, settings, "walk") != choose_starts(40, settings, "run")
    assert len(set(starts)) == 5 and max(starts) + 8 < 40
    assert len(choose_starts(10, settings, "short")) == 2  # only 10 - 8 starts exist


def test_a_videos_shard_depends_on_its_path_alone():
    paths = [f"class{i % 7}/clip{i}.mp4" for i in range(200)]
    for shards in (2, 5):
        owners = [[k for k in range(shards) if in_shard(p, (k, shards))] for p in paths]
        assert all(len(o) == 1 for o in owners)  # every video in exactly one shard
        assert len({o[0] for o in owners}) == shards  # and every shard gets some
