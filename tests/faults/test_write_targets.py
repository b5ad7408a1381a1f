"""Files cacl writes in place (locks, logs, tar shards) are opened one guarded way: a link or a
FIFO standing where one goes is refused in one line, nothing outside --out is written, nothing
blocks; two commands that may not share a folder exclude each other."""

import json
import os
import shutil
import time

import pytest

from tests.commands.test_extract_pairs import extracted, start_extraction
from tests.commands.test_pretrain import one_line_error
from tests.conftest import fill_disk, run_cacl, sets, tree_digest


@pytest.fixture
def videos(tmp_path, shared_data):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(shared_data / "videos" / "realshort.mp4", folder / "a.mp4")
    return folder


@pytest.mark.parametrize("plant", ["dangling link", "link to a file elsewhere", "fifo"])
def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_nothing_outside_changes(
    tmp_path, videos, plant
):
    out, elsewhere = tmp_path / "pairs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    lock = out / ".cacl.lock"
    if plant == "fifo":
        os.mkfifo(lock)
    else:
        target = elsewhere / "victim"
        if plant == "link to a file elsewhere":
            target.write_text("someone's file\n")
        lock.symlink_to(target)
    before = tree_digest(elsewhere)
    line = one_line_error(run_cacl("extract-pairs", videos, "--out", out, "--workers", "1"))
    assert ".cacl.lock" in line and ("is a link" in line or "not a regular file" in line)
    assert tree_digest(elsewhere) == before


@pytest.mark.parametrize("plant", ["link", "fifo"])
def test_a_shard_name_taken_by_a_link_or_fifo_is_not_written_through(tmp_path, videos, plant):
    out, victim = tmp_path / "pairs", tmp_path / "victim.bin"
    extracted(videos, out, "--short-side", "48", "--format", "tar")
    victim.write_bytes(b"precious " * 1000)
    shard = out / "pairs-000001.tar"  # the next shard's name, as a killed run's open one
    if plant == "link":
        shard.symlink_to(victim)
    else:
        os.mkfifo(shard)
    shutil.copy(videos / "a.mp4", videos / "b.mp4")  # a rerun with a clip to do
    done = run_cacl(
        "extract-pairs",
        videos,
        "--out",
        out,
        "--workers",
        "1",
        "--short-side",
        "48",
        "--format",
        "tar",
    )
    line = one_line_error(done)
    assert "pairs-000001.tar" in line
    assert victim.read_bytes() == b"precious " * 1000


def test_a_full_disk_on_resume_names_the_file_it_could_not_write(small_tmpfs):
    run = small_tmpfs / "run"
    assert run_cacl("pretrain", "--out", run, *sets("schedule.steps=2")).returncode == 0
    fill_disk(small_tmpfs, leave=0)
    done = run_cacl("pretrain", "--out", run, "--resume", "--set", "schedule.steps=4")
    line = one_line_error(done, exit_code=1)
    assert "No space left on device" in line and str(run) in line, line


@pytest.mark.slow  # a shard extraction of 16 clips, an overwrite refused beside it: about 30 s
def test_an_overwrite_is_refused_while_a_shard_writes_into_the_folder(tmp_path, shared_data):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(10):  # long clips: the shard is still at work while the others are refused
        shutil.copy(shared_data / "videos" / "cockatoo.mp4", videos / f"clip{i:02d}.mp4")
    out = tmp_path / "pairs"
    shard = start_extraction(videos, out, "--shard", "0/2")
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / ".records").glob("*.json")):
        time.sleep(0.05)
    assert shard.poll() is None, "the shard finished before the overwrite was tried"
    for args in (["--overwrite"], [], ["--merge"]):  # each writes the whole folder
        line = one_line_error(run_cacl("extract-pairs", videos, "--out", out, *args))
        assert "is in use by another cacl process" in line
    other = start_extraction(videos, out, "--shard", "1/2")  # another shard may write beside it
    assert shard.wait(timeout=600) == 0 and other.wait(timeout=600) == 0, other.stderr.read()
    merged = run_cacl("extract-pairs", videos, "--out", out, "--merge")
    assert merged.returncode == 0, merged.stderr
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 1 + 10  # no clip lost


def test_a_video_whose_name_fills_the_name_limit_is_extracted_once(tmp_path, videos):
    long = videos / ("v" * 251 + ".mp4")  # 255 bytes: the longest name a file may have
    (videos / "a.mp4").rename(long)
    out = tmp_path / "pairs"
    first = extracted(videos, out)
    assert "0 already done, 1 to extract" in " ".join(first.stdout.split())
    (record,) = [line for line in (out / "manifest.jsonl").read_text().splitlines()[1:]]
    assert len(json.loads(record)["clip"]) <= 200 and not list(out.rglob("*.tmp"))
    again = extracted(videos, out)
    assert "1 already done, 0 to extract" in " ".join(again.stdout.split())


def test_a_layout_file_nested_past_the_parsers_depth_is_one_line(tmp_path):
    from cacl_cli.errors import CaclError
    from cacl_cli.pretrained import load_backbone

    run = tmp_path / "run"
    assert run_cacl("pretrain", "--out", run, *sets("schedule.steps=1")).returncode == 0
    assert run_cacl("export", "--checkpoint", run).returncode == 0
    (run / "export" / "layout.json").write_text("[" * 300_000 + "]" * 300_000)
    with pytest.raises(CaclError, match="layout.json is nested too deep"):
        load_backbone(run / "export" / "backbone.pt", "resnet18", 8)
