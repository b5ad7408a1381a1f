"""What training reads is what extraction wrote: each frame's size and CRC-32 in the manifest and
the index, checked when the frame is read; a rerun of extract-pairs redoes a changed clip."""

import json
import shutil

import pytest

from cacl_cli.data.pairs import PairsFolder
from tests.commands.test_extract_pairs import extracted as extract_pairs
from tests.commands.test_pretrain import one_line_error
from tests.conftest import run_cacl, sets


@pytest.fixture
def videos(tmp_path, shared_data):
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("realshort.mp4", "test.webm"):
        shutil.copy(shared_data / "videos" / name, root / name)
    return root


def extracted(videos, out, form):
    return extract_pairs(videos, out, "--short-side", "64", "--format", form)


def same_size_other_bytes(data: bytes) -> bytes:
    """Another JPEG of the same length: the scan data reversed between its markers."""
    middle = data[len(data) // 2 : -2]
    return data[: len(data) // 2] + middle[::-1] + data[-2:]


def tamper(out, form):
    """Change the first frame of the first clip in place; returns (where, its clip id)."""
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[1])
    name = record["frames"][0][0]
    if form == "folder":
        path = out / name
        path.write_bytes(same_size_other_bytes(path.read_bytes()))
        return name, record["clip"]
    offset, size = record["members"][name]
    shard = out / record["tar"]
    data = bytearray(shard.read_bytes())
    data[offset : offset + size] = same_size_other_bytes(bytes(data[offset : offset + size]))
    shard.write_bytes(bytes(data))
    return f"{record['tar']} at byte {offset}", record["clip"]


@pytest.mark.parametrize("form", ["folder", "tar"])
def test_a_frame_changed_after_extraction_fails_training_and_a_rerun_redoes_its_clip(
    tmp_path, videos, form
):
    out = tmp_path / "pairs"
    extracted(videos, out, form)
    assert all(
        len(json.loads(line)["checks"]) == 2
        for line in (out / "manifest.jsonl").read_text().splitlines()[1:]
    )
    where, clip = tamper(out, form)
    training = run_cacl(
        "pretrain",
        "--data",
        out,
        "--out",
        tmp_path / "run",
        *sets("schedule.steps=12", "data.batch_size=4"),
    )
    line = one_line_error(training, exit_code=1)
    assert where in line and f"clip {clip}" in line and "rerun cacl extract-pairs" in line
    assert not PairsFolder(out)._intact(0)

    again = extracted(videos, out, form)
    assert "1 clips whose frames changed since they were extracted" in again.stdout
    assert "1 to extract" in " ".join(again.stdout.split())
    folder = PairsFolder(out)
    assert all(folder._intact(f) for f in range(len(folder.index.frame_file)))
    trained = run_cacl(
        "pretrain",
        "--data",
        out,
        "--out",
        tmp_path / "run2",
        *sets("schedule.steps=12", "data.batch_size=4"),
    )
    assert trained.returncode == 0, trained.stderr


def test_a_manifest_from_before_the_checks_trains_unchecked(tmp_path, videos):
    """Pairs extracted before sizes and CRCs were recorded: read as they are, nothing refused."""
    out = tmp_path / "pairs"
    extracted(videos, out, "folder")
    lines = (out / "manifest.jsonl").read_text().splitlines()
    older = [lines[0]] + [
        json.dumps({k: v for k, v in json.loads(line).items() if k != "checks"})
        for line in lines[1:]
    ]
    (out / "manifest.jsonl").write_text("\n".join(older) + "\n")
    tamper(out, "folder")
    folder = PairsFolder(out)
    assert folder.index.expected(0) is None and folder._intact(0)
