"""The output-folder rule every command follows (cacl_cli/outputs.py)."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from cacl_cli.errors import CaclError
from cacl_cli.outputs import check_folder, claimed, default_folder
from tests.commands.test_pretrain import one_line_error
from tests.commands.test_probe import PROBE
from tests.conftest import ROOT, pretrained, run_cacl, sets, tree_digest


def start_pretrain(run, *overrides, **popen):
    """A long ``cacl pretrain`` into ``run`` in a process of its own, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "cacl_cli", "pretrain", "--out", str(run), *sets(*overrides)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **popen,
    )


def test_two_default_probes_keep_both_results(tmp_path):
    for _ in range(2):
        done = run_cacl("probe", "--random-init", *PROBE, "--set", "model.width=8", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and folders[0].name.startswith("random-init-probe-world-")
    assert all((f / "results.json").is_file() for f in folders)


def test_default_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = default_folder("probe", "probe-world")
    first.mkdir(parents=True)
    second = default_folder("probe", "probe-world")
    assert second != first and not second.exists()


def test_an_existing_out_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "probe"
    args = ("probe", "--random-init", *PROBE, "--set", "model.width=8", "--out", out)
    assert run_cacl(*args).returncode == 0
    before = (out / "results.json").read_bytes()
    line = one_line_error(run_cacl(*args))
    assert f"--out {out} already holds" in line and "--overwrite" in line
    assert (out / "results.json").read_bytes() == before  # nothing touched
    assert run_cacl(*args, "--overwrite").returncode == 0


def test_evaluations_never_write_into_a_pretrain_run(tmp_path):
    run = pretrained(tmp_path / "run", "schedule.steps=2")
    config = (run / "config.yaml").read_bytes()
    for command in (["probe", "--random-init"], ["visualize", "--pixel", "1,1", run]):
        line = one_line_error(run_cacl(*command, "--out", run, "--overwrite"))
        assert "holds a pretrain run" in line
    assert (run / "config.yaml").read_bytes() == config


def test_pretrain_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = one_line_error(run_cacl("pretrain", "--out", tmp_path, "--set", "schedule.steps=1"))
    assert "already holds notes.txt" in line and "--resume" in line
    (tmp_path / "results.json").write_text("{}")  # a probe's folder is no run to resume
    line = one_line_error(run_cacl("pretrain", "--out", tmp_path, "--resume"))
    assert "holds an evaluation's results.json" in line


def test_a_failure_before_writing_leaves_no_folder(tmp_path):
    missing = tmp_path / "nothing.pt"
    line = one_line_error(run_cacl("probe", "--checkpoint", missing, "--out", tmp_path / "r"))
    assert "nothing.pt" in line and not (tmp_path / "r").exists()


def test_a_folder_is_locked_while_a_command_writes(tmp_path):
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cacl_cli.outputs import claimed\n"
        "with claimed(Path(sys.argv[1]), 'probe'):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "busy")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        with pytest.raises(CaclError, match="in use by another cacl process"):
            with claimed(tmp_path / "busy", "probe", continues=True):
                pass
    finally:
        process.kill()
        process.wait()
    deadline = time.time() + 10  # the kernel drops a dead process's lock
    with claimed(tmp_path / "busy", "probe", continues=True):
        assert time.time() < deadline


def test_a_file_as_out_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CaclError, match="is a file"):
        check_folder(tmp_path / "f", "probe")


@pytest.mark.slow
def test_a_second_pretrain_on_a_busy_run_folder_is_refused(tmp_path):

    run = tmp_path / "run"
    first = start_pretrain(run, "schedule.steps=100000")
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.05)
        second = run_cacl("pretrain", "--out", run, "--resume")
        assert "in use by another cacl process" in one_line_error(second)
    finally:
        first.kill()
        first.wait()
    resumed = run_cacl("pretrain", "--out", run, "--resume", "--set", "schedule.steps=3")
    assert resumed.returncode == 0, resumed.stderr  # the dead process's lock is gone


def test_a_forked_child_does_not_keep_a_dead_commands_lock(tmp_path):
    """A loader worker forked while the folder was locked outlives its killed parent for a few
    seconds; the lock must die with the parent, not with the last child."""
    holder = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from cacl_cli.outputs import claimed\n"
        "with claimed(Path(sys.argv[1]), 'probe'):\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"  # the orphaned worker
        "        os._exit(0)\n"
        "    print('forked', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "busy")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert process.stdout.readline().strip() == "forked"
        process.wait()
        with claimed(tmp_path / "busy", "probe", continues=True):
            pass
    finally:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.slow  # a pretrain with two loader workers, killed, then resumed at once: ~30 s
def test_a_requeued_run_is_not_refused_by_the_killed_runs_loader_workers(tmp_path):

    run = tmp_path / "run"
    first = start_pretrain(
        run, "schedule.steps=100000", "data.num_workers=2", start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while not (run / "metrics.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)  # the main process only, as an OOM killer would
        first.wait()
        resumed = run_cacl("pretrain", "--out", run, "--resume", "--set", "schedule.steps=3")
        assert resumed.returncode == 0, resumed.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)


def test_no_evaluation_writes_below_a_pretrain_run_but_export_into_its_own(tmp_path):
    run = pretrained(tmp_path / "run", "schedule.steps=2")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for below in (run / "probe", run / "checkpoints" / "mine"):
        line = one_line_error(run_cacl("probe", "--random-init", "--out", below))
        assert f"lies inside {run}, a pretrain run" in line
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    step = next((run / "checkpoints").glob("step-*.pt"))
    assert run_cacl("export", "--checkpoint", step).returncode == 0  # RUN/export, its own
    assert (run / "export" / "backbone.pt").is_file()


@pytest.mark.parametrize("where", ["inside", "same", "holds"])
def test_an_out_overlapping_an_input_is_refused_and_the_input_kept(tmp_path, where):
    world = run_cacl("world", "--out", tmp_path / "w", "--clips", "1", "--davis-clips", "1")
    assert world.returncode == 0, world.stderr
    davis = tmp_path / "w" / "davis"
    before = tree_digest(davis)
    out = {"inside": davis / "Annotations" / "480p", "same": davis, "holds": tmp_path}[where]
    line = one_line_error(
        run_cacl("propagate", davis, "--baseline", "copy", "--out", out, "--overwrite")
    )
    verb = {"inside": "lies inside", "same": "is", "holds": "holds"}[where]
    assert f"--out {out} {verb} the input {davis}" in line
    assert tree_digest(davis) == before


def test_a_project_folder_with_checkpoints_of_its_own_is_no_run(tmp_path):
    (tmp_path / "project" / "checkpoints").mkdir(parents=True)  # someone else's training
    check_folder(tmp_path / "project" / "results" / "probe", "probe")  # no error
    run = pretrained(tmp_path / "run", "schedule.steps=1")
    with pytest.raises(CaclError, match="lies inside .* a pretrain run"):
        check_folder(run / "results" / "probe", "probe")
