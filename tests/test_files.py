"""Atomic writes (cacl_cli/files.py): whole files only, with the permissions the umask gives."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    code = (
        "import os, sys\n"
        f"os.umask({umask})\n"
        "from pathlib import Path\n"
        "from cacl_cli.files import write_text_atomic\n"
        "write_text_atomic(Path(sys.argv[1]), 'x')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.txt")], check=True, cwd=ROOT)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


def test_a_full_disk_names_the_file_it_could_not_write(small_tmpfs):
    from cacl_cli.files import write_atomic
    from tests.conftest import fill_disk

    fill_disk(small_tmpfs, leave=4096)
    target = small_tmpfs / "results.json"
    with pytest.raises(OSError) as caught:
        write_atomic(target, lambda fh: fh.write(b"x" * 1_000_000))
    assert caught.value.strerror == "No space left on device"
    assert caught.value.filename == str(target) and not target.exists()
    assert [p.name for p in small_tmpfs.iterdir()] == ["filler"]  # no temporary file left


def test_a_full_disk_names_the_file_an_in_place_write_could_not_extend(small_tmpfs):
    """Appends (a metrics log, a shard) fail in write() or flush(), whose OSError names no file;
    the writer names it."""
    from cacl_cli.files import open_for_writing
    from tests.conftest import fill_disk

    log = small_tmpfs / "metrics.jsonl"
    log.write_text("{}\n")
    fill_disk(small_tmpfs, leave=0)
    with pytest.raises(OSError) as caught:
        with open_for_writing(log) as fh:
            fh.write(b"x" * 1_000_000)
            fh.flush()
    assert caught.value.strerror == "No space left on device"
    assert caught.value.filename == str(log)
    assert log.read_text().startswith("{}\n")  # what was there before is kept


def planted_link(tmp_path, name):
    """``out/name`` -> a foreign folder holding someone's ``00000.png``."""
    foreign, out = tmp_path / "foreign", tmp_path / "out"
    foreign.mkdir()
    (foreign / "00000.png").write_text("theirs")
    out.mkdir()
    (out / name).symlink_to(foreign)
    return foreign, out


def test_no_write_passes_through_a_link_planted_inside_the_output_folder(tmp_path):
    from cacl_cli.errors import RunFailed
    from cacl_cli.files import write_text_atomic
    from cacl_cli.run_folder import LOCK

    foreign, out = planted_link(tmp_path, "seq")
    write_text_atomic(out / "seq" / "00000.png", "ours")  # no command claimed out: no check
    (foreign / "00000.png").write_text("theirs")
    (out / LOCK).touch()  # now a command's output folder, as outputs.claimed marks it
    with pytest.raises(RunFailed, match=f"{out / 'seq'} is a link inside {out}"):
        write_text_atomic(out / "seq" / "00000.png", "ours")
    (foreign / LOCK).touch()  # a link to another command's output folder is refused as well
    with pytest.raises(RunFailed, match=f"{out / 'seq'} is a link inside {out}"):
        write_text_atomic(out / "seq" / "deeper" / "00000.png", "ours")
    write_text_atomic(out / "mine" / "a.txt", "ours")  # real folders are fine
    assert (foreign / "00000.png").read_text() == "theirs" and (out / "mine" / "a.txt").is_file()
    assert not (foreign / "deeper").exists()
    linked_out = tmp_path / "linked-out"
    linked_out.symlink_to(out)  # the output folder itself may be a link the user chose
    write_text_atomic(linked_out / "b.txt", "ours")
    assert (out / "b.txt").is_file()


def test_propagate_refuses_a_link_planted_in_its_output_and_leaves_the_target_alone(
    tmp_path, shared_data
):
    from tests.conftest import run_cacl

    foreign, out = planted_link(tmp_path, "blackswan")
    done = run_cacl(
        "propagate",
        shared_data / "davis",
        "--seq",
        "blackswan",
        "--baseline",
        "copy",
        "--frames",
        "3",
        "--out",
        out,
        "--overwrite",
    )
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "blackswan is a link inside" in done.stderr
    assert [p.name for p in foreign.iterdir()] == ["00000.png"]
    assert (foreign / "00000.png").read_text() == "theirs"


def test_files_under_follows_linked_folders_and_reads_each_folder_once(tmp_path):
    """A collection assembled from links is read as the user sees it; a link loop ends and a
    folder linked twice is read once; dangling links and FIFOs are listed for callers to judge."""
    from cacl_cli.files import files_under

    elsewhere = tmp_path / "elsewhere" / "clip"
    elsewhere.mkdir(parents=True)
    (elsewhere / "0.jpg").write_bytes(b"x")
    root = tmp_path / "collection"
    (root / "nested").mkdir(parents=True)
    (root / "a.mp4").write_bytes(b"v")
    (root / "clip").symlink_to(elsewhere)
    (root / "nested" / "same-clip").symlink_to(elsewhere)
    (root / "nested" / "loop").symlink_to(root)
    (root / "gone.mp4").symlink_to(tmp_path / "missing.mp4")
    os.mkfifo(root / "pipe")
    found = sorted(str(p.relative_to(root)) for p in files_under(root))
    assert found == ["a.mp4", "clip/0.jpg", "gone.mp4", "pipe"]
