"""index.bin: the manifest as memory-mapped arrays, checked by size and checksum, shared by
every process that reads it."""

import json
import os
import subprocess
import sys

import pytest

from cacl_cli.data.manifest import MANIFEST, load_index
from cacl_cli.data.pair_index import INDEX, read_index, write_index
from cacl_cli.errors import CaclError


def kinetics_like(n, tar=False):
    """``n`` done records shaped like Kinetics-400's: readable ids, two frames a clip."""
    records = []
    for i in range(n):
        clip = f"class{i % 400:03d}__{i:011d}_000010_000020"
        record = {"clip": clip, "source": f"class{i % 400:03d}/{i:011d}_000010_000020.mp4"}
        names = [f"{clip}/{f:06d}.jpg" for f in (17 + i % 50, 25 + i % 50)]
        if tar:
            record["tar"] = f"pairs-{i // 1000:06d}.tar"
            record["members"] = {name: [512 + 20000 * k, 19000] for k, name in enumerate(names)}
        records.append(record | {"frames": [names]})
    return records


def write_folder(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    header = {"cacl_pairs": 1, "settings": {}}
    lines = "".join(json.dumps(r) + "\n" for r in [header] + records)
    (folder / MANIFEST).write_text(lines)
    write_index(folder, records, folder / MANIFEST)


@pytest.mark.parametrize("tar", [False, True])
def test_the_index_gives_each_frame_where_the_manifest_put_it(tmp_path, tar):
    records = kinetics_like(30, tar)
    write_folder(tmp_path, records)
    index = read_index(tmp_path, tmp_path / MANIFEST)
    assert index.draws == 30 and len(index.clips) == 30
    for d, record in enumerate(records):
        assert index.clips[d] == record["clip"] and index.sources[d] == record["source"]
        for frame, name in zip(index.draw(d), record["frames"][0]):
            where = (record["tar"], *record["members"][name]) if tar else (name, 0, -1)
            assert index.location(frame) == where


def test_a_hand_edited_manifest_is_read_from_its_text_not_the_old_index(tmp_path):
    write_folder(tmp_path, kinetics_like(3))
    edited = (tmp_path / MANIFEST).read_text().splitlines()[:-1]  # the last clip removed
    (tmp_path / MANIFEST).write_text("\n".join(edited) + "\n")
    assert read_index(tmp_path, tmp_path / MANIFEST) is None  # stamped for the former text
    assert load_index(tmp_path).draws == 2


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda data: data[:-7], "wrong size"),
        (lambda data: data[:-3] + b"\x01\x02\x03", "checksum differs"),
        (lambda data: b"garbage\n" + data, "its header is not JSON"),
        (lambda data: b"[" * 200_000 + b"\n" + data, "its header is nested too deep"),
    ],
)
def test_a_damaged_index_is_a_one_line_error_naming_it(tmp_path, damage, message):
    write_folder(tmp_path, kinetics_like(5))
    stamp = os.stat(tmp_path / MANIFEST)
    path = tmp_path / INDEX
    path.write_bytes(damage(path.read_bytes()))
    os.utime(tmp_path / MANIFEST, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(CaclError, match=f"{INDEX}: {message}"):
        read_index(tmp_path, tmp_path / MANIFEST)


def _with_arrays(folder, change):
    """Rewrite the folder's index with ``change(arrays)`` applied, stamp and checksum made to
    match: an index made by hand, which only its contents can give away."""
    from cacl_cli.data.manifest import read_manifest
    from cacl_cli.data.pair_index import index_arrays, write_arrays

    arrays = index_arrays(read_manifest(folder / MANIFEST)[1])
    change(arrays)
    write_arrays(folder, arrays, folder / MANIFEST)


def _names(*names):
    from cacl_cli.data.pair_index import Strings

    strings = Strings.of(names)
    return lambda a: a.update(file_blob=strings.blob, file_starts=strings.starts)


@pytest.mark.parametrize(
    "change,message",
    [
        (_names("/etc/passwd", "b.jpg", "c.jpg", "d.jpg"), "empty or an absolute path"),
        (_names("../../outside.jpg", "b.jpg", "c.jpg", "d.jpg"), "lies outside the folder"),
        (_names("a\0.jpg", "b.jpg", "c.jpg", "d.jpg"), "NUL"),
        (lambda a: a["frame_file"].__setitem__(0, 999), "names a file the index does not hold"),
        (lambda a: a["draw_start"].__setitem__(1, 99), "'draw_start'"),
        (lambda a: a.update(frame_size=a["frame_size"][:-1]), "frame arrays differ in length"),
        (lambda a: a["frame_offset"].__setitem__(0, -5), "negative offset"),
        (lambda a: a.update(clip_draw_start=a["clip_draw_start"][:-1]), "'clip_draw_start'"),
    ],
)
def test_a_hand_made_index_that_names_frames_outside_or_out_of_range_is_refused(
    tmp_path, change, message
):
    write_folder(tmp_path, kinetics_like(2))
    _with_arrays(tmp_path, change)
    with pytest.raises(CaclError, match=message) as refused:
        read_index(tmp_path, tmp_path / MANIFEST)
    assert "rerun cacl extract-pairs" in str(refused.value)


def _with_header(folder, change):
    """The index with ``change(header)`` applied to its header line, data kept."""
    path = folder / INDEX
    line, _, rest = path.read_bytes().partition(b"\n")
    header = json.loads(line)
    change(header)
    line = json.dumps(header).encode() + b"\n"
    data = rest.lstrip(b" ")
    line += b" " * (-len(line) % 64)
    path.write_bytes(line + data)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda h: h["arrays"].pop("frame_size"), "must name exactly"),
        (lambda h: h["arrays"]["frame_file"].__setitem__(0, "|O"), "dtype"),
        (lambda h: h.update(arrays=[1, 2]), "must name exactly"),
        (lambda h: h.update(data_bytes="many"), "'data_bytes'"),
        (lambda h: h["arrays"]["draw_start"].__setitem__(1, [10**12]), "outside the file's data"),
        (lambda h: h["arrays"]["draw_start"].__setitem__(1, [2, 3]), "not \\[dtype, \\[length\\]"),
        (lambda h: h.update(manifest="now"), "stamp"),
    ],
)
def test_an_index_header_of_the_wrong_shape_is_refused_before_any_array_is_mapped(
    tmp_path, change, message
):
    write_folder(tmp_path, kinetics_like(2))
    stamp = os.stat(tmp_path / MANIFEST)
    _with_header(tmp_path, change)
    os.utime(tmp_path / MANIFEST, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(CaclError, match=message):
        read_index(tmp_path, tmp_path / MANIFEST)


def test_an_index_of_no_clips_loads(tmp_path):
    write_folder(tmp_path, [])
    index = read_index(tmp_path, tmp_path / MANIFEST)
    assert index.draws == 0 and len(index.sources) == 0


MEMORY_PROBE = """
import json, os, sys
from pathlib import Path

def private():  # (clean, dirty) kB this process alone maps
    fields = dict(line.split(":") for line in open("/proc/self/smaps_rollup") if ":" in line)
    return int(fields["Private_Clean"].split()[0]), int(fields["Private_Dirty"].split()[0])

from cacl_cli.data.pairs import PairsFolder
import numpy as np
before = private()
folder = PairsFolder(Path(sys.argv[1]))
rng = np.random.default_rng(0)
for _ in range(2000):  # what a few hundred training steps read
    for f in folder.index.draw(int(rng.integers(len(folder)))):
        folder.index.location(f)
rank = [now - then for now, then in zip(private(), before)]
read, write = os.pipe()
child = os.fork()
if child == 0:  # a loader worker that reads every frame's location
    start = private()[1]
    for d in range(len(folder)):
        for f in folder.index.draw(d):
            folder.index.location(f)
    os.write(write, str(private()[1] - start).encode())
    os._exit(0)
os.waitpid(child, 0)
print(json.dumps({"rank_clean_kb": rank[0], "rank_dirty_kb": rank[1],
                  "worker_dirty_kb": int(os.read(read, 100))}))
"""


@pytest.mark.slow  # 24k clips: building the index and reading every entry, about 20 s
def test_24k_clips_cost_a_rank_little_and_a_worker_no_copy(tmp_path):
    """The scale test's small sibling (bench/index_memory.py runs 240k): what a rank holds is
    the index's file pages it read (clean, shared through the page cache with every other
    process on the machine), no copy; a forked worker that reads every entry copies nothing.
    The manifest read as dicts: 22.9 MB of private heap at 24k clips, copied by each worker."""
    write_folder(tmp_path, kinetics_like(24_000))
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    used = json.loads(done.stdout)
    assert used["rank_dirty_kb"] < 1_000, used
    assert used["rank_clean_kb"] <= (tmp_path / INDEX).stat().st_size / 1024, used
    assert used["worker_dirty_kb"] < 1_000, used
