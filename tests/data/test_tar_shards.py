"""Tar shards: WebDataset's layout, readable by GNU tar and Python's tarfile, each frame where its
record says, and a killed writer's shard ended so every reader reads it to the end."""

import shutil
import subprocess
import tarfile

import pytest

from cacl_cli.data.tar_shards import ShardWriter, is_ended, member_key, repair, shard_files


def clip(n, frames=2, size=3000):
    record = {
        "clip": f"cls__clip.{n}",
        "source": f"cls/clip.{n}.mp4",
        "indices": [[0, 8]],
        "fps": 25.0,
        "size": [64, 48],
    }
    return record, [bytes([n % 251 + 1, k + 1]) * (size // 2) + b"\xff\xd9" for k in range(frames)]


def test_keys_hold_no_dot_and_map_back_to_the_clip():
    from cacl_cli.data.tar_shards import _clip_of

    for name in ("a.b", "a%2Eb", "a%25b.c", "x..y", "plain"):
        assert "." not in member_key(name) and _clip_of(member_key(name)) == name
    assert len({member_key(n) for n in ("a.b", "a%2Eb", "a_b")}) == 3


def test_every_frame_is_where_its_record_says_and_shards_roll_over(tmp_path):
    writer = ShardWriter(tmp_path, "", limit=20_000)
    records = [writer.add_clip(*clip(n)) for n in range(8)]
    writer.close()
    shards = shard_files(tmp_path, "")
    assert len(shards) >= 3 and all(is_ended(s) for s in shards)
    for n, record in enumerate(records):
        data = (tmp_path / record["tar"]).read_bytes()
        for name, frame in zip(record["frames"][0], clip(n)[1]):
            offset, size = record["members"][name]
            assert data[offset : offset + size] == frame
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert names[:3] == ["cls__clip%2E0.f0.jpg", "cls__clip%2E0.f1.jpg", "cls__clip%2E0.json"]
    if shutil.which("tar"):
        listed = subprocess.run(["tar", "tf", shards[0]], capture_output=True, text=True)
        assert listed.returncode == 0 and listed.stdout.split() == names


def test_a_rerun_starts_a_new_shard_instead_of_appending(tmp_path):
    for _ in range(2):
        writer = ShardWriter(tmp_path, "3of8-", limit=10**9)
        writer.add_clip(*clip(1))
        writer.close()
    assert [s.name for s in shard_files(tmp_path, "3of8-")] == [
        "pairs-3of8-000000.tar",
        "pairs-3of8-000001.tar",
    ]
    assert shard_files(tmp_path, "") == []  # another writer's shards are not this one's


@pytest.mark.parametrize("cut", [100, 3000, 7000, 10_600])  # in a header, in data, ...
def test_a_killed_writers_shard_is_cut_back_to_its_recorded_clips_and_ended(tmp_path, cut):
    writer = ShardWriter(tmp_path, "", limit=10**9)
    first = writer.add_clip(*clip(1))
    writer.add_clip(*clip(2))  # written, but the kill came before its record
    writer.tar.fileobj.close()  # no end-of-archive blocks: as a kill leaves it
    shard = tmp_path / first["tar"]
    kept = first["members"][first["frames"][0][-1]][0] + 3000 + 1024  # clip 1's json ends here
    with open(shard, "r+b") as fh:
        fh.truncate(kept + cut)
    assert not is_ended(shard)
    repair(shard, {"cls__clip.1"})
    assert is_ended(shard)
    with tarfile.open(shard) as tar:
        assert [m.name.split(".")[0] for m in tar] == ["cls__clip%2E1"] * 3
    if shutil.which("tar"):
        assert subprocess.run(["tar", "tf", shard], capture_output=True).returncode == 0


def test_webdataset_reads_the_samples(tmp_path):
    wds = pytest.importorskip(
        "webdataset", reason="webdataset is optional (pip install webdataset)"
    )
    writer = ShardWriter(tmp_path, "", limit=10**9)
    records = [writer.add_clip(*clip(n)) for n in range(3)]
    writer.close()
    samples = list(wds.WebDataset(str(tmp_path / records[0]["tar"]), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [member_key(r["clip"]) for r in records]
    assert samples[1]["f1.jpg"] == clip(1)[1][1]
