"""The bookkeeping of a pairs folder: records merged into the manifest, skipped.tsv and the index,
in clip order, the same however the records arrived."""

import json

import numpy as np
import pytest

from cacl_cli.config import section
from cacl_cli.data import manifest as bookkeeping
from cacl_cli.data.manifest import MANIFEST, RECORDS, known_sources, merge, read_report
from cacl_cli.data.pair_index import INDEX, read_index
from tests.data.test_pair_index import kinetics_like


def record_files(folder, records):
    (folder / RECORDS).mkdir(parents=True, exist_ok=True)
    for record in records:
        path = folder / RECORDS / f"{record['clip']}.json"
        path.write_text(json.dumps(record | {"status": "done"}))


@pytest.mark.parametrize("tar", [False, True])
def test_merging_in_batches_equals_merging_at_once_and_reads_no_old_record(
    tmp_path, monkeypatch, tar
):
    records = kinetics_like(60, tar)
    order = np.random.default_rng(0).permutation(60)
    settings = section("extract")
    record_files(tmp_path / "once", records)
    merge(tmp_path / "once", settings)
    batches = tmp_path / "batches"
    record_files(batches, [records[i] for i in order[:25]])
    merge(batches, settings)
    monkeypatch.setattr(bookkeeping, "read_manifest", lambda *a: pytest.fail("read old records"))
    for part in (order[25:28], order[28:], []):  # a few, the rest, nothing
        record_files(batches, [records[i] for i in part])
        merge(batches, settings)
    for name in (MANIFEST, "skipped.tsv"):
        assert (batches / name).read_bytes() == (tmp_path / "once" / name).read_bytes()
    once = read_index(tmp_path / "once", tmp_path / "once" / MANIFEST)
    other = read_index(batches, batches / MANIFEST)
    assert once.arrays.keys() == other.arrays.keys()
    for name in ("draw_start", "frame_offset", "frame_size", "clip_draw_start", "clip_blob"):
        assert np.array_equal(once.arrays[name], other.arrays[name]), name
    for frame in range(len(once.frame_file)):  # file numbers differ, the files they name do not
        assert once.location(frame) == other.location(frame)
    assert not list((batches / RECORDS).glob("*"))


def test_skipped_clips_and_odd_names_survive_the_report(tmp_path):
    odd = "tab\there/new\nline\\back.mp4"
    (tmp_path / RECORDS).mkdir()
    skipped = {"clip": "odd", "source": odd, "status": "skipped", "reason": "too\tshort"}
    (tmp_path / RECORDS / "odd.json").write_text(json.dumps(skipped))
    record_files(tmp_path, kinetics_like(2))
    assert merge(tmp_path, section("extract")) == (2, 1)
    assert read_report(tmp_path) == [(odd, "too\tshort")]
    known = known_sources(tmp_path)
    assert odd in known and len(known) == 3


def test_a_record_the_disk_damaged_is_dropped_and_its_clip_redone(tmp_path):
    record_files(tmp_path, kinetics_like(2))
    (tmp_path / RECORDS / "broken.json").write_text('{"clip": "bro')
    assert len(known_sources(tmp_path)) == 2 and not (tmp_path / RECORDS / "broken.json").exists()


def test_a_stale_index_makes_the_merge_read_the_manifest_whole(tmp_path):
    records = kinetics_like(5)
    record_files(tmp_path, records[:3])
    merge(tmp_path, section("extract"))
    (tmp_path / INDEX).unlink()
    record_files(tmp_path, records[3:])
    assert merge(tmp_path, section("extract")) == (5, 0)
    assert read_index(tmp_path, tmp_path / MANIFEST).draws == 5


@pytest.mark.parametrize(
    "text",
    [
        '{"clip": "c", "source": "c.mp4"}',
        '{"source": 3}',
        "[1]",
        '{"clip": "c", "source": "c.mp4", "status": "skipped"}',
    ],
)
def test_a_record_missing_a_field_is_dropped_not_a_traceback(tmp_path, text):
    record_files(tmp_path, kinetics_like(1))
    (tmp_path / RECORDS / "odd.json").write_text(text)
    assert merge(tmp_path, section("extract")) == (1, 0)


HOSTILE_LINES = {  # a manifest line with a valid frame list but a field of the wrong kind
    "clip as a number": {"clip": 5},
    "clip naming a folder": {"clip": "../up"},
    "source as a list": {"source": ["a.mp4"]},
    "members as a list": {"tar": "pairs-000000.tar", "members": [[512, 100], [1024, 100]]},
    "tar as a number": {"tar": 7, "members": {}},
    "a NUL in a frame name": {"frames": [["a\0.jpg", "b.jpg"]]},
    "an absolute frame": {"frames": [["/etc/passwd", "b.jpg"]]},
}


@pytest.mark.parametrize("change", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_a_manifest_line_of_the_wrong_kind_is_a_one_line_error_naming_the_line(tmp_path, change):
    from cacl_cli.data.manifest import read_manifest
    from cacl_cli.errors import CaclError

    good = kinetics_like(2)
    lines = [{"cacl_pairs": 1, "settings": {}}, good[0], good[1] | change]
    (tmp_path / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(CaclError, match=f"{MANIFEST}, line 3: "):
        read_manifest(tmp_path / MANIFEST)


@pytest.mark.parametrize("change", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_a_record_of_the_wrong_kind_is_dropped_and_its_clip_redone(tmp_path, change):
    record_files(tmp_path, kinetics_like(1))
    hostile = kinetics_like(2)[1] | change | {"status": "done"}
    (tmp_path / RECORDS / "hostile.json").write_text(json.dumps(hostile))
    assert merge(tmp_path, section("extract")) == (1, 0)
    assert not (tmp_path / RECORDS / "hostile.json").exists()


def test_a_record_nested_past_the_parsers_depth_is_dropped(tmp_path):
    record_files(tmp_path, kinetics_like(1))
    (tmp_path / RECORDS / "deep.json").write_text("[" * 300_000 + "]" * 300_000)
    assert merge(tmp_path, section("extract")) == (1, 0)
