"""Atomic writes (cacl_cli/files.py): whole files only, with the permissions the umask gives."""

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
    from tests.conftest import fill_disk

    from cacl_cli.files import write_atomic

    fill_disk(small_tmpfs, leave=4096)
    target = small_tmpfs / "results.json"
    with pytest.raises(OSError) as caught:
        write_atomic(target, lambda fh: fh.write(b"x" * 1_000_000))
    assert caught.value.strerror == "No space left on device"
    assert caught.value.filename == str(target) and not target.exists()
    assert [p.name for p in small_tmpfs.iterdir()] == ["filler"]  # no temporary file left
